"""Answer extraction and grading (tasks.grading): extraction rules, math equivalence, the pool."""

import multiprocessing
import os
import subprocess
import sys
import time

import pytest

import grading_helpers
from tasks.grading import (DEFAULT_MEMORY_LIMIT, Grade, GradingPool, answer_keys, answer_region,
                           cluster_answers, extract_answer, grade_choice, last_boxed, plain_number,
                           split_answers, verify_math, verify_sympy)

HELPERS = grading_helpers.__name__
needs_proc = pytest.mark.skipif(not os.path.isdir("/proc"), reason="process checks read /proc")


@pytest.fixture(scope="module")
def math_pool():
    """One verify_math pool shared by the module's math tests."""
    with GradingPool(workers=2, timeout_s=10.0) as pool:
        yield pool


@pytest.fixture
def pid_log(tmp_path, monkeypatch):
    """Helper workers spawned in this test log their pids here."""
    path = tmp_path / "pids.txt"
    path.touch()
    monkeypatch.setenv("GRADING_PID_LOG", str(path))
    return path


# --- answer region and boxes -------------------------------------------------------------------

@pytest.mark.parametrize("text, opened, expected", [
    ("The answer is 4.", False, "The answer is 4."),
    ("<think>2+2</think> It is 4.", False, "It is 4."),
    ("<think>a</think> x <think>b</think> final", False, "final"),
    ("<think>2+2 so \\boxed{4}", False, None),                      # truncated thought
    ("<think>a</think> x <think>b, \\boxed{4}", False, None),        # second thought truncated
    ("2+2 so \\boxed{4}", True, None),                               # prompt opened the thought
    ("2+2</think> \\boxed{4}", True, "\\boxed{4}"),
])
def test_answer_region(text, opened, expected):
    assert answer_region(text, opened=opened) == expected


def test_answer_region_custom_tags():
    assert answer_region("[T]x[/T] y", "[T]", "[/T]") == "y"
    assert answer_region("[T]x </think> y", "[T]", "[/T]") is None


@pytest.mark.parametrize("text, expected", [
    ("so \\boxed{\\frac{1}{\\sqrt{2}}}.", "\\frac{1}{\\sqrt{2}}"),
    ("\\boxed{2} and later \\boxed{3}", "3"),
    ("\\fbox{7} is it", "7"),
    ("$\\boxed 5$", "5"),
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
    ("\\boxed{2} then \\boxed{\\frac{1}{2", None),                  # last box never closes
    ("no box here {1}", None),
])
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


# --- extraction --------------------------------------------------------------------------------

@pytest.mark.parametrize("completion, expected", [
    ("<think>try 2</think> Wrong was \\boxed{2}, right is \\boxed{3}.", ("3", "boxed")),
    ("The final answer is $\\frac{1}{2}$. I hope it is correct.", ("\\frac{1}{2}", "answer_is")),
    ("So the answer is 3.5.\nDone", ("3.5", "answer_is")),
    ("The answer is \\(\\frac{3}{4}\\).", ("\\frac{3}{4}", "answer_is")),
    ("Natalia sold 48 clips.\n#### 1,234", ("1,234", "hashes")),
    ("I am not sure.", (None, "no_answer")),
    ("\\boxed{}", (None, "no_answer")),
    ("<think>so it is \\boxed{42}", (None, "unclosed_thought")),
])
def test_extract_math(completion, expected):
    assert extract_answer(completion, "math") == expected


def test_extract_opened_thought():
    assert extract_answer("it is \\boxed{4}", "math", opened=True) == (None, "unclosed_thought")
    assert extract_answer("thinking</think> \\boxed{4}", "math", opened=True) == ("4", "boxed")
    assert extract_answer("it is \\boxed{4}", "math") == ("4", "boxed")


@pytest.mark.parametrize("completion, expected", [
    ("\\boxed{B}", ("B", "boxed")),
    ("\\boxed{(C)}", ("C", "boxed")),
    ("$\\boxed{\\text{D}}$", ("D", "boxed")),
    ("\\boxed{\\textbf{(A)}}", ("A", "boxed")),
    ("The answer is (B).", ("B", "answer_is")),
    ("Answer: C", ("C", "answer_is")),
    ("**Answer:** A", ("A", "answer_is")),
    ("\\boxed{42} so Answer: D", ("D", "answer_is")),               # a box without a letter
    ("Not A, then B... Answer: A\nAnswer: D", ("D", "answer_is")),  # the last phrase wins
    ("Answer: A - the others fail", ("A", "answer_is")),
    ("the answer is a bit unclear", (None, "no_answer")),
    ("The correct answer is D-glucose.", (None, "no_answer")),
    ("<think>Answer: B", (None, "unclosed_thought")),
])
def test_extract_choice(completion, expected):
    assert extract_answer(completion, "choice") == expected


