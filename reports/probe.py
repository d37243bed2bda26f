"""Tables for probe-style runs (reward gate, thought-use probe), in the reference study's shapes.

All numbers come from ``samples.jsonl`` records. Means are over items after averaging each item's
samples (items are the resampling unit); CIs are bootstraps over items (see :mod:`reports.compare`),
Wilson intervals for shares of items; judge-invalid samples are left out of reward means and
counted in the invalid rate. The few numbers pooled over samples instead (:data:`POOLED`) say so
in their names. A *group* is an item's valid verdicts in one arm x condition; see
:func:`group_shape`.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from reports import paired_stats as ps
from reports.compare import (arm_pairs, cell_rows, clusters_for, compare_cells, condition_pairs, item_clusters,
                             item_mean_ci, per_item_range, pooled_share_ci, records_ci)
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
    "self_closed_rate": ("Self-closed thoughts",
                         lambda r: None if r.get("thought_closed") is None else float(r["thought_closed"]), True),
    "avg_thought_words": ("Avg thought words", lambda r: _words(r["thought"]), False),
    "avg_thought_words_closed": ("Avg thought words (self-closed)",
                                 lambda r: _words(r["thought"]) if r.get("thought_closed") is True else None, False),
    "avg_suffix_words": ("Avg predicted suffix words", lambda r: _words(r["suffix"]), False),
    "avg_new_tokens": ("Avg total new tokens", lambda r: r["thought_tokens"] + r["suffix_tokens"], False),
}


def group_shape(v: list) -> str:
    """An item's reward group (its valid verdicts in one cell): ``few`` (fewer than 2 valid),
    ``mixed`` (some spread), or zero-variance: ``all_zero``, ``all_one`` (``flat`` for another
    constant, which 0/1 rewards never give)."""
    if len(v) < 2:
        return "few"
    if max(v) > min(v):
        return "mixed"
    return {0: "all_zero", 1: "all_one"}.get(v[0], "flat")


# Shares of a cell's groups (every item with a record in the arm x condition, all-invalid ones
# included), Wilson interval over items. mixed + zero-variance + fewer-than-2 = 1.
GROUP_STATS = {
    "mixed_groups": ("Mixed groups", lambda v: group_shape(v) == "mixed"),
    "zero_variance_groups": ("Zero-variance (near-zero) groups",
                             lambda v: group_shape(v) in ("all_zero", "all_one", "flat")),
    "all_zero_groups": ("All-zero groups", lambda v: group_shape(v) == "all_zero"),
    "all_one_groups": ("All-one groups", lambda v: group_shape(v) == "all_one"),
    "few_valid_groups": ("Groups with < 2 valid samples", lambda v: group_shape(v) == "few"),
    "any_success": ("Any-success prefix rate", lambda v: bool(v) and max(v) == 1),
    "all_success_groups": ("All-success groups", lambda v: bool(v) and min(v) == 1),
}
# Per group with >= 2 valid verdicts: its spread; mean over those groups, bootstrap CI over them.
SPREAD_STATS = {
    "group_reward_std": ("Mean group reward std", lambda v: float(np.std(v))),
    "group_reward_range": ("Mean group reward range", lambda v: float(max(v) - min(v))),
}
# Pooled over samples (not item means): what their names say.
POOLED = {"invalid_rate": "Invalid rate (pooled)", "reward_pooled": "Rewarded / judged (pooled)",
          "reward_std_pooled": "Reward std (pooled)"}
DESCRIPTIVES = {**{k: v[0] for k, v in SAMPLE_STATS.items()}, **{k: v[0] for k, v in GROUP_STATS.items()},
                **{k: v[0] for k, v in SPREAD_STATS.items()}, **POOLED}


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
           "ci_method": "percentile", "clustered": keys is not None,
           "samples_per_item": per_item_range(len(rewards[i]) for i in ids)}
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


def _spread_rows(groups: dict, opts: dict, clusters: dict) -> dict:
    """Mean group std and range over the groups with >= 2 valid verdicts. A cell where no group
    has any spread gets, for the range (in [0, 1]), the Wilson bound of 0 of n groups, and for the
    std half of it (a group's std is at most half its range), instead of an empty ``[0, 0]``."""
    spread = {i: v for i, v in groups.items() if len(v) >= 2}
    if not spread:
        return {}
    out = {}
    for metric, (_, fn) in SPREAD_STATS.items():
        out[metric] = item_mean_ci({i: [fn(v)] for i, v in spread.items()}, opts, clusters,
                                   binary=metric == "group_reward_range")
        out[metric]["samples_per_item"] = per_item_range(len(v) for v in spread.values())
    std, rng = out["group_reward_std"], out["group_reward_range"]
    if std["degenerate"] and std["estimate"] == 0.0 and "wilson" in rng["ci_method"]:
        std.update(ci_low=0.0, ci_high=rng["ci_high"] / 2, degenerate=False, clustered=False,
                   ci_method="half the range's wilson bound (no group has any spread)")
    return out


def descriptive_rows(records, opts: dict) -> list[dict]:
    """The reference tables' descriptive numbers per arm x condition, each with a 95% CI, as rows
    ``{arm, condition, metric, estimate, ci_low, ci_high, n_items, samples_per_item, ...}``."""
    clusters = item_clusters(records)
    rows = []
    for (arm, cond), recs in group_records(records).items():
        def add(metric, stat):
            rows.append({"arm": arm, "condition": cond, "metric": metric, **stat})

        for metric, (_, fn, binary) in SAMPLE_STATS.items():
            stat = records_ci(recs, fn, opts, binary=binary, clusters=clusters)
            if stat["n_items"]:
                add(metric, stat)
        groups: dict[str, list] = {}
        invalid: dict[str, list] = {}
        for r in recs:
            v, bad = groups.setdefault(r["item_id"], []), invalid.setdefault(r["item_id"], [0, 0])
            bad[0], bad[1] = bad[0] + bool(r["judge_invalid"]), bad[1] + 1
            if r["reward"] is not None:
                v.append(r["reward"])
        add("invalid_rate", pooled_share_ci(invalid, opts, clusters))
        rewards = {i: v for i, v in groups.items() if v}
        if not rewards:
            continue
        n, judged = len(groups), per_item_range(len(v) for v in groups.values())
        for metric, (_, fn) in GROUP_STATS.items():
            w = wilson(sum(bool(fn(v)) for v in groups.values()), n, alpha=opts["alpha"])
            add(metric, {"estimate": w["estimate"], "ci_low": w["ci_low"], "ci_high": w["ci_high"], "n_items": n,
                         "n_samples": sum(map(len, groups.values())), "count": w["k"], "ci_method": "wilson",
                         "clustered": False, "samples_per_item": judged})
        for metric, stat in _spread_rows(groups, opts, clusters).items():
            add(metric, stat)
        add("reward_pooled", pooled_share_ci({i: (sum(v), len(v)) for i, v in rewards.items()}, opts, clusters))
        add("reward_std_pooled", _reward_std(rewards, opts, clusters))
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


# The reference study's go/no-go thresholds for the reward gate.
MAX_INVALID_RATE = 0.05
MAX_ZERO_VARIANCE = 0.50


def _estimates(cells: dict, arms, cond: str, metric: str) -> dict:
    return {a: (cells.get((a, cond), {}).get(metric) or {}).get("estimate") for a in arms}


def _check(cond, flag, rule, inputs, ok, **extra) -> dict:
    known = all(v is not None for values in inputs.values() for v in values.values())
    return {"condition": cond, "flag": flag, **extra, "ok": bool(ok()) if known else None, "rule": rule,
            "inputs": inputs}


def gate_flags(records, metrics: list[dict], comparisons: list[dict], baseline: str | None = None) -> dict:
    """The reference study's go/no-go flags, each with the numbers it compares (``inputs``).

    Per gated condition: ``reward_validity_ok`` (every arm's pooled invalid rate <=
    :data:`MAX_INVALID_RATE`), ``variance_ok`` (every arm's zero-variance group share <=
    :data:`MAX_ZERO_VARIANCE`), and per arm pair (as the arm comparisons pair them: ``arm_a`` the
    later arm or the non-baseline one) ``more_reward_separable`` (a's mean group reward std above
    b's, or a's mixed-group share above b's) and ``higher_mean_reward`` (a's reward mean, the mean of
    item means, above b's; with the paired delta on shared items beside it). ``ok`` is null when an
    input is missing (say an arm whose every verdict was invalid). The study gates on the arm's own
    thought, ``normal``; a run without it gets the flags of each of its conditions.
    """
    conds = list(dict.fromkeys(r["condition"] for r in records))
    gated = ["normal"] if "normal" in conds else conds
    cells = cell_table(metrics)
    arms = list(dict.fromkeys(r["arm"] for r in records))
    deltas = {(r["arm_a"], r["arm_b"], r["condition"]): r for r in comparisons
              if r["kind"] == "arms" and r["metric"] == "reward"}
    checks = []
    for cond in gated:
        present = [a for a in arms if (a, cond) in cells]
        inv = _estimates(cells, present, cond, "invalid_rate")
        checks.append(_check(cond, "reward_validity_ok", f"every arm's pooled invalid rate <= {MAX_INVALID_RATE:.2f}",
                             {"invalid_rate": inv}, lambda: all(v <= MAX_INVALID_RATE for v in inv.values())))
        zv = _estimates(cells, present, cond, "zero_variance_groups")
        checks.append(_check(cond, "variance_ok", f"every arm's zero-variance group share <= {MAX_ZERO_VARIANCE:.2f}",
                             {"zero_variance_groups": zv}, lambda: all(v <= MAX_ZERO_VARIANCE for v in zv.values())))
        for (a, _), (b, _) in [p for p in arm_pairs(records, baseline) if p[0][1] == cond]:
            std, mixed = (_estimates(cells, (a, b), cond, m) for m in ("group_reward_std", "mixed_groups"))
            checks.append(_check(cond, "more_reward_separable",
                                 "arm_a's mean group reward std > arm_b's, or arm_a's mixed-group share > arm_b's",
                                 {"group_reward_std": std, "mixed_groups": mixed},
                                 lambda: std[a] > std[b] or mixed[a] > mixed[b], arm_a=a, arm_b=b))
            reward = _estimates(cells, (a, b), cond, "reward")
            d = deltas.get((a, b, cond))
            checks.append(_check(cond, "higher_mean_reward", "arm_a's reward mean > arm_b's", {"reward": reward},
                                 lambda: reward[a] > reward[b], arm_a=a, arm_b=b,
                                 paired_delta=None if d is None else {k: d[k] for k in (
                                     "delta", "ci_low", "ci_high", "n_shared", "degenerate")}))
    basis = ("the study gates on the normal condition (the arm's own thought)"
             + ("" if gated == ["normal"] else "; this run has no normal condition, so each condition is gated"))
    return {"conditions": gated, "basis": basis,
            "thresholds": {"invalid_rate": MAX_INVALID_RATE, "zero_variance_groups": MAX_ZERO_VARIANCE},
            "checks": checks}


def in_run_order(records, manifest) -> list[dict]:
    """``records`` with their conditions in the run's order (as given on the command line; the
    config's ``interventions``), then any others as first seen; a stable sort, so arms and items keep
    their order. Every table and plot built from the summary then lists conditions in that order."""
    given = list((manifest.get("config") or {}).get("interventions") or [])
    rank = {c: k for k, c in enumerate(given)}
    seen = {c: len(given) + k for k, c in enumerate(dict.fromkeys(r["condition"] for r in records))}
    return sorted(records, key=lambda r: rank.get(r["condition"], seen[r["condition"]]))


def _info_summary(values: list, n: int) -> str:
    """One ``thought_info`` key over a cell's ``n`` samples: true counts, values with counts, or a mean."""
    if all(isinstance(v, bool) for v in values):
        return f"{sum(values)} of {n}"
    if all(isinstance(v, (int, float)) for v in values):
        return f"mean {sum(values) / len(values):.2f} over {len(values)} of {n}"
    counts: dict[str, int] = {}
    for v in values:
        counts[str(v)] = counts.get(str(v), 0) + 1
    return ", ".join(f"{v} ({k} of {n})" for v, k in counts.items())


def thought_notes(records, manifest) -> list[dict]:
    """Per arm x condition whose thoughts carry ``thought_info`` (another arm's thought, re-encoded,
    unchanged) or whose condition skipped items (the manifest's ``skipped_items``): ``{arm,
    condition, n_samples, skipped_items, run_items, info: {key: summary}}``."""
    skipped = manifest.get("skipped_items") or {}
    cells: dict[tuple, list] = {}
    for r in records:
        cells.setdefault((r["arm"], r["condition"]), []).append(r)
    arms = [a["name"] for a in (manifest.get("config") or {}).get("arms", [])] or list(dict.fromkeys(
        r["arm"] for r in records))
    for cond in skipped:
        for arm in arms:
            cells.setdefault((arm, cond), [])
    rows = []
    given = list((manifest.get("config") or {}).get("interventions") or [])
    order = {c: k for k, c in enumerate(dict.fromkeys(given + [r["condition"] for r in records] + list(skipped)))}
    for (arm, cond), recs in sorted(cells.items(), key=lambda kv: (arms.index(kv[0][0]) if kv[0][0] in arms
                                                                    else len(arms), order[kv[0][1]])):
        keys = list(dict.fromkeys(k for r in recs for k in (r.get("thought_info") or {})))
        if not keys and cond not in skipped:
            continue
        info = {k: _info_summary([r["thought_info"][k] for r in recs if k in (r.get("thought_info") or {})],
                                 len(recs)) for k in keys}
        rows.append({"arm": arm, "condition": cond, "n_samples": len(recs),
                     "skipped_items": len(skipped.get(cond, [])),
                     "run_items": len(manifest.get("item_ids") or []) or None, "info": info})
    return rows


def summarize(records, manifest) -> dict:
    """Every table's rows, computed once: report sections render from this summary. ``flags``:
    :func:`gate_flags`; ``thought_notes``: :func:`thought_notes`. Conditions are in the run's order
    (:func:`in_run_order`)."""
    records = in_run_order(records, manifest)
    opts = report_options(manifest)
    metrics = cell_rows(records, opts) + descriptive_rows(records, opts)
    comparisons = arm_comparison_rows(records, opts) + sensitivity_rows(records, opts)
    out = {"metrics": metrics, "comparisons": comparisons,
           "flags": gate_flags(records, metrics, comparisons, opts.get("baseline"))}
    notes = thought_notes(records, manifest)
    if notes:  # only where a condition says how its thoughts were made, so other summaries stay as they were
        out["thought_notes"] = notes
    return out
