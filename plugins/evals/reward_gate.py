"""Eval ``reward_gate``: the arm's own thought only; is the judge's reward usable for RL?

Defaults follow the reference study: 64 prefixes x 16 samples, thought <= 48 tokens,
suffix <= 128 tokens. The report's group table shows mixed / zero-variance (the study's near-zero) / all-zero / all-one
groups and the study's go/no-go flags.
"""

from harness.hookspecs import hookimpl
from harness.pipeline import ProbeEval


@hookimpl
def register_evals(register):
    register(RewardGate)


class RewardGate(ProbeEval):
    name = "reward_gate"
    description = "own thought -> close tag -> suffix, judged vs the true suffix (64 prefixes x 16 samples)"
    defaults = {"samples": 16, "limit": 64, "interventions": ("normal",), "thought_max_tokens": 48,
                "suffix_max_tokens": 128, "temperature": 1.0, "top_p": 0.95}