@pytest.mark.parametrize("completion, gold, expected", [
    ("Final answer: 42", None, ("42", "answer_phrase")),
    ("**Final Answer:** $\\frac{1}{2}$", None, ("\\frac{1}{2}", "answer_phrase")),
    ("Answer $9$", None, ("9", "answer_phrase")),
    ("Q: how many?\nA: 18", None, ("18", "answer_phrase")),
    ("Answer: she has 18 apples left.", None, ("18", "answer_phrase")),
    ("The answer is 18 dollars.", None, ("18", "answer_is")),            # prose around one number
    ("The answer is correct, I think. Final answer: 4", None, ("4", "answer_phrase")),
    ("Step one: \\boxed{6}.\nFinal answer: 42", None, ("42", "answer_after_box")),
    ("\\boxed{9}\nAnswer: see the box above.", None, ("9", "boxed")),    # not an answer: the box stands
    ("Natalia sold 48 + 24 = 72 clips altogether.", None, ("72", "final_statement")),
    ("It took 15 minutes.\nI hope this helps!", None, ("15", "final_statement")),
    ("Therefore $a = 7$.", None, ("7", "final_statement")),
    ("I could not solve it.", None, (None, "no_answer")),
    ("\\boxed{3} and \\boxed{-2}", "3, -2", ("3, -2", "boxed_joined")),
    ("\\boxed{3} and \\boxed{-2}", "-2", ("-2", "boxed")),
    ("\\boxed{x=3 \\text{ or } x=-2}", "3, -2", ("x=3 \\text{ or } x=-2", "boxed")),
    ("Step: \\boxed{1}.\nFinal answer: \\boxed{3}", "3, -2", ("3", "boxed")),   # not past the anchor
    ("Final answer: $3$ and $-2$", "3, -2", ("3, -2", "answer_phrase")),
])
def test_extract_math_fallbacks(completion, gold, expected):
    assert extract_answer(completion, "math", gold=gold) == expected


@pytest.mark.parametrize("completion, expected", [
    ("B", ("B", "choice_final")),
    ("**B**", ("B", "choice_final")),
    ("'B'", ("B", "choice_final")),
    ("The second fits.\n\nB.", ("B", "choice_final")),
    ("(B) 656 nm", ("B", "choice_final")),
    ("Comparing them, the correct option is B.", ("B", "choice_phrase")),
    ("Thus, the correct answer is option B.", ("B", "choice_phrase")),
    ("I'll go with (B).", ("B", "choice_phrase")),
    ("Both fit, but C accounts for the spin, so C.", ("C", "choice_phrase")),
    ("Vitamin D is correct here.", (None, "no_answer")),
    ("A good approach is to compute the energy first.", (None, "no_answer")),
])
def test_extract_choice_fallbacks(completion, expected):
    assert extract_answer(completion, "choice") == expected


@pytest.mark.parametrize("completion, grader, expected", [
    ("so the answer is 12", "math", (None, "truncated")),      # may be cut from 125
    ("The answer is 12. Then we", "math", ("12", "answer_is")),
    ("Final answer: 12", "math", (None, "truncated")),          # no fallback on a truncated output
    ("\\boxed{12} and then we", "math", ("12", "boxed")),        # a closed box stands
    ("\\boxed{\\frac{1}{2", "math", (None, "truncated")),
    ("the answer is B", "choice", (None, "truncated")),
    ("the answer is (B). But", "choice", ("B", "answer_is")),
    ("<think>Final answer: 12", "math", (None, "unclosed_thought")),
])
def test_extract_truncated(completion, grader, expected):
    assert extract_answer(completion, grader, truncated=True) == expected


def test_fallbacks_never_read_noise():
    import random

    rng = random.Random(7)
    for _ in range(50):
        noise = bytes(rng.randrange(256) for _ in range(120)).decode("utf-8", errors="replace")
        assert extract_answer(noise + " 42", "math") == (None, "no_answer")
        assert extract_answer(noise + "\n(B)", "choice") == (None, "no_answer")
    soup = "ilde ancell ovie rut aghetti Ern iffs elsen ingly Kont pheres ualt odia ersh"
    assert extract_answer(soup + " 42", "math") == (None, "no_answer")


