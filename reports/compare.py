"""Per-cell estimates and paired comparisons, computed from records alone.

A *cell* is one (arm, condition). Each record is one judged sample; an item's samples are averaged
first, then items (or whole clusters of items that share a source) are resampled. Comparisons
pair two cells on their shared items: two arms (or arm vs baseline) under one condition, or one arm's
``normal`` thought vs another condition. Every comparison row has a paired bootstrap CI, a
p-value (paired sign-flip permutation test on item means; exact McNemar when both cells hold one
binary sample per item), a Holm-adjusted p-value across the report's comparisons of that metric,
and the minimum detectable effect (power 0.8, alpha 0.05) so that "no difference" reads right.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from reports import paired_stats as ps

METRICS = {"reward": "Reward", "suffix_logprob": "Suffix log-lik/token", "judge_score": "Judge score"}
BINARY = {"reward"}


def _ordered(values):
    return list(dict.fromkeys(values))


def cell_items(records, metric: str) -> dict[tuple, dict[str, list[float]]]:
    """(arm, condition) -> item id -> that item's non-null values of ``metric``."""
    out: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        v = r.get(metric)
        if v is not None:
            out[(r["arm"], r["condition"])][r["item_id"]].append(float(v))
    return out


def item_clusters(records) -> dict[str, str]:
    return {r["item_id"]: r.get("cluster") for r in records}


def clusters_for(ids, clusters: dict, mode) -> list | None:
    """Cluster keys for ``ids`` when clustering applies: asked for, or ``auto`` and some source
    holds more than one of these items (with at least two sources)."""
    if mode in (False, "off", "no") or any(clusters.get(i) is None for i in ids):
        return None
    keys = [clusters[i] for i in ids]
    distinct = len(set(keys))
    if distinct < 2 or (mode == "auto" and distinct == len(keys)):
        return None
    return keys


def item_mean_ci(per_item: dict, opts: dict, clusters: dict, binary: bool = False) -> dict:
    """Mean over items of each item's mean value, with its bootstrap CI (clustered where items
    share a source). ``per_item``: item id -> that item's values.

    When every item has the same mean the bootstrap has no spread and its interval ``[v, v]`` says
    nothing; for a metric in [0, 1] (``binary``) whose items are all 0 (or all 1) the interval is then the Wilson
    interval of "0 of n items have any success" (or "n of n"), which bounds the mean of item means,
    and ``ci_method`` says so. Other constant cells keep ``[v, v]`` with ``degenerate`` set.
    """
    ids = sorted(per_item)
    means = [float(np.mean(per_item[i])) for i in ids]
    keys = clusters_for(ids, clusters, opts["clusters"])
    ci = ps.bootstrap_ci(means, B=opts["B"], seed=opts["seed"], alpha=opts["alpha"], method=opts["method"],
                         clusters=keys, keys=ids)
    row = {"estimate": ci["estimate"], "ci_low": ci["ci_low"], "ci_high": ci["ci_high"], "se": ci["se"],
           "n_items": len(ids), "n_samples": sum(len(v) for v in per_item.values()), "ci_method": ci["method"],
           "clustered": keys is not None, "degenerate": ci["degenerate"],
           "samples_per_item": per_item_range(len(v) for v in per_item.values())}
    if ci["degenerate"] and binary and ci["estimate"] in (0.0, 1.0):
        w = ps.wilson(int(ci["estimate"]) * len(ids), len(ids), alpha=opts["alpha"])
        row.update(ci_low=w["ci_low"], ci_high=w["ci_high"], ci_method="wilson (every item scored the same)",
                   clustered=False, degenerate=False)
    return row


def per_item_range(counts) -> list[int] | None:
    """``[fewest, most]`` of per-item sample counts (None without items): uneven when they differ."""
    counts = list(counts)
    return [min(counts), max(counts)] if counts else None


def pooled_share_ci(counts: dict, opts: dict, clusters: dict) -> dict:
    """A share pooled over samples, ``sum(hits) / sum(n)`` over items (``counts``: item id ->
    ``(hits, n)``), with a percentile bootstrap CI over items (or whole sources): each resample's
    share is its items' hits over its items' samples (a ratio estimator). Items with more samples
    weigh more, unlike :func:`item_mean_ci`. When every item's share is 0 (or every one 1) the
    interval is the Wilson interval of 0 (or n) of n items, as there."""
    ids = sorted(i for i in counts if counts[i][1])
    cols = np.array([counts[i] for i in ids], dtype=float).reshape(-1, 2)
    hits, total = cols.sum(axis=0) if len(ids) else (0.0, 0.0)
    keys = clusters_for(ids, clusters, opts["clusters"])
    row = {"estimate": float(hits / total) if total else None, "ci_low": None, "ci_high": None, "se": None,
           "n_items": len(ids), "n_samples": int(total), "count": int(hits), "ci_method": "percentile (ratio of sums)",
           "clustered": keys is not None, "degenerate": False,
           "samples_per_item": per_item_range(int(counts[i][1]) for i in ids)}
    if not ids:
        return row
    if hits in (0.0, total):
        w = ps.wilson(len(ids) if hits else 0, len(ids), alpha=opts["alpha"])
        row.update(ci_low=w["ci_low"], ci_high=w["ci_high"], ci_method="wilson (every item scored the same)",
                   clustered=False)
    elif len(ids) > 1:
        b = ps.bootstrap_means_matrix(cols, B=opts["B"], seed=opts["seed"], clusters=keys, keys=ids)
        boots = b[:, 0] / b[:, 1]
        ci = ps.percentile_ci(boots, row["estimate"], alpha=opts["alpha"])
        row.update(ci_low=ci["ci_low"], ci_high=ci["ci_high"], se=ci.get("se"),
                   degenerate=bool(ci["ci_low"] == ci["ci_high"]))
    return row


