"""Answer grading for reasoning benchmarks: math equivalence, choice letters, answer clusters.

GSM8K, MATH-500 and OlympiadBench are graded as ``math`` (math_verify equivalence of the extracted
answer and the gold), GPQA-Diamond as ``choice`` (a letter A-D). Extraction (which text is the
answer) lives in :mod:`tasks.extraction` and is re-exported here; only the text after the model's
last closed thought is ever graded: a truncated thought has no answer.

Symbolic comparison can hang (sympy on adversarial input), so :class:`GradingPool`
(:mod:`tasks.grading_pool`) runs the comparison in worker processes with a per-item deadline
enforced from outside: a hang costs one item. math_verify and sympy are imported only inside the
functions that need them.
"""

from __future__ import annotations

import functools
import re
from fractions import Fraction

from tasks.extraction import (answer_count, answer_region, boxes, extract_answer, last_boxed, split_answers,
                              strip_delims)
from tasks.grading_pool import DEFAULT_MEMORY_LIMIT, Grade, GradingPool

__all__ = ["DEFAULT_MEMORY_LIMIT", "Grade", "GradingPool", "answer_count", "answer_keys", "answer_region", "boxes",
           "cluster_answers", "cluster_many", "extract_answer", "grade_choice", "last_boxed", "normalize",
           "parse_answer", "parsed_gold", "plain_number", "split_answers", "strip_delims", "verify_math",
           "verify_sympy", "warm_up"]

_PLAIN_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?")
MAX_CLUSTERED = 32  # distinct wrong answers per problem compared pairwise; later ones vote as exact strings


def plain_number(s: str) -> Fraction | None:
    """The value of ``s`` when it is a plain decimal number with at most 6 decimals (``1,234``,
    ``-0.25``, ``$12$``), else None. Such numbers compare exactly as math_verify compares them
    (its floats round at 6 decimals), so :func:`verify_math` decides them without sympy."""
    s = strip_delims(s)
    m = _PLAIN_NUMBER_RE.fullmatch(s)
    if not m or (m.group(1) and len(m.group(1)) > 6):
        return None
    return Fraction(s.replace(",", ""))


def verify_math(gold: str, predicted: str) -> bool:
    """True when ``predicted`` is mathematically equivalent to ``gold`` (math_verify).

    Each side is stripped of one pair of math delimiters and parsed as ``$...$`` with LaTeX and
    plain-expression extraction, so ``\\frac{1}{2}``, ``\\dfrac{1}{2}``, ``1/2`` and ``0.5`` all
    parse to 1/2; text units are stripped (``5 \\text{ cm}`` == 5). Percent follows math_verify:
    ``50\\%`` equals both ``50`` and ``0.5`` (GSM8K/MATH golds for "what percent" questions are bare
    numbers, while models often write the percent sign); without a percent sign 50 != 0.5. Floats
    compare after rounding to 6 decimals, so 1/3 == 0.333333 but 1/3 != 0.33 (two plain decimal
    numbers are compared exactly, without sympy: :func:`plain_number`). ``name = value`` on either
    side compares on the value (math_verify: ``x = 5`` == ``5``); a list such as ``3, -2`` is a set
    (order-free). math_verify's signal-based timeouts are off: run this under :class:`GradingPool`
    for a deadline.
    """
    a, b = plain_number(gold), plain_number(predicted)
    if a is not None and b is not None:
        return a == b
    return verify_sympy(gold, predicted)


def verify_sympy(gold: str, predicted: str) -> bool:
    """:func:`verify_math` without its plain-number shortcut: always math_verify."""
    from math_verify import verify

    return bool(verify(parsed_gold(gold), parse_answer(predicted), timeout_seconds=None))


def parse_answer(s: str) -> list:
    """math_verify's parse of one answer string (``$s$`` first, then ``s`` as it is)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    config = [LatexExtractionConfig(), ExprExtractionConfig()]
    s = strip_delims(s)
    return (parse(f"${s}$", extraction_config=config, parsing_timeout=None)
            or parse(s, extraction_config=config, parsing_timeout=None))


@functools.lru_cache(maxsize=4096)
def parsed_gold(gold: str) -> list:
    """:func:`parse_answer` of a gold, cached: a problem's k samples share its gold, and a parse is
    most of a comparison's cost (sympy objects are immutable, so sharing them is safe)."""
    return parse_answer(gold)


def warm_up() -> None:
    """Import math_verify, silence its one-time "timeout disabled" warnings and run one check.

    Pool workers call a ``warm_up`` of their function's module before taking jobs, so import and
    first-call costs never count against a job's deadline.
    """
    import logging

    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).setLevel(logging.ERROR)
    verify_math("\\frac{1}{2}", "0.5")