@pytest.mark.parametrize("gold, parts", [
    ("3, -2", ["3", "-2"]), ("(1,6),(2,3)", ["(1,6)", "(2,3)"]), ("(3, -2)", ["(3, -2)"]),
    ("1,234", ["1,234"]), ("1,\\!000", ["1,\\!000"]), ("10{,}000", ["10{,}000"]), ("\\{1,2\\}", ["\\{1,2\\}"]),
    ("[-2, 4]", ["[-2, 4]"]), ("\\frac{1}{2}, 2", ["\\frac{1}{2}", "2"]), ("2, 5, 7", ["2", "5", "7"]), ("7", ["7"]),
])
def test_split_answers(gold, parts):
    assert split_answers(gold) == parts


def test_extract_rejects_unknown_grader():
    with pytest.raises(ValueError):
        extract_answer("\\boxed{1}", "exact")


def test_gsm8k_gold():
    from tasks.gsm8k import parse_gold
    from tasks.loading import DataError

    def gsm8k_gold(answer):
        return parse_gold(answer, "test.jsonl:1")[0]

    assert gsm8k_gold("She has 1,000 + 234 = <<1000+234=1234>>1,234 apples.\n#### 1,234") == "1234"
    assert gsm8k_gold("#### -5") == "-5"
    with pytest.raises(DataError):
        gsm8k_gold("She has 1234 apples.")


def test_grade_choice():
    assert grade_choice("B", "B") == Grade(True, "match")
    assert grade_choice("(b)", "B") == Grade(True, "match")
    assert grade_choice("B", "C") == Grade(False, "mismatch")
    assert grade_choice("B", None) == Grade(False, "no_answer")


# --- math equivalence (through the shared pool) -----------------------------------------------

EQUAL = [
    ("\\frac{1}{2}", "0.5"), ("\\frac{1}{2}", "1/2"), ("\\frac{1}{2}", "\\dfrac{1}{2}"), ("0.5", "\\frac12"),
    ("5", "5 \\text{ cm}"), ("5 \\text{ cm}", "5"), ("1234", "1,234"), ("$\\frac{1}{2}$", "0.5"),
    ("50\\%", "50"), ("50", "50\\%"), ("0.5", "50\\%"),           # percent: see verify_math
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"), ("x^2+1", "1+x^2"), ("\\frac{1}{3}", "0.333333"),
]
UNEQUAL = [
    ("2", "3"), ("\\frac{1}{3}", "0.33"), ("50", "0.5"), ("\\frac{1}{2}", "\\frac{1}{3}"), ("-3", "3"),
    ("x+1", "x-1"), ("1000000", "1000001"), ("5", ""),
]


def test_math_equivalence(math_pool):
    grades = math_pool.grade(EQUAL + UNEQUAL)
    assert [g.reason for g in grades] == ["match"] * len(EQUAL) + ["mismatch"] * len(UNEQUAL)
    assert [g.correct for g in grades] == [True] * len(EQUAL) + [False] * len(UNEQUAL)


def test_pool_matches_in_process(math_pool):
    jobs = EQUAL[:5] + UNEQUAL[:3]
    assert [g.correct for g in math_pool.grade(jobs)] == [verify_math(g, p) for g, p in jobs]


def test_end_to_end_truncated_thought_is_never_correct(math_pool):
    completions = ["<think>clearly \\boxed{12}",                   # right answer, but inside the thought
                   "<think>hmm</think> So \\boxed{12}.", "<think>hmm</think> So \\boxed{13}."]
    extracted = [extract_answer(c, "math") for c in completions]
    assert [how for _, how in extracted] == ["unclosed_thought", "boxed", "boxed"]
    grades = math_pool.grade([("12", answer) for answer, _ in extracted])
    assert grades == [Grade(False, "no_answer"), Grade(True, "match"), Grade(False, "mismatch")]


def test_no_answer_skips_workers_and_progress_counts_every_job(math_pool):
    seen = []
    grades = math_pool.grade([("1", None), ("1", "1"), ("2", None)], progress=seen.append)
    assert grades == [Grade(False, "no_answer"), Grade(True, "match"), Grade(False, "no_answer")]
    assert sum(seen) == 3


def test_plain_number_shortcut_agrees_with_math_verify():
    pairs = [("1234", "1,234"), ("12", "12.0"), ("12", "012"), ("0.5", "0.50"), ("3", "3.000001"), ("-0", "0"),
             ("1000000", "1000001"), ("$12$", "12"), ("2.5", "2.50000")]
    assert all(plain_number(a) is not None and plain_number(b) is not None for a, b in pairs)
    assert [verify_math(a, b) for a, b in pairs] == [verify_sympy(a, b) for a, b in pairs]
    assert plain_number("0.3333333") is None and plain_number("1/2") is None and plain_number("50\\%") is None