def records_ci(records, value_fn, opts: dict, binary: bool = False, clusters: dict | None = None) -> dict:
    """:func:`item_mean_ci` of ``value_fn(record)`` over ``records``: the values are grouped by
    item (``None`` values left out), each item's values averaged, then items resampled, whole
    sources where they share one (``clusters``: item id -> source; default: the records' own
    ``cluster`` fields). What :func:`reports.stats.item_ci` computes for a report section."""
    per_item = defaultdict(list)
    for r in records:
        v = value_fn(r)
        if v is not None:
            per_item[r["item_id"]].append(v)
    return item_mean_ci(per_item, opts, item_clusters(records) if clusters is None else clusters, binary=binary)


def cell_rows(records, opts: dict) -> list[dict]:
    """One row per arm x condition x metric: estimate and CI over items."""
    rows = []
    clusters = item_clusters(records)
    for metric in METRICS:
        for (arm, cond), items in cell_items(records, metric).items():
            rows.append({"arm": arm, "condition": cond, "metric": metric,
                         **item_mean_ci(items, opts, clusters, binary=metric in BINARY)})
    return rows


def compare_cells(records, pairs, opts: dict, kind: str, metrics=METRICS, items_of=None, binary=BINARY) -> list[dict]:
    """Paired comparison rows ``a - b`` for each ((arm_a, cond_a), (arm_b, cond_b)) in ``pairs``.

    ``items_of(records, metric)`` gives each cell's per-item values (default: the records'
    ``metric`` field, :func:`cell_items`); ``binary`` names the 0/1 metrics (McNemar applies)."""
    rows = []
    clusters = item_clusters(records)
    items_of = items_of or cell_items
    for metric in metrics:
        cells = items_of(records, metric)
        for a, b in pairs:
            if a not in cells or b not in cells:
                continue
            ids = sorted(set(cells[a]) & set(cells[b]))
            if not ids:
                continue
            xa = np.array([np.mean(cells[a][i]) for i in ids])
            xb = np.array([np.mean(cells[b][i]) for i in ids])
            keys = clusters_for(ids, clusters, opts["clusters"])
            ci = ps.paired_diff_ci(xa, xb, B=opts["B"], seed=opts["seed"], alpha=opts["alpha"],
                                   method=opts["method"], clusters=keys, keys=ids)
            d = xa - xb
            one_binary = metric in binary and all(len(cells[c][i]) == 1 for c in (a, b) for i in ids)
            if one_binary:
                test = ps.mcnemar(xa, xb)
                test_name = "McNemar exact"
            else:
                test = ps.paired_permutation_test(d, B=opts["B"], seed=opts["seed"])
                test_name = "paired permutation"
            sd = float(np.std(d, ddof=1)) if len(d) > 1 else None
            rows.append({
                "kind": kind, "arm_a": a[0], "condition_a": a[1], "arm_b": b[0], "condition_b": b[1],
                "condition": a[1] if a[1] == b[1] else f"{a[1]} - {b[1]}", "metric": metric,
                "delta": ci["estimate"], "ci_low": ci["ci_low"], "ci_high": ci["ci_high"],
                "p_value": test["p_value"], "test": test_name, "n_shared": len(ids),
                "mde": ps.mde_paired(sd, len(ids), alpha=opts["alpha"]) if sd else None,  # None: no spread
                **_win_rates(d, opts["alpha"]),
                "clustered": keys is not None, "ci_method": ci["method"], "degenerate": ci["degenerate"],
            })
    for metric in metrics:  # Holm across this report's comparisons of one kind and metric
        group = [r for r in rows if r["metric"] == metric]
        for r, adj in zip(group, ps.holm([r["p_value"] for r in group])):
            r["p_holm"] = adj
    return rows


def _win_rates(d: np.ndarray, alpha: float) -> dict:
    """Shares of items where a scored higher, b scored higher, or they tied, each with the Wilson
    interval of its count (items treated as independent)."""
    out = {}
    for name, hits in (("a_better", d > 0), ("b_better", d < 0), ("tie", d == 0)):
        w = ps.wilson(int(np.count_nonzero(hits)), len(d), alpha=alpha)
        out[name], out[f"{name}_ci"] = w["estimate"], [w["ci_low"], w["ci_high"]]
    return out


def arm_pairs(records, baseline: str | None) -> list[tuple]:
    """Per shared condition: (arm, cond) vs (baseline, cond) for every other arm, or with no
    baseline every pair of arms, the later-listed arm minus the earlier one."""
    arms = _ordered(r["arm"] for r in records)
    conds = _ordered(r["condition"] for r in records)
    have = {(r["arm"], r["condition"]) for r in records}
    if baseline is None:
        pairs = [(arms[j], arms[i]) for i in range(len(arms)) for j in range(i + 1, len(arms))]
    else:
        pairs = [(arm, baseline) for arm in arms if arm != baseline]
    return [((a, c), (b, c)) for c in conds for a, b in pairs if (a, c) in have and (b, c) in have]


def condition_pairs(records, reference: str = "normal") -> list[tuple]:
    """(arm, reference) vs (arm, cond) for every arm and other condition."""
    have = {(r["arm"], r["condition"]) for r in records}
    return [((arm, reference), (arm, c)) for arm in _ordered(r["arm"] for r in records)
            for c in _ordered(r["condition"] for r in records)
            if c != reference and (arm, reference) in have and (arm, c) in have]
