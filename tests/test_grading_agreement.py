"""Agreement of extraction + grading with the project's grading test set, per category.

tests/fixtures/grading/cases.jsonl (built by build_cases.py there) holds completions as models write
them with the gold, grader kind and the verdict a faithful grader gives. Categories whose rule is
exact must agree on every case; heuristic ones (answers found without a box, notation math-verify
may not equate) have a stated floor. Garbage, truncated and unclosed-thought outputs are never
correct: no false positive there at all. ``pytest -s`` prints the table and the disagreements.
"""

from collections import Counter

import pytest

import grading_helpers
from tasks.grading import GradingPool

pytest.importorskip("math_verify")

EXACT = {"boxed", "truncated", "garbage", "unclosed-thought", "phrase-after-box", "multi-answer", "name=value"}
FLOORS = {"phrase": 0.95, "bare-number": 0.9, "choice-letter-forms": 0.95, "latex-equivalence": 0.9}
NEVER_CORRECT = {"garbage", "truncated"}
MIN_CASES = 300


@pytest.fixture(scope="module")
def graded():
    cases = grading_helpers.load_cases()
    with GradingPool(workers=2, timeout_s=10.0) as pool:
        results = grading_helpers.grade_cases(cases, pool)
    table = grading_helpers.agreement_table(cases, results)
    print("\n" + grading_helpers.format_table(table))
    for case, (correct, extracted, how) in zip(cases, results):
        if correct != case["correct"]:
            print(f"  disagree {case['id']}: {case['completion'][:60]!r} gold {case['gold']!r} -> "
                  f"{extracted!r} ({how}), graded {correct}")
    return cases, results, table


def test_the_set_is_big_and_labelled():
    cases = grading_helpers.load_cases()
    assert len(cases) >= MIN_CASES
    assert len({c["id"] for c in cases}) == len(cases)
    counts = Counter(c["category"] for c in cases)
    assert set(counts) == EXACT | set(FLOORS)
    assert all(c["grader"] in ("math", "choice") and c["finish_reason"] in ("stop", "length") for c in cases)
    for cat in counts:  # every category checks both verdicts, except those never correct
        verdicts = {c["correct"] for c in cases if c["category"] == cat}
        assert verdicts == ({False} if cat in NEVER_CORRECT else {True, False}), cat


@pytest.mark.parametrize("category", sorted(EXACT | set(FLOORS)))
def test_agreement_per_category(graded, category):
    _, _, table = graded
    row = table[category]
    floor = 1.0 if category in EXACT else FLOORS[category]
    assert row["share"] >= floor, f"{category}: {row['agree']}/{row['n']} agree, floor {floor:.0%}"


def test_no_false_positive_where_nothing_can_be_correct(graded):
    cases, results, _ = graded
    wrong = [c["id"] for c, (correct, _, _) in zip(cases, results)
             if correct and (c["category"] in NEVER_CORRECT or not c["correct"])]
    assert [w for w in wrong if w.split("-0")[0] in NEVER_CORRECT] == []
    assert len(wrong) <= 2, wrong  # and hardly any elsewhere


def test_truncated_and_unclosed_outputs_yield_no_answer(graded):
    cases, results, _ = graded
    for case, (_, extracted, how) in zip(cases, results):
        if case["category"] == "truncated":
            assert (extracted, how[:9]) in ((None, "truncated"), (None, "unclosed_"))
        if case["category"] == "unclosed-thought" and not case["correct"]:
            assert (extracted, how) == (None, "unclosed_thought"), case["id"]
