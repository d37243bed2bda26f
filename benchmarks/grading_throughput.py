"""Throughput of math answer grading, and whether the deadline changes any grade.

Default mix (``--mix testset``): the project's grading test set (tests/fixtures/grading/cases.jsonl:
boxed, phrase, bare-number, multi-answer, name=value, latex-equivalence, truncated and garbage
completions), extracted as the eval extracts them, its math answers repeated in a seeded shuffle
up to ``--n``. ``--mix synthetic`` is a seeded mix of (gold, predicted) pairs like MATH-500 /
GSM8K answers (integers with commas, fractions vs decimals, radicals, polynomials, units, percents,
intervals, pi; about one third wrong). Prints extraction time, answers/s (a) in this process with
``verify_math`` in a loop and (b) through ``GradingPool(workers=N)`` at two deadlines
(``--timeout`` and ``--timeout2``; a timed-out answer is retried once at 4x), and whether the pool
gave the same grade as the in-process loop at both. Not a test.

    python benchmarks/grading_throughput.py [--mix testset|synthetic] [--n 2000] [--workers 2]
        [--timeout 5] [--timeout2 0.5] [--max-tasks 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import time
from collections import Counter
from pathlib import Path

from tasks.grading import GradingPool, answer_keys, extract_answer, verify_math, warm_up

CASES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "grading" / "cases.jsonl"


def testset_jobs(rng: random.Random, n: int) -> tuple[list[tuple[str, str | None]], float]:
    """``n`` (gold, extracted) math jobs from the grading test set, and the extraction time per answer."""
    cases = [json.loads(line) for line in CASES.read_text(encoding="utf-8").splitlines() if line.strip()]
    cases = [c for c in cases if c["grader"] == "math"]
    start = time.perf_counter()
    jobs = [(c["gold"], extract_answer(c["completion"], "math", opened=c["opened"],
                                       truncated=c["finish_reason"] == "length", gold=c["gold"])[0]) for c in cases]
    per_answer = (time.perf_counter() - start) / len(cases)
    return [jobs[rng.randrange(len(jobs))] for _ in range(n)], per_answer


def make_pair(rng: random.Random) -> tuple[str, str, bool]:
    """``(gold, predicted, intended_correct)`` in one of several answer shapes; a third are wrong."""
    wrong = rng.random() < 0.33
    return (*_shape(rng, wrong), not wrong)


def _shape(rng: random.Random, wrong: bool) -> tuple[str, str]:
    a, b, c = rng.randint(2, 999), rng.randint(2, 97), rng.randint(1, 9)
    kind = rng.randrange(9)
    if kind == 0:
        n = rng.randint(1000, 9_999_999)
        return str(n), f"{n + wrong:,}"
    if kind == 1:
        return f"\\frac{{{a}}}{{{b}}}", f"{a + wrong}/{b}" if rng.random() < 0.5 else f"\\dfrac{{{a + wrong}}}{{{b}}}"
    if kind == 2:
        return f"\\frac{{{c}}}{{8}}", f"{(c + wrong) / 8}"
    if kind == 3:
        return f"{c}\\sqrt{{{b}}}", f"\\sqrt{{{c * c * b + wrong}}}"
    if kind == 4:
        p, q = rng.randint(-9, 9), rng.randint(-9, 9)
        return f"x^2 {p + q:+d}x {p * q:+d}", f"(x {p:+d})(x {q + wrong:+d})"
    if kind == 5:
        return f"{a} \\text{{ cm}}", f"{a + wrong}"
    if kind == 6:
        return f"{c * 5}\\%", f"{c * 5 + wrong}"
    if kind == 7:
        return f"\\left( -{c}, {a} \\right]", f"(-{c},{a + wrong}]"
    return f"\\frac{{{c}\\pi}}{{{b}}}", f"{c + wrong}\\pi/{b}"


def pool_run(jobs, workers: int, timeout: float, max_tasks: int) -> tuple[list, float, float, float]:
    """Grades, seconds grading, seconds starting the workers, worker CPU seconds, parent CPU seconds."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    with GradingPool(workers=workers, timeout_s=timeout, max_tasks_per_worker=max_tasks) as pool:
        start = time.perf_counter()
        pool.grade([("1", "1")] * workers)  # start the workers
        t_start = time.perf_counter() - start
        start, own = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        grades = pool.grade(jobs)
        t_pool = time.perf_counter() - start
        mine = resource.getrusage(resource.RUSAGE_SELF)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # workers are reaped by close()
    return (grades, t_pool, t_start, after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime,
            mine.ru_utime + mine.ru_stime - own.ru_utime - own.ru_stime)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mix", choices=("testset", "synthetic"), default="testset")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--timeout2", type=float, default=0.5, help="a second, tight deadline: grades must not change")
    ap.add_argument("--max-tasks", type=int, default=2000, help="GradingPool max_tasks_per_worker")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    if args.mix == "testset":
        jobs, t_extract = testset_jobs(rng, args.n)
        intended = None
    else:
        mix = [make_pair(rng) for _ in range(args.n)]
        jobs, t_extract, intended = [(gold, pred) for gold, pred, _ in mix], 0.0, [want for _, _, want in mix]
    graded = sum(pred is not None for _, pred in jobs)

    warm_up()  # imports and first-call costs are not grading throughput
    start = time.perf_counter()
    local = [pred is not None and verify_math(gold, pred) for gold, pred in jobs]
    t_local = time.perf_counter() - start

    print(f"cpus available: {len(os.sched_getaffinity(0))}; load average {os.getloadavg()[0]:.2f} (1 min)")
    print(f"mix {args.mix}: {args.n} answers (seed {args.seed}), {graded} with an extracted answer "
          f"(the rest skip the workers), graded correct in-process: {sum(local)}"
          + (f", same as the mix's intended labels: {sum(a == b for a, b in zip(local, intended))}/{args.n}"
             if intended else "") + (f"; extraction {1e3 * t_extract:.2f} ms/answer" if t_extract else ""))
    print(f"in-process verify_math loop: {graded / t_local:8.1f} answers/s ({t_local:.2f} s)")
    for timeout in (args.timeout, args.timeout2):
        grades, t_pool, t_start, cpu, parent = pool_run(jobs, args.workers, timeout, args.max_tasks)
        reasons = Counter(g.reason.split(":")[0] for g in grades)
        agree = sum(g.correct == ok for g, ok in zip(grades, local))
        used = cpu / (t_start + t_pool)
        busy = " (well below --workers: the machine was busy)" if used < 0.8 * args.workers else ""
        print(f"GradingPool(workers={args.workers}, timeout_s={timeout}, max_tasks_per_worker={args.max_tasks}): "
              f"{graded / t_pool:8.1f} answers/s ({t_pool:.2f} s, start-up {t_start:.2f} s not counted); "
              f"{t_local / t_pool:.2f}x in-process; workers used {used:.2f} cores{busy}, this process "
              f"{parent / t_pool:.2f} cores")
        print(f"  reasons: {dict(sorted(reasons.items()))}; retried: {sum(g.retried for g in grades)}; "
              f"same grade as in-process: {agree}/{args.n}; worker CPU {1e3 * cpu / graded:.2f} ms/answer, "
              f"so {args.workers} free cores would grade ~{args.workers * graded / cpu:.0f} answers/s")
    problems: dict[str, tuple] = {}  # maj@k clustering: each gold's answers as one problem's samples
    for (gold, pred), ok in zip(jobs, local):
        problems.setdefault(gold, (gold, [], []))
        problems[gold][1].append(pred)
        problems[gold][2].append(ok)
    with GradingPool(workers=args.workers, timeout_s=args.timeout) as pool:
        pool.grade([("1", "1")] * args.workers)
        start = time.perf_counter()
        answer_keys(list(problems.values()), pool)
        t_keys = time.perf_counter() - start
    print(f"maj@k answer keys for {len(problems)} problems ({graded} answers): {t_keys:.2f} s")


if __name__ == "__main__":
    main()
