"""Pairwise continuation quality from ``pairwise`` records alone (pure functions).

A *pair* is (A, B): two candidates (arms, or ``original``, the true suffix) compared on the same
prefixes. Each pair record is one item and sample, judged in both orders; its ``a_score`` is 1
(A won both orders), 0 (B won both), 0.5 (a tie: the orders disagreed, or both tied) or None
(an invalid verdict in either order: left out, counted as invalid).

Per pair:

- counts: ``wins``, ``ties``, ``losses`` (for A) and ``invalid`` comparisons;
- ``win_share``: A's share with ties as 0.5, each item's samples averaged first, with the
  report's bootstrap CI over items (whole sources where items share one; both orders of an item
  are one record, so they are resampled together);
- ``decided``: the study's "81/128 = 63.28 %" form, wins over decided (untied) comparisons,
  with its Wilson interval (comparisons taken as independent) and a bootstrap CI over items
  (ratio of sums);
- an exact two-sided sign test on untied items (item share above or below 0.5;
  ``scipy.stats.binomtest``), Holm-adjusted across the run's pairs;
- judge diagnostics: position consistency (comparisons whose two orders agreed, of those with
  both valid) and the first-position win rate (decisive single verdicts won by the continuation
  shown first), each with a Wilson interval; an unbiased judge is near 1 and 0.5.

Continuation records give per-arm token counts and truncation rates.
"""

from __future__ import annotations

from collections import defaultdict

from reports import paired_stats as ps
from reports.compare import item_clusters, item_mean_ci, pooled_share_ci
from reports.options import report_options

METRICS = {"win_share": "Win share (ties 0.5)", "decided_win_rate": "Wins / decided",
           "suffix_tokens": "Continuation tokens", "truncated": "Truncated"}


def pair_records(records, arms=()) -> dict[tuple[str, str], list[dict]]:
    """(A, B) -> that pair's records; pairs in ``arms`` order (the run's arms; others, such as
    ``original``, after them), else in the order they first appear."""
    out: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        if r.get("kind") == "pair":
            out.setdefault((r["arm_a"], r["arm_b"]), []).append(r)
    rank = {name: n for n, name in enumerate(arms)}
    order = sorted(out, key=lambda p: tuple(rank.get(x, len(rank)) for x in p))  # stable: ties keep first-seen order
    return {p: out[p] for p in order}


def counts(rows) -> dict:
    """Wins / ties / losses (for A) and invalid comparisons, and the judge calls that failed."""
    out = {key: sum(r["outcome"] == o for r in rows)
           for key, o in (("wins", "win"), ("ties", "tie"), ("losses", "loss"), ("invalid", "invalid"))}
    out["judge_errors"] = sum(bool(r.get(f"error_{side}")) for r in rows for side in ("ab", "ba"))
    out["invalid_verdicts"] = sum(bool(r[f"invalid_{side}"]) for r in rows for side in ("ab", "ba"))
    out["comparisons"] = len(rows)
    return out


def item_scores(rows) -> dict[str, list[float]]:
    """item id -> A's valid per-sample shares (1, 0.5, 0)."""
    out: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r["a_score"] is not None:
            out[r["item_id"]].append(float(r["a_score"]))
    return out


def decided_text(wins: int, decided: int) -> str:
    """``81/128 = 63.28 %`` (``-`` with nothing decided)."""
    return f"{wins}/{decided} = {100 * wins / decided:.2f} %" if decided else "-"


def _rate(k: int, n: int, alpha: float) -> dict:
    w = ps.wilson(k, n, alpha=alpha)
    return {"k": k, "n": n, "rate": w["estimate"], "ci": [w["ci_low"], w["ci_high"]]}


def diagnostics(rows, alpha: float) -> dict:
    """Position consistency and first-position win rate of the judge over ``rows``."""
    both = [r for r in rows if r["consistent"] is not None]
    singles = [r[f"score_{side}"] for r in rows for side in ("ab", "ba") if not r[f"invalid_{side}"]]
    decisive = [s for s in singles if s != 0.5]
    return {"position_consistency": _rate(sum(bool(r["consistent"]) for r in both), len(both), alpha),
            "first_position_wins": _rate(sum(s == 1.0 for s in decisive), len(decisive), alpha)}


def pair_summary(a: str, b: str, rows, opts: dict, clusters: dict) -> dict:
    """Every number of one pair (see the module docstring)."""
    c = counts(rows)
    scores = item_scores(rows)
    share = item_mean_ci(scores, opts, clusters, binary=True)
    decided = c["wins"] + c["losses"]
    w = ps.wilson(c["wins"], decided, alpha=opts["alpha"])
    per_item = defaultdict(lambda: [0, 0])
    for r in rows:
        if r["outcome"] in ("win", "loss"):
            per_item[r["item_id"]][0] += r["outcome"] == "win"
            per_item[r["item_id"]][1] += 1
    boot = pooled_share_ci({i: tuple(v) for i, v in per_item.items()}, opts, clusters)
    sign = ps.sign_test([sum(v) / len(v) - 0.5 for v in scores.values()]) if scores else \
        {"n_pos": 0, "n_neg": 0, "n_zero": 0, "p_value": None}
    return {
        "arm_a": a, "arm_b": b, "label": f"{a} vs {b}", "items": len({r["item_id"] for r in rows}), **c,
        "valid": c["comparisons"] - c["invalid"],
        "win_share": share,
        "decided": decided, "decided_rate": w["estimate"], "decided_text": decided_text(c["wins"], decided),
        "decided_wilson": [w["ci_low"], w["ci_high"]],
        "decided_bootstrap": {k: boot[k] for k in ("estimate", "ci_low", "ci_high", "n_items", "ci_method",
                                                   "clustered")},
        "sign_test": {"a_items": sign["n_pos"], "b_items": sign["n_neg"], "tied_items": sign["n_zero"],
                      "p_value": sign["p_value"]},
        **diagnostics(rows, opts["alpha"]),
    }


