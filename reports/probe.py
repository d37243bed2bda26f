"""Tables for probe-style runs (reward gate, thought-use probe), in the reference study's shapes.

All numbers come from ``samples.jsonl`` records. Means are over items after averaging each item's
samples; CIs are percentile bootstraps over items; judge-invalid samples are left out of reward
means and counted in the invalid rate.
"""

from __future__ import annotations

from collections import defaultdict

from reports.stats import item_means, mean_ci


def _ordered(values):
    return list(dict.fromkeys(values))


def _words(text) -> int:
    return len((text or "").split())


def group_records(records):
    groups = defaultdict(list)
    for r in records:
        groups[(r["arm"], r["condition"])].append(r)
    return groups


def main_rows(records, B: int = 10_000, seed: int = 0) -> list[dict]:
    """Per arm x condition: reward and true-suffix log-likelihood with CIs, and the descriptive rates."""
    rows = []
    for (arm, cond), recs in group_records(records).items():
        reward = item_means(recs, "reward")
        lp = item_means(recs, "suffix_logprob")
        score = item_means(recs, "judge_score")
        per_item = defaultdict(list)
        for r in recs:
            if r["reward"] is not None:
                per_item[r["item_id"]].append(r["reward"])
        closed = [r["thought_closed"] for r in recs if r.get("thought_closed") is not None]
        rows.append({
            "arm": arm, "condition": cond,
            "n_items": len({r["item_id"] for r in recs}), "n_samples": len(recs),
            "reward": mean_ci(reward.values(), B=B, seed=seed),
            "suffix_logprob": mean_ci(lp.values(), B=B, seed=seed),
            "judge_score": mean_ci(score.values(), B=B, seed=seed),
            "any_success_rate": (sum(max(v) == 1 for v in per_item.values()) / len(per_item)) if per_item else None,
            "avg_thought_words": sum(_words(r["thought"]) for r in recs) / len(recs),
            "avg_suffix_words": sum(_words(r["suffix"]) for r in recs) / len(recs),
            "invalid_rate": sum(bool(r["judge_invalid"]) for r in recs) / len(recs),
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


def sensitivity_rows(records, baseline: str = "normal", B: int = 10_000, seed: int = 0) -> list[dict]:
    """Per arm and condition != baseline: prefix-level ``baseline - condition`` for reward and
    true-suffix log-likelihood (paired over shared items, with CIs), and win/loss/tie rates."""
    groups = group_records(records)
    rows = []
    for arm in _ordered(r["arm"] for r in records):
        if (arm, baseline) not in groups:
            continue
        base_r = item_means(groups[(arm, baseline)], "reward")
        base_lp = item_means(groups[(arm, baseline)], "suffix_logprob")
        for cond in _ordered(r["condition"] for r in records):
            if cond == baseline or (arm, cond) not in groups:
                continue
            r_c = item_means(groups[(arm, cond)], "reward")
            lp_c = item_means(groups[(arm, cond)], "suffix_logprob")
            shared = sorted(set(base_r) & set(r_c))
            diffs = [base_r[i] - r_c[i] for i in shared]
            shared_lp = sorted(set(base_lp) & set(lp_c))
            n = len(shared)
            rows.append({
                "arm": arm, "condition": cond, "baseline": baseline, "n_shared": n,
                "reward_delta": mean_ci(diffs, B=B, seed=seed),
                "logprob_delta": mean_ci([base_lp[i] - lp_c[i] for i in shared_lp], B=B, seed=seed),
                "baseline_better": sum(d > 0 for d in diffs) / n if n else None,
                "condition_better": sum(d < 0 for d in diffs) / n if n else None,
                "tie": sum(d == 0 for d in diffs) / n if n else None,
            })
    return rows


def summarize(records, B: int = 10_000, seed: int = 0) -> dict:
    return {"main": main_rows(records, B, seed), "groups": group_rows(records),
            "sensitivity": sensitivity_rows(records, B=B, seed=seed)}
