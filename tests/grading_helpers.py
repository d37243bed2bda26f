"""Test-only grading functions for GradingPool (``fn="grading_helpers:NAME"``) and process checks.

Each function takes ``(gold, pred)`` like :func:`tasks.grading.verify_math`, appends its worker's
pid and the prediction to the file named by ``$GRADING_PID_LOG`` (when set), and, unless its
trigger word is the prediction, returns plain string equality.
"""

import os
import time


def _log_pid(pred):
    path = os.environ.get("GRADING_PID_LOG")
    if path:
        with open(path, "a") as fh:
            fh.write(f"{os.getpid()} {pred}\n")


def hang_if(gold, pred):
    """Sleep forever when ``pred == "HANG"``; otherwise ``gold == pred``."""
    _log_pid(pred)
    while pred == "HANG":
        time.sleep(60)
    return gold == pred


def crash_if(gold, pred):
    """End the worker process with ``os._exit(1)`` when ``pred == "CRASH"``; otherwise ``gold == pred``."""
    _log_pid(pred)
    if pred == "CRASH":
        os._exit(1)
    return gold == pred


def raise_if(gold, pred):
    """Raise ``ValueError("bad input")`` when ``pred == "RAISE"``; otherwise ``gold == pred``."""
    _log_pid(pred)
    if pred == "RAISE":
        raise ValueError("bad input")
    return gold == pred


def logged_pids(path, pred=None):
    """The pids in the pid log at ``path`` (one per job a worker started), or those that got ``pred``."""
    with open(path) as fh:
        rows = [line.split(" ", 1) for line in fh.read().splitlines() if line]
    return [int(pid) for pid, logged in rows if pred is None or logged == pred]


def lingering(pids):
    """The pids that still exist, alive or as unreaped zombies (Linux ``/proc``)."""
    return [pid for pid in set(pids) if os.path.exists(f"/proc/{pid}")]


def hog_if(gold, pred):
    """Allocate 8 GiB when ``pred == "HOG"`` (a MemoryError under the pool's address-space cap)."""
    _log_pid(pred)
    if pred == "HOG":
        return len(bytearray(8 << 30)) > 0
    return gold == pred


def slow_once_if(gold, pred):
    """Sleep 30 s the first time ``pred == "SLOW"`` (marker file ``$GRADING_SLOW_MARK``), then
    answer at once: a job that times out once and passes on its retry."""
    _log_pid(pred)
    mark = os.environ.get("GRADING_SLOW_MARK")
    if pred == "SLOW" and mark and not os.path.exists(mark):
        open(mark, "w").close()
        time.sleep(30)
    return gold == pred or pred == "SLOW"


def address_space_limit(gold, pred):
    """True when this worker's RLIMIT_AS soft limit is ``int(gold)`` (-1: unlimited)."""
    import resource

    return resource.getrlimit(resource.RLIMIT_AS)[0] == int(gold)


# --- the grading test set (tests/fixtures/grading/cases.jsonl) -----------------------------------

CASES_PATH = os.path.join(os.path.dirname(__file__), "fixtures", "grading", "cases.jsonl")


def load_cases(path=CASES_PATH):
    """The grading test set's cases (dicts; see tests/fixtures/grading/build_cases.py)."""
    import json

    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def extract_case(case, extract=None):
    """``(extracted, how)`` for one case, with the record fields grade_rows passes."""
    if extract is None:
        from tasks.grading import extract_answer as extract
    return extract(case["completion"], case["grader"], opened=case["opened"],
                   truncated=case["finish_reason"] == "length", gold=case["gold"])


def grade_cases(cases, pool, extract=extract_case):
    """Per case ``(correct, extracted, how)``: extracted by ``extract(case)``, math graded through
    ``pool``, choice letters by :func:`tasks.grading.grade_choice`."""
    from tasks.grading import grade_choice

    extracted = [extract(c) for c in cases]
    math = [i for i, c in enumerate(cases) if c["grader"] == "math"]
    grades = dict(zip(math, pool.grade([(cases[i]["gold"], extracted[i][0]) for i in math])))
    return [((grades[i].correct if i in grades else grade_choice(c["gold"], extracted[i][0]).correct),)
            + tuple(extracted[i]) for i, c in enumerate(cases)]


def agreement_table(cases, results):
    """Per category: cases, agreeing, agreement share, false positives, false negatives."""
    table = {}
    for case, (correct, _, _) in zip(cases, results):
        row = table.setdefault(case["category"], {"n": 0, "agree": 0, "fp": 0, "fn": 0})
        row["n"] += 1
        row["agree"] += correct == case["correct"]
        row["fp"] += correct and not case["correct"]
        row["fn"] += case["correct"] and not correct
    for row in table.values():
        row["share"] = row["agree"] / row["n"]
    return table


def format_table(table):
    lines = [f"{'category':22} {'cases':>5} {'agree':>6} {'share':>7} {'FP':>3} {'FN':>3}"]
    for cat, row in sorted(table.items()):
        lines.append(f"{cat:22} {row['n']:5d} {row['agree']:6d} {row['share']:7.1%} {row['fp']:3d} {row['fn']:3d}")
    total = sum(r["n"] for r in table.values())
    agree = sum(r["agree"] for r in table.values())
    lines.append(f"{'all':22} {total:5d} {agree:6d} {agree / total:7.1%} "
                 f"{sum(r['fp'] for r in table.values()):3d} {sum(r['fn'] for r in table.values()):3d}")
    return "\n".join(lines)