def test_cluster_answers_by_equivalence(math_pool):
    answers = ["0.5", "\\frac12", "1/3", None, "0.50", "2", " 1/3 ", "\\dfrac{1}{2}"]
    assert cluster_answers(answers, math_pool) == [0, 0, 1, None, 0, 2, 1, 0]
    # with grades: the correct ones form one cluster without being compared to each other
    correct = [False, False, True, False, False, False, True, False]
    assert cluster_answers(answers, math_pool, correct=correct) == [0, 0, 1, None, 0, 2, 1, 0]
    assert cluster_answers([None, None]) == [None, None]


def test_answer_keys_use_the_gold_for_correct_answers(math_pool):
    problems = [("\\frac{1}{3}", ["1/3", "0.5", "\\frac12", None, "\\dfrac{1}{3}"], [True, False, False, False, True]),
                ("7", ["8", "8.0"], [False, False])]
    assert answer_keys(problems, math_pool) == [["\\frac{1}{3}", "0.5", "0.5", None, "\\frac{1}{3}"], ["8", "8"]]


def test_majority_votes_on_answer_keys():
    from reports.reasoning import majority_correct

    def rec(sample, extracted, correct, key=None):
        r = {"sample": sample, "extracted": extracted, "correct": correct}
        return r | ({"answer_key": key} if key else {})

    # exact strings: "3" (two votes, wrong) beats three spellings of 1/2 (one vote each)
    old = [rec(0, "3", False), rec(1, "3", False), rec(2, "0.5", True), rec(3, "\\frac12", True), rec(4, "1/2", True)]
    assert majority_correct(old) == 0.0
    keyed = [r | {"answer_key": "\\frac{1}{2}" if r["correct"] else "3"} for r in old]
    assert majority_correct(keyed) == 1.0


def test_grade_rows_records_answer_keys(math_pool):
    from plugins.evals.reasoning import grade_rows

    arms = {"a": {"think_open": "<think>", "think_close": "</think>"}}
    base = {"arm": "a", "benchmark": "math500", "grader": "math", "answer": "\\frac{1}{2}", "prompt_style": "plain",
            "finish_reason": "stop"}
    rows = [base | {"item_id": "p1", "sample": i, "completion": c} for i, c in
            enumerate(["\\boxed{0.5}", "\\boxed{3}", "Final answer: 3.0", "\\boxed{\\dfrac{1}{2}}"])]
    rows.append(base | {"item_id": "p1", "sample": 4, "completion": "so the answer is 1", "finish_reason": "length"})
    rows.append(base | {"item_id": "g", "sample": 0, "benchmark": "gpqa_diamond", "grader": "choice", "answer": "B",
                        "completion": "the correct option is B."})
    grade_rows(rows, math_pool, arms, [])
    assert [r["correct"] for r in rows] == [True, False, False, True, False, True]
    assert [r["extract_how"] for r in rows] == ["boxed", "boxed", "answer_phrase", "boxed", "truncated",
                                                "choice_phrase"]
    assert [r["answer_key"] for r in rows] == ["\\frac{1}{2}", "3", "3", "\\frac{1}{2}", None, "B"]


# --- pool robustness ---------------------------------------------------------------------------

@needs_proc
@pytest.mark.parametrize("workers, retry_factor", [(1, 4.0), (2, 4.0), (2, 0)])
def test_hang_costs_one_item(workers, retry_factor, pid_log):
    """A hang is retried once with a 4x deadline (retry_factor=0: never), then graded "timeout"."""
    jobs = [("a", "a"), ("b", "x"), ("c", "HANG"), ("d", "d"), ("e", None), ("f", "f"), ("g", "y")]
    start = time.monotonic()
    with GradingPool(workers=workers, timeout_s=1.0, fn=f"{HELPERS}:hang_if", retry_factor=retry_factor) as pool:
        grades = pool.grade(jobs)
        assert time.monotonic() - start < 20
        assert [g.reason for g in grades] == ["match", "mismatch", "timeout", "match", "no_answer",
                                             "match", "mismatch"]
        assert [g.correct for g in grades] == [True, False, False, True, False, True, False]
        hung = grading_helpers.logged_pids(pid_log, "HANG")
        assert len(hung) == (2 if retry_factor else 1) and len(set(hung)) == len(hung)  # a new worker each try
        assert grading_helpers.lingering(hung) == []                        # killed and reaped
        assert pool.grade([("z", "z")]) == [Grade(True, "match")]           # still usable
    assert grading_helpers.lingering(grading_helpers.logged_pids(pid_log)) == []


