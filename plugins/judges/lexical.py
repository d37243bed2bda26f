"""Judge ``lexical``: ROUGE-L F-measure over lower-cased words, reward = F >= threshold.

Deterministic and dependency-free; used by tests and as a transparent baseline.
Options: ``threshold`` (default 0.25, in [0, 1]).
"""

from __future__ import annotations

import re

from harness.hookspecs import hookimpl
from harness.options import Option, parse_options
from harness.types import Verdict

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

    options = (Option("threshold", float, 0.25, "ROUGE-L F a continuation needs for reward 1", low=0, high=1),)

    def __init__(self, options=None, arms=None):
        self.threshold = parse_options(self.options, options or {}, "lexical judge", "--judge-option")["threshold"]

    def config(self) -> dict:
        return {"name": self.name, "threshold": self.threshold}

    def judge(self, pairs):
        out = []
        for p in pairs:
            f = rouge_l_f(p.predicted, p.reference)
            out.append(Verdict(reward=int(f >= self.threshold), score=round(f, 6)))
        return out
