"""Summary of ``nll`` runs (records of the ``nll`` eval): per-arm NLLs pooled over rows with
bootstrap CIs over rows, and paired arm deltas.

A record is one (arm, row). For each NLL kind (:data:`NLL_METRICS`, ``{kind}_nll``) it holds the
row's NLL sum in nats and its number of scored tokens (``{kind}_nll_sum``, ``{kind}_tokens``). A cell's estimate is the
per-token mean pooled over its rows, ``sum of sums / sum of tokens``: the number ``harness train
sft`` logs for its held-out rows (``val_nll_raw``, ``thought_nll``, ...). Rows without tokens of a
kind (a row without thoughts has no thought tokens) are left out of that kind's cell. The CI
resamples rows (whole sources where rows share one, per the report's ``--clusters``) and takes
each resample's ratio of sums (percentile interval; ``--ci-method bca`` does not apply to a ratio).

Paired arm deltas ``A - B`` use the rows both arms scored: the difference of the two pooled means,
its CI from the same resampled rows for both arms; p: a paired permutation test that swaps the two
arms' (sum, tokens) within each row at random; Holm across a metric's rows; MDE from the
bootstrap SE; ``a_better`` / ``b_better`` / ``tie``: the shares of rows whose own per-token mean
is higher for A / higher for B / equal (named as for every metric; for an NLL higher is worse),
with Wilson intervals. The repetition rate and tokens per row are per-row values averaged over rows
(:func:`reports.compare.item_mean_ci`, :func:`reports.compare.compare_cells`)."""

from __future__ import annotations

import math

import numpy as np

from reports import paired_stats as ps
from reports.compare import arm_pairs, clusters_for, compare_cells, item_clusters, item_mean_ci
from reports.options import report_options

NLL_METRICS = {"raw_nll": "Raw NLL (thoughts removed)", "augmented_nll": "Augmented NLL (all tokens)",
               "thought_nll": "Thought NLL", "text_nll": "Text NLL", "post_thought_nll": "Post-thought NLL"}
ROW_METRICS = {"repetition_4gram_rate": "Repetition 4-gram rate", "tokens_scored": "Tokens scored per row"}
METRICS = {**NLL_METRICS, **ROW_METRICS}
RATIO_METHOD = "percentile (ratio of sums)"


def _pairs(records, metric: str) -> dict[str, dict[str, tuple[float, int]]]:
    """arm -> item id -> (NLL sum, tokens) of ``metric`` for the rows with tokens of that kind."""
    base = metric.removesuffix("_nll")
    out: dict[str, dict[str, tuple[float, int]]] = {}
    for r in records:
        n = r.get(f"{base}_tokens") or 0
        if n:
            out.setdefault(r["arm"], {})[r["item_id"]] = (float(r[f"{base}_nll_sum"]), int(n))
    return out


def pooled_ratio_ci(per_item: dict[str, tuple[float, int]], opts: dict, clusters: dict) -> dict:
    """Pooled per-token mean (ratio of sums) of ``per_item`` (item id -> (sum, tokens)) with a
    percentile bootstrap CI over items (whole sources where they share one)."""
    ids = sorted(per_item)
    tokens = sum(per_item[i][1] for i in ids)
    row = {"estimate": None, "ci_low": None, "ci_high": None, "se": None, "n_items": len(ids), "n_samples": len(ids),
           "count": tokens, "ci_method": RATIO_METHOD, "clustered": False, "degenerate": False,
           "samples_per_item": [1, 1] if ids else None}
    if not ids:
        return row
    row["estimate"] = math.fsum(per_item[i][0] for i in ids) / tokens
    keys = clusters_for(ids, clusters, opts["clusters"])
    row["clustered"] = keys is not None
    if len(ids) > 1:
        cols = np.array([per_item[i] for i in ids], dtype=float)
        b = ps.bootstrap_means_matrix(cols, B=opts["B"], seed=opts["seed"], clusters=keys, keys=ids)
        ci = ps.percentile_ci(b[:, 0] / b[:, 1], row["estimate"], alpha=opts["alpha"])
        row.update(ci_low=ci["ci_low"], ci_high=ci["ci_high"], se=ci["se"],
                   degenerate=bool(ci["ci_low"] == ci["ci_high"]))
    return row


