"""Open-domain QA answer metrics (SQuAD-style normalisation), for the search evals' records.

Normalisation: lower case, punctuation removed, the articles a / an / the removed, whitespace
collapsed. Against a list of golden answers every metric takes the best golden answer:

- ``exact_match``: the normalised prediction equals a normalised golden answer;
- ``sub_exact_match`` (the "ACC" / cover-EM of search-QA papers): a normalised golden answer is a
  substring of the normalised prediction (plain substring, as those papers compute it);
- ``f1``: SQuAD token F1 between prediction and golden answer, the maximum over golden answers;
- ``passage_has_answer``: a normalised golden answer occurs in a passage as a whole run of its
  tokens (token boundaries respected, so "1" is not found in "1990"), for retrieval recall.

A golden answer that normalises to nothing never matches (an empty string is in everything).
Standard library only; importable by plugins (and by nothing below the tasks layer).
"""

from __future__ import annotations

import re
import string
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, punctuation removed, articles (a, an, the) removed, whitespace collapsed."""
    text = "".join(ch for ch in str(text).lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _golds(golden_answers) -> list[str]:
    if isinstance(golden_answers, str):
        golden_answers = [golden_answers]
    return [g for g in (normalize_answer(a) for a in golden_answers or ()) if g]


def exact_match(prediction: str | None, golden_answers) -> bool:
    """The normalised prediction equals some normalised golden answer (None: no answer, False)."""
    if prediction is None:
        return False
    pred = normalize_answer(prediction)
    return any(pred == g for g in _golds(golden_answers))


def sub_exact_match(prediction: str | None, golden_answers) -> bool:
    """Some normalised golden answer is a substring of the normalised prediction."""
    if prediction is None:
        return False
    pred = normalize_answer(prediction)
    return any(g in pred for g in _golds(golden_answers))


def _f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1_score(prediction: str | None, golden_answers) -> float:
    """SQuAD token F1 of the normalised prediction, the best over the golden answers (0 for none)."""
    if prediction is None:
        return 0.0
    pred = normalize_answer(prediction).split()
    return max((_f1(pred, g.split()) for g in _golds(golden_answers)), default=0.0)


def passage_has_answer(passage: str, golden_answers) -> bool:
    """Some normalised golden answer occurs in the normalised ``passage`` as a run of whole tokens."""
    words = normalize_answer(passage).split()
    padded = " " + " ".join(words) + " "
    return any(f" {g} " in padded for g in _golds(golden_answers))