def test_a_slow_item_passes_on_its_retry(tmp_path, monkeypatch, pid_log):
    """A load spike: the first try runs out of time, the retry (4x the deadline) grades it."""
    monkeypatch.setenv("GRADING_SLOW_MARK", str(tmp_path / "slow-once"))
    jobs = [("a", "a"), ("b", "SLOW"), ("c", "x")]
    with GradingPool(workers=2, timeout_s=1.0, fn=f"{HELPERS}:slow_once_if") as pool:
        grades = pool.grade(jobs)
    assert grades == [Grade(True, "match"), Grade(True, "match (retried)", retried=True), Grade(False, "mismatch")]
    assert len(grading_helpers.logged_pids(pid_log, "SLOW")) == 2


@needs_proc
def test_memory_cap_costs_one_item(pid_log):
    jobs = [("a", "a"), ("b", "HOG"), ("c", "c"), ("d", "x")]
    with GradingPool(workers=1, timeout_s=20.0, fn=f"{HELPERS}:hog_if", memory_limit=1 << 30) as pool:
        grades = pool.grade(jobs)
    assert grades == [Grade(True, "match"), Grade(False, "error: out of memory (worker limit 1024 MiB)"),
                      Grade(True, "match"), Grade(False, "mismatch")]
    hogs = grading_helpers.logged_pids(pid_log, "HOG")
    assert len(hogs) == 1 and grading_helpers.lingering(grading_helpers.logged_pids(pid_log)) == []


def test_workers_cap_their_address_space():
    import resource

    assert DEFAULT_MEMORY_LIMIT == 2 << 30
    with GradingPool(workers=1, fn=f"{HELPERS}:address_space_limit") as pool:
        assert pool.grade([(str(DEFAULT_MEMORY_LIMIT), "")]) == [Grade(True, "match")]
    if resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY:
        with GradingPool(workers=1, fn=f"{HELPERS}:address_space_limit", memory_limit=None) as pool:
            assert pool.grade([(str(resource.RLIM_INFINITY), "")]) == [Grade(True, "match")]


@needs_proc
def test_crash_costs_one_item(pid_log):
    jobs = [("a", "a"), ("b", "CRASH"), ("c", "x"), ("d", "d"), ("e", "CRASH"), ("f", "f")]
    with GradingPool(workers=2, timeout_s=5.0, fn=f"{HELPERS}:crash_if") as pool:
        grades = pool.grade(jobs)
        crashed = grading_helpers.logged_pids(pid_log, "CRASH")
        assert len(set(crashed)) == 2 and grading_helpers.lingering(crashed) == []  # reaped
    assert grades == [Grade(True, "match"), Grade(False, "error: worker died"), Grade(False, "mismatch"),
                      Grade(True, "match"), Grade(False, "error: worker died"), Grade(True, "match")]
    assert grading_helpers.lingering(grading_helpers.logged_pids(pid_log)) == []


@pytest.mark.parametrize("workers", [1, 3])
def test_raise_costs_one_item(workers):
    jobs = [("a", "a"), ("b", "RAISE"), ("c", "x"), ("d", "d")]
    with GradingPool(workers=workers, timeout_s=5.0, fn=f"{HELPERS}:raise_if") as pool:
        grades = pool.grade(jobs)
    assert grades == [Grade(True, "match"), Grade(False, "error: ValueError: bad input"),
                      Grade(False, "mismatch"), Grade(True, "match")]


@needs_proc
def test_recycling_keeps_results(pid_log):
    jobs = [(str(i), str(i) if i % 3 else "wrong") for i in range(10)]
    with GradingPool(workers=2, timeout_s=5.0, max_tasks_per_worker=2, fn=f"{HELPERS}:raise_if") as pool:
        grades = pool.grade(jobs)
    assert [g.correct for g in grades] == [bool(i % 3) for i in range(10)]
    pids = grading_helpers.logged_pids(pid_log)
    assert len(pids) == 10 and max(pids.count(p) for p in pids) <= 2 and len(set(pids)) >= 5
    assert grading_helpers.lingering(pids) == []


def test_pool_is_lazy_and_reports_bad_function():
    before = len(multiprocessing.active_children())
    pool = GradingPool(workers=2, fn=f"{HELPERS}:no_such_function")
    assert len(multiprocessing.active_children()) == before
    assert pool.grade([("1", None)]) == [Grade(False, "no_answer")]  # nothing to send: nothing started
    with pytest.raises(RuntimeError, match="no_such_function"):
        pool.grade([("1", "1")])
    pool.close()
    assert len(multiprocessing.active_children()) == before


def test_module_imports_cheaply():
    code = ("import sys, tasks.grading; heavy = {'sympy', 'math_verify', 'torch'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