def grade_choice(gold_letter: str, predicted: str | None) -> Grade:
    """Grade a multiple-choice letter against the gold letter (case and parentheses ignored)."""
    if predicted is None:
        return Grade(False, "no_answer")
    same = gold_letter.strip(" ()").upper() == predicted.strip(" ()").upper()
    return Grade(same, "match" if same else "mismatch")


def normalize(answer: str) -> str:
    """An answer string with its whitespace collapsed (what exact-string maj@k votes compare)."""
    return " ".join(answer.split())


def _quick_equal(a: str, b: str) -> bool | None:
    """True/False when two answers are decided without sympy (equal strings, plain numbers)."""
    if a == b:
        return True
    x, y = plain_number(a), plain_number(b)
    return None if x is None or y is None else x == y


def cluster_many(problems: list[list[str | None]], pool: GradingPool | None = None,
                 correct: list[list[bool]] | None = None, timeout_s: float = 5.0) -> list[list[int | None]]:
    """Cluster ids by math equivalence for each problem's extracted answers (see :func:`cluster_answers`),
    all problems' comparisons in one batch through ``pool`` (a temporary :class:`GradingPool` with
    ``timeout_s`` per comparison when None)."""
    plans, jobs = [], []
    for p, answers in enumerate(problems):
        flags = correct[p] if correct is not None else [False] * len(answers)
        distinct: dict[str, bool] = {}
        for ans, ok in zip(answers, flags):
            if ans is not None:
                distinct[normalize(ans)] = distinct.get(normalize(ans), False) or bool(ok)
        wrong = [s for s, ok in distinct.items() if not ok][:MAX_CLUSTERED]
        pairs = {}
        for i, a in enumerate(wrong):
            for b in wrong[i + 1:]:
                quick = _quick_equal(a, b)
                pairs[(a, b)] = quick if quick is not None else len(jobs)
                if quick is None:
                    jobs.append((a, b))
        plans.append((answers, distinct, pairs))
    if jobs:
        own = pool is None
        pool = pool or GradingPool(timeout_s=timeout_s)
        try:
            grades = pool.grade(jobs)
        finally:
            if own:
                pool.close()
    out = []
    for answers, distinct, pairs in plans:
        reps: list[str] = []  # representative (first member) of each cluster, in id order
        ids: dict[str, int] = {}
        right = None
        for s, ok in distinct.items():
            if ok:
                right = ids[s] = right if right is not None else _new(reps, s)
                continue
            for cid, rep in enumerate(reps):
                v = pairs.get((rep, s))
                if v is not None and (v is True or (v is not False and grades[v].correct)):
                    ids[s] = cid
                    break
            else:
                ids[s] = _new(reps, s)
        out.append([None if a is None else ids[normalize(a)] for a in answers])
    return out


def _new(reps: list[str], s: str) -> int:
    reps.append(s)
    return len(reps) - 1


def cluster_answers(answers: list[str | None], pool: GradingPool | None = None,
                    correct: list[bool] | None = None, timeout_s: float = 5.0) -> list[int | None]:
    """Cluster ids (0, 1, ... in order of first appearance; None for a missing answer) grouping one
    problem's extracted answers by math equivalence: ``0.5`` and ``\\frac12`` share an id.

    Whitespace-normalized equal strings always share an id. With ``correct`` (each answer's grade),
    every correct answer is in one cluster (each equals the gold) and wrong answers are compared
    only with wrong ones; without it all answers are compared. Other pairs are compared with
    :func:`verify_math` through ``pool`` (a timed-out comparison means "different"); a member joins
    the first earlier cluster whose first member it equals. At most :data:`MAX_CLUSTERED` distinct
    wrong answers are compared; later ones cluster by exact string only.
    """
    return cluster_many([answers], pool, [correct] if correct is not None else None, timeout_s)[0]


def answer_keys(problems: list[tuple[str | None, list[str | None], list[bool]]],
                pool: GradingPool | None = None) -> list[list[str | None]]:
    """maj@k vote keys for each problem's ``(gold, answers, correct)``: per answer, a canonical
    representative of its equivalence cluster (:func:`cluster_many`): the whitespace-normalized
    gold for correct answers (the same key in every chunk of a run), the cluster's first member
    otherwise; None for a missing answer."""
    ids = cluster_many([answers for _, answers, _ in problems], pool, [ok for _, _, ok in problems])
    out = []
    for (gold, answers, ok), cids in zip(problems, ids):
        first: dict[int, str] = {}
        for a, c, good in zip(answers, cids, ok):
            if c is not None and c not in first:
                first[c] = normalize(gold) if good and gold else normalize(a)
        out.append([None if c is None else first[c] for c in cids])
    return out