def _permutation_p(cols: np.ndarray, observed: float, B: int, seed: int) -> float:
    """Two-sided p of ``observed`` (pooled A - pooled B) when each row's A and B are swapped at
    random: columns of ``cols`` are (sum A, tokens A, sum B, tokens B)."""
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    n = len(cols)
    step = max(1, 2_000_000 // max(1, n))
    while done < B:
        m = min(step, B - done)
        swap = rng.random((m, n)) < 0.5
        sa = np.where(swap, cols[:, 2], cols[:, 0]).sum(1)
        na = np.where(swap, cols[:, 3], cols[:, 1]).sum(1)
        sb = np.where(swap, cols[:, 0], cols[:, 2]).sum(1)
        nb = np.where(swap, cols[:, 1], cols[:, 3]).sum(1)
        d = sa / na - sb / nb
        hits += int(np.count_nonzero(np.abs(d) >= abs(observed) * (1 - 1e-10) - 1e-15))
        done += m
    return (hits + 1) / (B + 1)


def _wins(d: np.ndarray, alpha: float) -> dict:
    out = {}
    for name, hits in (("a_better", d > 0), ("b_better", d < 0), ("tie", d == 0)):
        w = ps.wilson(int(np.count_nonzero(hits)), len(d), alpha=alpha)
        out[name], out[f"{name}_ci"] = w["estimate"], [w["ci_low"], w["ci_high"]]
    return out


def compare_nll(records, pairs, opts: dict, clusters: dict) -> list[dict]:
    """Paired ``A - B`` rows of the pooled NLL metrics for each ((arm_a, cond), (arm_b, cond))."""
    rows = []
    for metric in NLL_METRICS:
        cells = _pairs(records, metric)
        group = []
        for (a, cond), (b, _) in pairs:
            ids = sorted(set(cells.get(a, {})) & set(cells.get(b, {})))
            if not ids:
                continue
            cols = np.array([(*cells[a][i], *cells[b][i]) for i in ids], dtype=float)
            ra = math.fsum(cols[:, 0]) / cols[:, 1].sum()
            rb = math.fsum(cols[:, 2]) / cols[:, 3].sum()
            delta = ra - rb
            keys = clusters_for(ids, clusters, opts["clusters"])
            row = {"kind": "arms", "arm_a": a, "condition_a": cond, "arm_b": b, "condition_b": cond,
                   "condition": cond, "metric": metric, "delta": delta, "ci_low": None, "ci_high": None, "se": None,
                   "p_value": None, "test": "paired permutation (arms swapped per row)", "n_shared": len(ids),
                   "mde": None, "clustered": keys is not None, "ci_method": RATIO_METHOD, "degenerate": False,
                   **_wins(cols[:, 0] / cols[:, 1] - cols[:, 2] / cols[:, 3], opts["alpha"])}
            if len(ids) > 1:
                bm = ps.bootstrap_means_matrix(cols, B=opts["B"], seed=opts["seed"], clusters=keys, keys=ids)
                ci = ps.percentile_ci(bm[:, 0] / bm[:, 1] - bm[:, 2] / bm[:, 3], delta, alpha=opts["alpha"])
                row.update(ci_low=ci["ci_low"], ci_high=ci["ci_high"], se=ci["se"],
                           degenerate=bool(ci["ci_low"] == ci["ci_high"]),
                           p_value=_permutation_p(cols, delta, opts["B"], opts["seed"]))
                if ci["se"]:
                    row["mde"] = ps.mde_paired(ci["se"] * math.sqrt(len(ids)), len(ids), alpha=opts["alpha"])
            group.append(row)
        tested = [r for r in group if r["p_value"] is not None]  # untestable rows are not in the Holm family
        for r, adj in zip(tested, ps.holm([r["p_value"] for r in tested])):
            r["p_holm"] = adj
        for r in group:
            r.setdefault("p_holm", None)
        rows += group
    return rows


def _row_values(records, metric: str) -> dict[tuple, dict[str, list[float]]]:
    out: dict[tuple, dict[str, list[float]]] = {}
    for r in records:
        if r.get(metric) is not None:
            out.setdefault((r["arm"], r["condition"]), {}).setdefault(r["item_id"], []).append(float(r[metric]))
    return out


def notes(records, tokenizers: dict) -> list[str]:
    """What a reader must know about the cells: rows without thoughts, rows cut, tokenizers."""
    out = []
    for arm in dict.fromkeys(r["arm"] for r in records):
        mine = [r for r in records if r["arm"] == arm]
        bare = sum(1 for r in mine if not r.get("thoughts"))
        if bare:
            out.append(f"{arm}: {bare} of {len(mine)} rows have no thoughts; their thought and post-thought NLL are "
                       "undefined (None in the records) and they are left out of those cells.")
        cut = sum(1 for r in mine if r.get("truncated"))
        if cut:
            lost = sum(1 for r in mine if r.get("thoughts") and not r.get("thought_tokens"))
            more = (f" In {lost} of them every thought lies past the cut: their thought and post-thought NLL are "
                    "undefined and left out of those cells.") if lost else ""
            out.append(f"{arm}: {cut} of {len(mine)} rows were cut to max_tokens before scoring.{more}")
    if len({t.get("tokenizer_sha") or t.get("tokenizer") for t in tokenizers.values()}) > 1:
        out.append("The arms were scored with different tokenizers: their per-token NLLs are in different units, "
                   "so a delta between them compares tokenisations as well as models.")
    return out


def summarize(records, manifest) -> dict:
    """``metrics`` (one :class:`~harness.protocols.MetricRow` per arm x metric), ``comparisons``
    (paired arm deltas), ``rows`` (per arm: rows, rows without thoughts, rows cut), ``tokenizers``
    (per arm) and ``notes``."""
    opts = report_options(manifest)
    clusters = item_clusters(records)
    arms = list(dict.fromkeys(r["arm"] for r in records))
    metrics = []
    for metric in NLL_METRICS:
        cells = _pairs(records, metric)
        for arm in arms:
            metrics.append({"arm": arm, "condition": "nll", "metric": metric,
                            **pooled_ratio_ci(cells.get(arm, {}), opts, clusters)})
    for metric in ROW_METRICS:
        cells = _row_values(records, metric)
        for arm in arms:
            per_item = cells.get((arm, "nll"), {})
            if not per_item:
                continue
            row = item_mean_ci(per_item, opts, clusters)
            if metric == "tokens_scored":
                row["count"] = int(sum(v for vals in per_item.values() for v in vals))
            metrics.append({"arm": arm, "condition": "nll", "metric": metric, **row})
    pairs = arm_pairs(records, opts["baseline"])
    comparisons = compare_nll(records, pairs, opts, clusters) + compare_cells(
        records, pairs, opts, "arms", metrics={"repetition_4gram_rate": METRICS["repetition_4gram_rate"]},
        binary=set())
    tokenizers = {}
    for r in records:
        tokenizers.setdefault(r["arm"], {"tokenizer": r.get("tokenizer"), "tokenizer_sha": r.get("tokenizer_sha")})
    rows = {arm: {"rows": sum(r["arm"] == arm for r in records),
                  "without_thoughts": sum(r["arm"] == arm and not r.get("thoughts") for r in records),
                  "truncated": sum(r["arm"] == arm and bool(r.get("truncated")) for r in records)} for arm in arms}
    return {"metrics": metrics, "comparisons": comparisons, "rows": rows, "tokenizers": tokenizers,
            "notes": notes(records, tokenizers)}
