"""Search-eval metrics from ``search`` records: answer quality, search behaviour, paired deltas.

A cell is one (arm, evidence condition, dataset); an item is one question with its samples. Every
metric is a per-question value (each question's samples averaged first) averaged over questions,
with the report's bootstrap CI over questions (whole sources where questions share one; the Wilson
bound of 0 or n of n questions when every question scored the same 0/1-range value):

- ``em``, ``sub_em`` (a golden answer inside the prediction, the papers' ACC), ``f1``;
- ``pass_at_k``: EM of any of the question's samples (only when the run has k > 1 samples);
- ``n_searches``, ``n_turns``, ``invalid_rate`` (share of a rollout's turns with an invalid
  action), ``no_answer`` (no ``<answer>`` at all), ``answer_in_retrieved`` (retrieval recall: a
  shown passage holds a golden answer, over the rollouts that searched), ``completion_tokens``
  (tokens the model generated, every turn).

Per arm x condition, ``macro`` rows average the datasets with equal weight (when there are
several), CIs from a bootstrap stratified by dataset. Comparisons (paired on shared questions,
:func:`reports.compare.compare_cells`): arm pairs per condition (``kind = "arms"``) and the
evidence-use sensitivity ``normal - condition`` per arm (``kind = "conditions"``, the thought-use
probe's shape), per dataset and macro. Records of skipped items (a condition that does not apply)
are counted, never scored.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from reports import paired_stats as ps
from reports.compare import arm_pairs, compare_cells, condition_pairs, item_clusters, item_mean_ci
from reports.options import report_options

METRICS = {"em": "EM", "sub_em": "Sub-EM (ACC)", "f1": "F1", "pass_at_k": "Pass@k (EM)",
           "n_searches": "Searches / question", "n_turns": "Turns", "invalid_rate": "Invalid-action rate",
           "no_answer": "No-answer rate", "answer_in_retrieved": "Retrieval recall",
           "completion_tokens": "Tokens generated"}
UNIT = {"em", "sub_em", "f1", "pass_at_k", "invalid_rate", "no_answer", "answer_in_retrieved"}  # values in [0, 1]
BINARY = {"em", "sub_em"}  # one 0/1 value per sample: McNemar applies to one sample per question
COMPARED = ("em", "sub_em", "f1", "n_searches")
MACRO = "macro"


def scored(records) -> list[dict]:
    """The records that were run (not skipped)."""
    return [r for r in records if not r.get("skipped")]


def skipped_counts(records) -> dict[str, dict[str, int]]:
    """arm -> condition -> questions skipped (the condition does not apply to them)."""
    out: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    for r in records:
        if r.get("skipped"):
            out[r["arm"]][r["condition"]].add(r["item_id"])
    return {a: {c: len(ids) for c, ids in conds.items()} for a, conds in out.items()}


def _value(metric: str, r: dict):
    if metric in ("em", "sub_em", "no_answer"):
        return float(bool(r[metric]))
    if metric == "answer_in_retrieved":
        return None if r.get(metric) is None else float(bool(r[metric]))
    if metric == "invalid_rate":
        return r["n_invalid"] / r["n_turns"] if r["n_turns"] else None
    return float(r[metric])


def item_values(records, metric: str, by_dataset: bool = True) -> dict[tuple, dict[str, list[float]]]:
    """(arm, condition[, dataset]) -> question id -> the values ``metric`` averages for it."""
    out: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        key = (r["arm"], r["condition"]) + ((r["dataset"],) if by_dataset else ())
        if metric == "pass_at_k":
            out[key][r["item_id"]].append(float(bool(r["em"])))
            continue
        v = _value(metric, r)
        if v is not None:
            out[key][r["item_id"]].append(v)
    if metric == "pass_at_k":
        out = {k: {i: [max(v)] for i, v in items.items()} for k, items in out.items()}
    return out


def _stratified(per_ds: list[tuple[list, np.ndarray]], opts: dict, cells: list[dict] | None = None) -> dict:
    """Equal-weight mean over datasets of their means, percentile CI from resampling questions within
    each dataset independently. When no dataset has any spread the CI is the mean of the datasets'
    own bounds (``cells``; Wilson bounds for 0/1 metrics), or none without them."""
    est = float(np.mean([x.mean() for _, x in per_ds]))
    base = {"estimate": est, "se": None, "n_items": sum(len(ids) for ids, _ in per_ds), "clustered": False,
            "n_datasets": len(per_ds), "degenerate": False}
    if all(np.all(x == x[0]) for _, x in per_ds):
        bounded = bool(cells) and all(c.get("ci_low") is not None for c in cells)
        return {**base, "ci_low": float(np.mean([c["ci_low"] for c in cells])) if bounded else None,
                "ci_high": float(np.mean([c["ci_high"] for c in cells])) if bounded else None,
                "ci_method": "mean of the datasets' bounds", "degenerate": not bounded}
    boots = np.mean([ps.bootstrap_means_matrix(x, B=opts["B"], seed=opts["seed"] + n, keys=ids)[:, 0]
                     for n, (ids, x) in enumerate(per_ds)], axis=0)
    ci = ps.percentile_ci(boots, est, alpha=opts["alpha"])
    return {**base, "ci_low": ci["ci_low"], "ci_high": ci["ci_high"], "se": ci["se"],
            "ci_method": "percentile, stratified by dataset"}


def _means(vals: dict) -> tuple[list, np.ndarray]:
    ids = sorted(vals)
    return ids, np.array([np.mean(vals[i]) for i in ids])


def cell_rows(records, opts: dict, k: int) -> list[dict]:
    """Per arm x condition x dataset (and macro) x metric: estimate, CI, counts."""
    clusters = item_clusters(records)
    rows = []
    for metric in [m for m in METRICS if m != "pass_at_k" or k > 1]:
        cells = item_values(records, metric)
        for (arm, cond, ds), vals in cells.items():
            row = {"arm": arm, "condition": cond, "dataset": ds, "metric": metric,
                   **item_mean_ci(vals, opts, clusters, binary=metric in UNIT)}
            if metric in ("em", "pass_at_k"):
                row["count"] = int(round(sum(sum(v) for v in vals.values())))
            rows.append(row)
        for arm, cond in dict.fromkeys((a, c) for a, c, _ in cells):
            per_ds = [_means(v) for (a, c, _), v in cells.items() if (a, c) == (arm, cond)]
            if len(per_ds) > 1:
                own = [r for r in rows if (r["arm"], r["condition"], r["metric"]) == (arm, cond, metric)]
                rows.append({"arm": arm, "condition": cond, "dataset": MACRO, "metric": metric,
                             "n_samples": sum(r["n_samples"] for r in own), **_stratified(per_ds, opts, own)})
    return rows


def _macro_deltas(records, pairs, opts: dict, kind: str, datasets: list[str]) -> list[dict]:
    """Equal-weight mean over shared datasets of each dataset's mean paired difference ``a - b``."""
    rows = []
    for metric in COMPARED:
        cells = item_values(records, metric)
        for a, b in pairs:
            per_ds = []
            for ds in datasets:
                xa, xb = cells.get(a + (ds,)), cells.get(b + (ds,))
                ids = sorted(set(xa or ()) & set(xb or ()))
                if ids:
                    per_ds.append((ids, np.array([np.mean(xa[i]) - np.mean(xb[i]) for i in ids])))
            if len(per_ds) < 2:
                continue
            m = _stratified(per_ds, opts)
            rows.append({"kind": kind, "arm_a": a[0], "condition_a": a[1], "arm_b": b[0], "condition_b": b[1],
                         "condition": a[1] if a[1] == b[1] else f"{a[1]} - {b[1]}", "dataset": MACRO,
                         "metric": metric, "delta": m["estimate"], "ci_low": m["ci_low"], "ci_high": m["ci_high"],
                         "p_value": None, "p_holm": None, "test": None, "mde": None, "n_shared": m["n_items"],
                         "clustered": False, "ci_method": m["ci_method"], "degenerate": m["degenerate"],
                         "n_datasets": m["n_datasets"]})
    return rows


def comparison_rows(records, opts: dict) -> list[dict]:
    """Arm pairs per condition and ``normal - condition`` per arm, per dataset, then macro."""
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    rows = []
    for kind, pairs in (("arms", arm_pairs(records, opts.get("baseline"))),
                        ("conditions", condition_pairs(records, "normal"))):
        for ds in datasets:
            mine = [r for r in records if r["dataset"] == ds]
            got = compare_cells(mine, pairs, opts, kind=kind, metrics=COMPARED, binary=BINARY,
                                items_of=lambda recs, metric: item_values(recs, metric, by_dataset=False))
            rows += [dict(r, dataset=ds) for r in got]
        if len(datasets) > 1:
            rows += _macro_deltas(records, pairs, opts, kind, datasets)
    return rows


def summarize(records, manifest) -> dict:
    """Every search table's rows, computed once from the records."""
    opts = report_options(manifest)
    k = int(manifest["config"]["samples"])
    run = scored(records)
    return {"metrics": cell_rows(run, opts, k), "comparisons": comparison_rows(run, opts) if run else [],
            "skipped": skipped_counts(records), "k": k,
            "datasets": list(dict.fromkeys(r["dataset"] for r in run))}
