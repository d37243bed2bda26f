"""Judge ``lexical``: ROUGE-L F-measure over lower-cased words, reward = F >= threshold.

Deterministic and dependency-free; used by tests and as a transparent baseline.
Options: ``threshold`` (default 0.25, in [0, 1]).
"""

from __future__ import annotations

import re

from harness.errors import BadInput

from harness.hookspecs import hookimpl
from harness.types import Verdict
from plugins.judges import number_option

_WORD = re.compile(r"[a-z0-9]+")


@hookimpl
def register_judges(register):
    register(LexicalJudge)


def lcs_length(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l_f(predicted: str, reference: str) -> float:
    p, r = _WORD.findall(predicted.lower()), _WORD.findall(reference.lower())
    if not p or not r:
        return 0.0
    lcs = lcs_length(p, r)
    if lcs == 0:
        return 0.0
    prec, rec = lcs / len(p), lcs / len(r)
    return 2 * prec * rec / (prec + rec)


class LexicalJudge:
    name = "lexical"
    description = "ROUGE-L F of predicted vs true suffix >= threshold; deterministic"

    def __init__(self, options=None, arms=None):
        options = dict(options or {})
        self.threshold = number_option(options, "threshold", 0.25, "lexical", low=0, high=1)
        if options:
            raise BadInput(f"unknown lexical judge options {sorted(options)}; valid: threshold",
                                     param_hint="--judge-option")

    def config(self) -> dict:
        return {"name": self.name, "threshold": self.threshold}

    def judge(self, pairs):
        out = []
        for p in pairs:
            f = rouge_l_f(p.predicted, p.reference)
            out.append(Verdict(reward=int(f >= self.threshold), score=round(f, 6)))
        return out
