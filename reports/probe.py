"""Tables for probe-style runs (reward gate, thought-use probe), in the reference study's shapes.

All numbers come from ``samples.jsonl`` records. Means are over items after averaging each item's
samples; CIs are bootstraps over items (see :mod:`reports.compare`), Wilson intervals for shares
of items; judge-invalid samples are left out of reward means and counted in the invalid rate.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from reports import paired_stats as ps
from reports.compare import (clusters_for, arm_pairs, cell_rows, compare_cells, condition_pairs, item_clusters,
                             records_ci)
from reports.options import report_options
from reports.paired_stats import wilson


def _words(text) -> int:
    return len((text or "").split())


def group_records(records):
    groups = defaultdict(list)
    for r in records:
        groups[(r["arm"], r["condition"])].append(r)
    return groups


# Descriptive per-cell numbers of the reference study's tables, each a row like the metric rows.
# Per-sample quantities: mean over items of the item's mean, bootstrap CI over items.
SAMPLE_STATS = {
    "invalid_rate": ("Invalid rate", lambda r: float(bool(r["judge_invalid"])), True),
    "closed_think_rate": ("Closed-think rate",
                          lambda r: None if r.get("thought_closed") is None else float(r["thought_closed"]), True),
    "avg_thought_words": ("Avg thought words", lambda r: _words(r["thought"]), False),
    "avg_suffix_words": ("Avg predicted suffix words", lambda r: _words(r["suffix"]), False),
    "avg_new_tokens": ("Avg total new tokens", lambda r: r["thought_tokens"] + r["suffix_tokens"], False),
}
# Per-item shares of the item's reward group (its judged samples), Wilson interval over items.
GROUP_STATS = {
    "any_success": ("Any-success prefix rate", lambda v: max(v) == 1),
    "mixed_groups": ("Mixed groups", lambda v: 0 < sum(v) < len(v)),
    "near_zero_groups": ("Near-zero groups", lambda v: sum(v) == 0),
    "all_success_groups": ("All-success groups", lambda v: sum(v) == len(v)),
}
DESCRIPTIVES = {**{k: v[0] for k, v in SAMPLE_STATS.items()}, **{k: v[0] for k, v in GROUP_STATS.items()},
                "reward_std": "Reward std"}


def _reward_std(rewards: dict, opts: dict, clusters: dict) -> dict:
    """Standard deviation (ddof=0) of all judged samples' rewards pooled, as the reference study
    reports it, with a percentile bootstrap CI over items (or clusters): each resample's pooled
    std comes from the resampled items' sums of x, x^2 and sample counts."""
    ids = sorted(rewards)
    cols = np.array([[sum(rewards[i]), sum(x * x for x in rewards[i]), len(rewards[i])] for i in ids], dtype=float)
    tot = cols.sum(axis=0)
    est = float(np.sqrt(max(tot[1] / tot[2] - (tot[0] / tot[2]) ** 2, 0.0)))
    keys = clusters_for(ids, clusters, opts["clusters"])
    row = {"estimate": est, "ci_low": None, "ci_high": None, "n_items": len(ids), "n_samples": int(tot[2]),
           "ci_method": "percentile", "clustered": keys is not None}
    if est == 0.0 and set(cols[:, 0] / cols[:, 2]) <= {0.0, 1.0}:
        # every sample 0 (or every sample 1): no spread to resample. For 0/1 rewards std is
        # sqrt(m (1 - m)) of the pooled mean m, so map the Wilson bound of 0 (or n) of n items.
        w = wilson(0, len(ids), alpha=opts["alpha"])["ci_high"]
        row.update(ci_low=0.0, ci_high=float(np.sqrt(min(w, 0.5) * (1 - min(w, 0.5)))),
                   ci_method="wilson (every sample scored the same)", clustered=False)
    elif len(ids) > 1:
        b = ps.bootstrap_means_matrix(cols, B=opts["B"], seed=opts["seed"], clusters=keys, keys=ids)
        m = b[:, 0] / b[:, 2]
        boots = np.sqrt(np.maximum(b[:, 1] / b[:, 2] - m * m, 0.0))
        ci = ps.percentile_ci(boots, est, alpha=opts["alpha"])
        row.update(ci_low=ci["ci_low"], ci_high=ci["ci_high"])
    return row


def descriptive_rows(records, opts: dict) -> list[dict]:
    """The reference tables' descriptive numbers per arm x condition, each with a 95% CI, as rows
    ``{arm, condition, metric, estimate, ci_low, ci_high, n_items, ...}``."""
    clusters = item_clusters(records)
    rows = []
    for (arm, cond), recs in group_records(records).items():
        def add(metric, stat):
            rows.append({"arm": arm, "condition": cond, "metric": metric, **stat})

        for metric, (_, fn, binary) in SAMPLE_STATS.items():
            stat = records_ci(recs, fn, opts, binary=binary, clusters=clusters)
            if stat["n_items"]:
                add(metric, stat)
        rewards = defaultdict(list)
        for r in recs:
            if r["reward"] is not None:
                rewards[r["item_id"]].append(r["reward"])
        if not rewards:
            continue
        n = len(rewards)
        for metric, (_, fn) in GROUP_STATS.items():
            w = wilson(sum(bool(fn(v)) for v in rewards.values()), n, alpha=opts["alpha"])
            add(metric, {"estimate": w["estimate"], "ci_low": w["ci_low"], "ci_high": w["ci_high"], "n_items": n,
                         "n_samples": sum(map(len, rewards.values())), "ci_method": "wilson", "clustered": False})
        add("reward_std", _reward_std(rewards, opts, clusters))
    return rows


def cell_table(rows) -> dict[tuple, dict[str, dict]]:
    """(arm, condition) -> metric -> row, in first-seen order of cells."""
    out: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        out.setdefault((r["arm"], r["condition"]), {})[r["metric"]] = r
    return out


def sensitivity_rows(records, opts: dict, reference: str = "normal") -> list[dict]:
    """Per arm, prefix-level ``normal - condition`` for every metric, paired over shared items."""
    return compare_cells(records, condition_pairs(records, reference), opts, kind="conditions")


def arm_comparison_rows(records, opts: dict) -> list[dict]:
    """Per condition, every arm minus the baseline arm (default: every pair of arms), paired over items."""
    return compare_cells(records, arm_pairs(records, opts.get("baseline")), opts, kind="arms")


def summarize(records, manifest) -> dict:
    """Every table's rows, computed once: report sections render from this summary."""
    opts = report_options(manifest)
    metrics = cell_rows(records, opts) + descriptive_rows(records, opts)
    return {"metrics": metrics, "comparisons": arm_comparison_rows(records, opts) + sensitivity_rows(records, opts)}
