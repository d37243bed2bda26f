"""Wall time of the paired bootstrap behind a paired-comparison report.

Times ``reports.paired_stats.bootstrap_means_matrix`` for B resamples of A arms on N shared items
(default 10,000 x 4 x 2,048), then the percentile CIs for the A arms and the A*(A-1)/2 paired
deltas taken from the same resamples. Prints the best of ``--repeats`` runs; not a test.

    python benchmarks/bootstrap_timing.py [--B 10000] [--arms 4] [--items 2048] [--repeats 5]
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import numpy as np

from reports.paired_stats import bootstrap_means_matrix, percentile_ci


def best_of(fn, repeats):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--B", type=int, default=10_000)
    ap.add_argument("--arms", type=int, default=4)
    ap.add_argument("--items", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    # per-item means of 8 binary samples, arms correlated through item difficulty
    difficulty = rng.random(args.items)
    values = np.column_stack([
        rng.binomial(8, np.clip(difficulty + 0.02 * a, 0, 1)) / 8 for a in range(args.arms)])

    t_matrix, boots = best_of(lambda: bootstrap_means_matrix(values, B=args.B, seed=0), args.repeats)

    def cis():
        est = values.mean(axis=0)
        arms = [percentile_ci(boots[:, a], est[a], n=args.items) for a in range(args.arms)]
        deltas = [percentile_ci(boots[:, i] - boots[:, j], est[i] - est[j], n=args.items)
                  for i, j in itertools.combinations(range(args.arms), 2)]
        return arms, deltas

    t_cis, (arms, deltas) = best_of(cis, args.repeats)
    n_deltas = len(deltas)
    print(f"cpus available: {len(os.sched_getaffinity(0))}")
    print(f"bootstrap_means_matrix  B={args.B} x {args.arms} arms x {args.items} items: "
          f"{t_matrix:.3f} s (best of {args.repeats})")
    print(f"percentile CIs for {args.arms} arms + {n_deltas} paired deltas: {t_cis * 1e3:.1f} ms")
    print(f"total: {t_matrix + t_cis:.3f} s")
    print(f"example: arm 0 {arms[0]['estimate']:.4f} [{arms[0]['ci_low']:.4f}, {arms[0]['ci_high']:.4f}], "
          f"delta 1-0 {-deltas[0]['estimate']:+.4f} [{-deltas[0]['ci_high']:+.4f}, {-deltas[0]['ci_low']:+.4f}]")


if __name__ == "__main__":
    main()
