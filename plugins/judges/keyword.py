"""Judge ``keyword``: rewards continuations that use target words; deterministic.

A toy objective with a known right answer, for checking that training moves the way it should
(RLMT reward rises, DPO prefers the continuation with more target words) and for format checks.
It ignores the true suffix. Options: ``words`` (comma-separated, required; matched lower-case),
``match`` (``word``: whole words, the default; ``substring``: anywhere, e.g. a letter for a
byte-level toy model), ``min_count`` (occurrences for reward 1; an integer >= 1, default 1).
"""

from __future__ import annotations

import re

from harness.errors import BadInput
from harness.hookspecs import hookimpl
from harness.options import Option, parse_options
from harness.types import Verdict


@hookimpl
def register_judges(register):
    register(KeywordJudge)


class KeywordJudge:
    name = "keyword"
    description = "reward 1 when the continuation uses target words (toy objective for checking training)"

    options = (Option("words", str, None, "comma-separated target words", required=True),
               Option("match", str, "word", "whole words or substrings", choices=("word", "substring")),
               Option("min_count", int, 1, "occurrences needed for reward 1", low=1))

    def __init__(self, options=None, arms=None):
        o = parse_options(self.options, options or {}, "keyword judge", "--judge-option")
        words = [w.strip().lower() for w in o["words"].split(",") if w.strip()]
        if not words:
            raise BadInput("the keyword judge needs --judge-option words=WORD[,WORD...]", param_hint="--judge-option")
        self.words, self.min_count, self.match = words, o["min_count"], o["match"]
        alternatives = "|".join(re.escape(w) for w in words)
        self._pattern = re.compile(rf"\b({alternatives})\b" if self.match == "word" else f"({alternatives})")

    def config(self) -> dict:
        return {"name": self.name, "words": ",".join(self.words), "match": self.match, "min_count": self.min_count}

    def count(self, text: str) -> int:
        return len(self._pattern.findall(text.lower()))

    def judge(self, pairs):
        out = []
        for p in pairs:
            c = self.count(p.predicted)
            out.append(Verdict(reward=int(c >= self.min_count), score=float(c)))
        return out

    def compare(self, comparisons):
        """The continuation with more target words wins; equal counts tie (0.5)."""
        out = []
        for c in comparisons:
            a, b = self.count(c.first), self.count(c.second)
            out.append(Verdict(reward=None if a == b else int(a > b), score=0.5 if a == b else float(a > b)))
        return out
