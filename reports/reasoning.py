"""Reasoning metrics from graded sample records: Mean@k, Pass@k, pass@j, maj@k, lengths, CIs.

A cell is one (arm, benchmark); an item is one problem with its k graded samples. Every metric is
a per-problem value averaged over problems, with a bootstrap CI over problems (Wilson bound when
every problem scored the same 0/1 value):

- Mean@k: the problem's share of correct samples (sample-level accuracy);
- Pass@k: 1 if any sample is correct;
- pass@j (j <= k): the unbiased estimator 1 - C(n - c, j) / C(n, j) from n samples, c correct;
- maj@k: whether the most frequent extracted answer (by the record's `answer_key`, the eval's math-equivalence class, else the exact string after trimming; ties go to the
  answer seen first; samples without an answer do not vote) was graded correct;
- completion tokens, truncation rate (finish reason ``length``), no-answer rate.

Mean@k's ``count`` is pooled (correct samples of all samples); with uneven samples per problem
it differs from Mean@k, the mean of problem shares, and the table labels it. Every row carries
``samples_per_item`` ([fewest, most] samples per problem).

Macro rows average an arm's benchmark estimates with equal weight; their CIs resample problems
within each benchmark independently (a stratified bootstrap), so do paired macro deltas.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from math import comb

import numpy as np

from reports import paired_stats as ps
from reports.compare import arm_pairs, compare_cells, item_clusters, item_mean_ci, per_item_range
from reports.options import report_options

METRICS = {"mean_at_k": "Mean@k", "pass_at_k": "Pass@k", "maj_at_k": "maj@k",
           "completion_tokens": "Avg completion tokens", "truncated": "Truncation rate", "no_answer": "No-answer rate"}
BINARY = {"mean_at_k", "pass_at_k", "maj_at_k", "truncated", "no_answer"}
COMPARED = ("mean_at_k", "pass_at_k", "maj_at_k", "completion_tokens")


def pass_at(n: int, c: int, j: int) -> float:
    """Unbiased pass@j from ``n`` samples of which ``c`` are correct (Chen et al. 2021)."""
    if not 0 < j <= n or not 0 <= c <= n:
        raise ValueError(f"need 0 < j <= n and 0 <= c <= n, got n={n}, c={c}, j={j}")
    return 1.0 if n - c < j else 1.0 - comb(n - c, j) / comb(n, j)


def majority_correct(samples: list[dict]) -> float:
    """1.0 when the most frequent extracted answer among ``samples`` was graded correct. Votes are
    on ``answer_key`` (the eval's math-equivalence class, so "0.5" and "\\frac12" are one vote) when
    a record has it, else on the whitespace-trimmed extracted string (older records)."""
    votes = [r for r in sorted(samples, key=lambda r: r["sample"]) if r.get("extracted") is not None]
    if not votes:
        return 0.0

    def key(r):
        return r.get("answer_key") or " ".join(r["extracted"].split())

    counts = Counter(key(r) for r in votes)
    top = max(counts.values())
    winner = next(r for r in votes if counts[key(r)] == top)
    return float(bool(winner["correct"]))


def problems(records) -> dict[tuple, dict[str, list[dict]]]:
    """(arm, benchmark) -> problem id -> its sample records."""
    out: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        out[(r["arm"], r["condition"])][r["item_id"]].append(r)
    return out


def _value(metric: str, samples: list[dict]) -> list[float]:
    if metric == "mean_at_k":
        return [float(bool(r["correct"])) for r in samples]
    if metric == "pass_at_k":
        return [float(any(r["correct"] for r in samples))]
    if metric == "maj_at_k":
        return [majority_correct(samples)]
    if metric == "completion_tokens":
        return [float(r["completion_tokens"]) for r in samples]
    if metric == "truncated":
        return [float(r["finish_reason"] == "length") for r in samples]
    if metric == "no_answer":
        return [float(r.get("extracted") is None) for r in samples]
    if metric.startswith("pass@"):
        j = int(metric[5:])
        return [pass_at(len(samples), sum(bool(r["correct"]) for r in samples), j)] if len(samples) >= j else []
    raise KeyError(metric)


def item_values(grouped: dict, metric: str) -> dict[tuple, dict[str, list[float]]]:
    """(arm, benchmark) -> problem id -> the values ``metric`` averages for that problem
    (``grouped``: :func:`problems` of the records, grouped once per report)."""
    out: dict[tuple, dict[str, list[float]]] = {}
    for cell, by_item in grouped.items():
        vals = {i: v for i, samples in by_item.items() if (v := _value(metric, samples))}
        if vals:
            out[cell] = vals
    return out


def pass_levels(k: int) -> list[int]:
    """j = 1, 2, 4, ... below k, and k itself."""
    levels, j = [], 1
    while j < k:
        levels.append(j)
        j *= 2
    return levels + [k]


def _macro(per_bench: list[tuple[list, np.ndarray]], opts: dict, cells: list[dict] | None = None) -> dict:
    """Equal-weight mean of benchmark means, percentile CI from a stratified bootstrap.

    When no benchmark has any spread (every problem 0, say) resampling shows nothing; the CI is
    then the mean of the benchmarks' own bounds (``cells``: their rows, Wilson for 0/1 metrics)."""
    est = float(np.mean([x.mean() for _, x in per_bench]))
    if cells and all(np.all(x == x[0]) for _, x in per_bench):
        # a benchmark with one problem (pass@j of an uneven run, say) has no bounds: nor has the macro
        bounded = all(c["ci_low"] is not None for c in cells)
        return {"estimate": est, "ci_low": float(np.mean([c["ci_low"] for c in cells])) if bounded else None,
                "ci_high": float(np.mean([c["ci_high"] for c in cells])) if bounded else None, "se": None,
                "n_items": sum(len(ids) for ids, _ in per_bench), "ci_method": "mean of the benchmarks' bounds",
                "clustered": False, "n_benchmarks": len(per_bench), "degenerate": all(c.get("degenerate") for c in cells)}
    boots = np.mean([ps.bootstrap_means_matrix(x, B=opts["B"], seed=opts["seed"] + b, keys=ids)[:, 0]
                     for b, (ids, x) in enumerate(per_bench)], axis=0)
    ci = ps.percentile_ci(boots, est, alpha=opts["alpha"])
    return {"estimate": est, "ci_low": ci["ci_low"], "ci_high": ci["ci_high"], "se": ci["se"],
            "n_items": sum(len(ids) for ids, _ in per_bench), "ci_method": "percentile, stratified by benchmark",
            "clustered": False, "n_benchmarks": len(per_bench)}


def _item_means(vals: dict) -> tuple[list, np.ndarray]:
    ids = sorted(vals)
    return ids, np.array([np.mean(vals[i]) for i in ids])


def cell_rows(records, grouped: dict, opts: dict, k: int) -> list[dict]:
    """Per arm x benchmark (and per arm ``macro``) x metric: estimate, CI, counts."""
    clusters = item_clusters(records)
    rows = []
    metrics = list(METRICS) + [f"pass@{j}" for j in pass_levels(k)]
    for metric in metrics:
        cells = item_values(grouped, metric)
        for (arm, bench), vals in cells.items():
            row = {"arm": arm, "condition": bench, "metric": metric,
                   # pass@j lies in [0, 1] too, so the Wilson bound of a constant cell holds for it
                   **item_mean_ci(vals, opts, clusters, binary=metric in BINARY or metric.startswith("pass@"))}
            # samples behind each problem's value (not the values: Pass@k has one per problem)
            row["samples_per_item"] = per_item_range(len(grouped[(arm, bench)][i]) for i in vals)
            if metric in ("mean_at_k", "pass_at_k"):
                # pooled counts: correct / samples (Mean@k) differs from the mean of problem shares
                # when problems hold uneven samples; passed / problems (Pass@k) never does
                row["count"] = int(round(sum(sum(v) for v in vals.values())))
            rows.append(row)
        for arm in dict.fromkeys(a for a, _ in cells):
            per_bench = [_item_means(v) for (a, _), v in cells.items() if a == arm]
            own = [r for r in rows if r["arm"] == arm and r["metric"] == metric and r["condition"] != "macro"]
            if len(per_bench) > 1:
                rows.append({"arm": arm, "condition": "macro", "metric": metric, **_macro(per_bench, opts, own)})
    return rows


def macro_comparisons(records, grouped: dict, opts: dict) -> list[dict]:
    """Paired macro deltas per arm pair: equal-weight mean over shared benchmarks of the per-problem
    differences' means, stratified bootstrap CI."""
    rows = []
    for metric in COMPARED:
        cells = item_values(grouped, metric)
        benches = list(dict.fromkeys(b for _, b in cells))
        seen = set()
        for (a, _), (b, _) in arm_pairs(records, opts.get("baseline")):
            if (a, b) in seen:
                continue
            seen.add((a, b))
            per_bench = []
            for bench in benches:
                if (a, bench) in cells and (b, bench) in cells:
                    ids = sorted(set(cells[(a, bench)]) & set(cells[(b, bench)]))
                    d = np.array([np.mean(cells[(a, bench)][i]) - np.mean(cells[(b, bench)][i]) for i in ids])
                    if ids:
                        per_bench.append((ids, d))
            if len(per_bench) < 2:
                continue
            m = _macro(per_bench, opts)
            rows.append({"kind": "arms", "arm_a": a, "arm_b": b, "condition": "macro", "condition_a": "macro",
                         "condition_b": "macro", "metric": metric, "delta": m["estimate"], "ci_low": m["ci_low"],
                         "ci_high": m["ci_high"], "p_value": None, "p_holm": None, "test": None, "mde": None,
                         "n_shared": m["n_items"], "clustered": False, "ci_method": m["ci_method"],
                         "n_benchmarks": m["n_benchmarks"]})
    return rows


def summarize(records, manifest) -> dict:
    """Every reasoning table's rows, computed once from the records."""
    opts = report_options(manifest)
    k = int(manifest["config"]["samples"])
    grouped = problems(records)
    comparisons = compare_cells(records, arm_pairs(records, opts.get("baseline")), opts, kind="arms",
                                metrics=COMPARED, items_of=lambda _, metric: item_values(grouped, metric),
                                binary=BINARY)
    return {"metrics": cell_rows(records, grouped, opts, k),
            "comparisons": comparisons + macro_comparisons(records, grouped, opts),
            "k": k, "plotted": {m: METRICS[m].replace("@k", f"@{k}") for m in ("mean_at_k", "pass_at_k")}}