def with_holm(pairs: list[dict]) -> None:
    """``p_holm`` on each pair: Holm across the pairs that have a sign test."""
    tested = [p for p in pairs if p["sign_test"]["p_value"] is not None]
    for p, adj in zip(tested, ps.holm([p["sign_test"]["p_value"] for p in tested])):
        p["p_holm"] = adj
    for p in pairs:
        p.setdefault("p_holm", None)


def continuation_rows(records, opts: dict, clusters: dict) -> list[dict]:
    """Per arm: mean continuation tokens and truncation rate (MetricRows, condition ``continuation``)."""
    per_arm: dict[str, list[dict]] = {}
    for r in records:
        if r.get("kind") == "continuation":
            per_arm.setdefault(r["arm"], []).append(r)
    rows = []
    for arm, recs in per_arm.items():
        for metric, value in (("suffix_tokens", lambda r: float(r["suffix_tokens"])),
                              ("truncated", lambda r: float(r["finish_reason"] == "length"))):
            per_item = defaultdict(list)
            for r in recs:
                per_item[r["item_id"]].append(value(r))
            rows.append({"arm": arm, "condition": "continuation", "metric": metric,
                         **item_mean_ci(per_item, opts, clusters, binary=metric == "truncated")})
    return rows


def metric_rows(pairs: list[dict]) -> list[dict]:
    """``MetricRow``s of each pair: its win share (bootstrap) and wins / decided (Wilson)."""
    out = []
    for p in pairs:
        out.append({"arm": p["arm_a"], "condition": p["arm_b"], "metric": "win_share", **p["win_share"]})
        out.append({"arm": p["arm_a"], "condition": p["arm_b"], "metric": "decided_win_rate",
                    "estimate": p["decided_rate"], "ci_low": p["decided_wilson"][0], "ci_high": p["decided_wilson"][1],
                    "n_items": p["decided_bootstrap"]["n_items"], "n_samples": p["decided"], "count": p["wins"],
                    "ci_method": "wilson (comparisons as independent)", "clustered": False, "degenerate": False})
    return out


def comparison_rows(pairs: list[dict], alpha: float) -> list[dict]:
    """``ComparisonRow``s: A's win share minus 0.5 (no preference), with the sign test and Holm."""
    out = []
    for p in pairs:
        s, t = p["win_share"], p["sign_test"]
        shift = (lambda v: None if v is None else v - 0.5)
        n = t["a_items"] + t["b_items"] + t["tied_items"]
        rates = {}
        for key, hits in (("a_better", t["a_items"]), ("b_better", t["b_items"]), ("tie", t["tied_items"])):
            w = ps.wilson(hits, n, alpha=alpha)
            rates[key], rates[f"{key}_ci"] = w["estimate"], [w["ci_low"], w["ci_high"]]
        out.append({"kind": "pairwise", "arm_a": p["arm_a"], "condition_a": "continuation", "arm_b": p["arm_b"],
                    "condition_b": "continuation", "condition": f"vs {p['arm_b']}", "metric": "win_share",
                    "delta": shift(s["estimate"]), "ci_low": shift(s["ci_low"]), "ci_high": shift(s["ci_high"]),
                    "p_value": t["p_value"], "p_holm": p["p_holm"], "test": "exact sign test (untied items)",
                    "n_shared": s["n_items"], "mde": None, **rates, "clustered": s["clustered"],
                    "ci_method": s["ci_method"], "degenerate": s["degenerate"]})
    return out


def summarize(records, manifest) -> dict:
    """Every pairwise table's rows, computed once from the records:
    ``{"pairs", "judge", "metrics", "comparisons", "plotted"}``."""
    opts = report_options(manifest)
    clusters = item_clusters(records)
    grouped = pair_records(records, [a["name"] for a in manifest.get("config", {}).get("arms", [])])
    pairs = [pair_summary(a, b, rows, opts, clusters) for (a, b), rows in grouped.items()]
    with_holm(pairs)
    every = [r for rows in grouped.values() for r in rows]
    judge = {**diagnostics(every, opts["alpha"]),
             **{k: v for k, v in counts(every).items() if k in ("comparisons", "invalid", "invalid_verdicts",
                                                                 "judge_errors")}}
    return {"pairs": pairs, "judge": judge,
            "metrics": metric_rows(pairs) + continuation_rows(records, opts, clusters),
            "comparisons": comparison_rows(pairs, opts["alpha"]),
            "plotted": {"win_share": METRICS["win_share"]}}
