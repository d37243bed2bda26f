"""Eval ``thought_probe``: the same pipeline with the thought replaced by interventions.

Defaults follow the reference study: 32 prefixes x 4 samples, conditions normal, blank, generic,
swapped. Besides the judge's reward, every sample records the teacher-forced log-likelihood of
the true suffix given prefix + thought, a dense judge-free measure of thought utility.
"""

from harness.hookspecs import hookimpl
from harness.pipeline import ProbeEval


@hookimpl
def register_evals(register):
    register(ThoughtProbe)


class ThoughtProbe(ProbeEval):
    name = "thought_probe"
    description = "normal / blank / generic / swapped thoughts -> suffix reward + true-suffix log-lik (32 x 4)"
    defaults = {"samples": 4, "limit": 32, "interventions": ("normal", "blank", "generic", "swapped"),
                "thought_max_tokens": 48, "suffix_max_tokens": 128, "temperature": 1.0, "top_p": 0.95}
