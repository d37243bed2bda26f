"""Tables for probe-style runs (reward gate, thought-use probe), in the reference study's shapes.

All numbers come from ``samples.jsonl`` records. Means are over items after averaging each item's
samples; CIs are bootstraps over items (see :mod:`reports.compare`); judge-invalid samples are
left out of reward means and counted in the invalid rate (with its Wilson interval).
"""

from __future__ import annotations

from collections import defaultdict

from reports.compare import METRICS, arm_pairs, cell_rows, compare_cells, condition_pairs, report_options
from reports.paired_stats import wilson


def _words(text) -> int:
    return len((text or "").split())


def group_records(records):
    groups = defaultdict(list)
    for r in records:
        groups[(r["arm"], r["condition"])].append(r)
    return groups


def main_rows(records, metrics: list[dict]) -> list[dict]:
    """Per arm x condition: reward, true-suffix log-likelihood and judge score with their CIs
    (``metrics``: :func:`reports.compare.cell_rows`), and the reference study's descriptive rates."""
    cis = {(r["arm"], r["condition"], r["metric"]): r for r in metrics}
    rows = []
    for (arm, cond), recs in group_records(records).items():
        per_item = defaultdict(list)
        for r in recs:
            if r["reward"] is not None:
                per_item[r["item_id"]].append(r["reward"])
        closed = [r["thought_closed"] for r in recs if r.get("thought_closed") is not None]
        invalid = sum(bool(r["judge_invalid"]) for r in recs)
        empty = {"estimate": None, "ci_low": None, "ci_high": None}
        rows.append({
            "arm": arm, "condition": cond,
            "n_items": len({r["item_id"] for r in recs}), "n_samples": len(recs),
            **{m: cis.get((arm, cond, m), empty) for m in METRICS},
            "any_success": wilson(sum(max(v) == 1 for v in per_item.values()), len(per_item)),
            "avg_thought_words": sum(_words(r["thought"]) for r in recs) / len(recs),
            "avg_suffix_words": sum(_words(r["suffix"]) for r in recs) / len(recs),
            "invalid": wilson(invalid, len(recs)),
            "closed_think_rate": (sum(closed) / len(closed)) if closed else None,
        })
    return rows


def group_rows(records) -> list[dict]:
    """Reward-gate variance diagnostics per arm x condition: how many items' sample groups are
    mixed (some but not all samples rewarded), near-zero (none) or all-success."""
    rows = []
    for (arm, cond), recs in group_records(records).items():
        per_item = defaultdict(list)
        for r in recs:
            if r["reward"] is not None:
                per_item[r["item_id"]].append(r["reward"])
        n = len(per_item)
        rewards = [r["reward"] for r in recs if r["reward"] is not None]
        mean = sum(rewards) / len(rewards) if rewards else None
        std = (sum((x - mean) ** 2 for x in rewards) / len(rewards)) ** 0.5 if rewards else None
        rows.append({
            "arm": arm, "condition": cond, "reward_mean": mean, "reward_std": std,
            "mixed_groups": sum(0 < sum(v) < len(v) for v in per_item.values()) / n if n else None,
            "near_zero_groups": sum(sum(v) == 0 for v in per_item.values()) / n if n else None,
            "all_success_groups": sum(sum(v) == len(v) for v in per_item.values()) / n if n else None,
            "avg_thought_tokens": sum(r["thought_tokens"] for r in recs) / len(recs),
            "avg_suffix_tokens": sum(r["suffix_tokens"] for r in recs) / len(recs),
        })
    return rows


def sensitivity_rows(records, opts: dict, reference: str = "normal") -> list[dict]:
    """Per arm, prefix-level ``normal - condition`` for every metric, paired over shared items."""
    return compare_cells(records, condition_pairs(records, reference), opts, kind="conditions")


def arm_comparison_rows(records, opts: dict) -> list[dict]:
    """Per condition, every arm minus the baseline arm (default: the first), paired over items."""
    return compare_cells(records, arm_pairs(records, opts.get("baseline")), opts, kind="arms")


def summarize(records, manifest) -> dict:
    """Every table's rows, computed once: report sections render from this summary."""
    opts = report_options(manifest)
    metrics = cell_rows(records, opts)
    return {"main": main_rows(records, metrics), "groups": group_rows(records), "metrics": metrics,
            "comparisons": arm_comparison_rows(records, opts) + sensitivity_rows(records, opts)}
