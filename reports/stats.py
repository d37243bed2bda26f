"""What a report section needs beside its eval's summary rows: formatting of estimates with
intervals (and of pooled counts beside them, :func:`fmt_pooled`, with :func:`uneven_note` for
uneven samples per item), the paired-comparison table every eval's report uses, the sentence that
says how the intervals were made, and :func:`item_ci` for a section's own metric (the statistics themselves
live in paired_stats/compare). Light imports only: numpy and scipy load inside :func:`item_ci`."""

from __future__ import annotations

from reports.markdown import md_table
from reports.options import ci_method_label, report_options


def item_ci(records, value_fn, manifest: dict, binary: bool = False) -> dict:
    """Mean over items of a per-sample value, with the report's bootstrap CI over items.

    ``value_fn(record)`` gives one sample's value (``None`` leaves the sample out). An item's
    values are averaged first, then items are resampled: whole sources where items share one (the
    records' ``cluster``, per the report's ``--clusters``), with the report's ``--ci-method``,
    ``--resamples`` and the run's seed, as for every other cell of the report. ``binary``: the
    value is 0/1, so a cell where every item scored 0 (or 1) gets the Wilson bound of 0 (or n) of
    n items instead of an empty ``[v, v]``. Pass the records of one cell (one arm and condition)
    for that cell's number.

    Returns ``{"estimate", "ci_low", "ci_high", "n_items", "n_samples", "se", "ci_method",
    "clustered", "degenerate", "samples_per_item"}`` (estimate and bounds None without items;
    ``samples_per_item``: ``[fewest, most]`` values per item); :func:`fmt_cell` prints it as
    ``est [lo, hi]``.
    """
    from reports.compare import records_ci

    return records_ci(records, value_fn, report_options(manifest), binary=binary)


def ci_basis(manifest: dict, unit: str = "item") -> str:
    """``95% CIs: percentile bootstrap over items (B=10,000, seed 0), an item's samples averaged
    first``: how the report's intervals over ``unit`` were made (``"problem"``, say), from its options."""
    opts = report_options(manifest)
    article = "an" if unit[:1] in "aeiou" else "a"
    return (f"95% CIs: {ci_method_label(opts['method'])} bootstrap over {unit}s (B={opts['B']:,}, seed "
            f"{opts['seed']}), {article} {unit}'s samples averaged first")


def clustered_ci_note(manifest: dict, unit: str = "item") -> str:
    """:func:`ci_basis` and the cluster marker: the note under a table of CIs over ``unit``s."""
    return ci_basis(manifest, unit) + f"; whole sources are resampled where {unit}s share one (marked *)."


def comparisons_of(summary: dict, kind: str) -> list[dict]:
    """The summary's comparison rows of one ``kind`` ("conditions" or "arms")."""
    return [r for r in summary.get("comparisons", []) if r["kind"] == kind]


def fmt_ci(stat: dict, digits: int = 3, signed: bool = False) -> str:
    """``0.125 [0.063, 0.188]`` (or ``-`` when there is no estimate)."""
    if stat.get("estimate") is None:
        return "-"
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    if stat.get("ci_low") is None:
        return f.format(stat["estimate"])
    return f"{f.format(stat['estimate'])} [{f.format(stat['ci_low'])}, {f.format(stat['ci_high'])}]"


def fmt_num(x, digits=4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def fmt_p(x) -> str:
    return "-" if x is None else (f"{x:.3f}" if x >= 0.001 else "<0.001")


def fmt_cell(stat, digits, signed=False) -> str:
    """``est [lo, hi]``, ``*`` when whole sources were resampled; ``est (all items equal)`` when
    every item had the same value (a bootstrap interval ``[v, v]`` would say nothing)."""
    if stat is None:
        return "-"
    if stat.get("degenerate"):
        return fmt_ci({"estimate": stat["estimate"]}, digits, signed=signed) + " (all items equal)"
    return fmt_ci(stat, digits, signed=signed) + ("*" if stat.get("clustered") else "")


def fmt_rate(row: dict, key: str) -> str:
    """A comparison row's win/tie share ``key`` with its Wilson interval (``-`` when absent)."""
    if row.get(key) is None:
        return "-"
    lo, hi = row[f"{key}_ci"]
    return fmt_ci({"estimate": row[key], "ci_low": lo, "ci_high": hi}, 2)


def fmt_pooled(count, total, item_mean=None, digits: int = 4) -> str:
    """A pooled count ``count / total`` beside an item-mean estimate: ``5 / 48`` when the two
    agree (every item had as many samples), else ``pooled 5 / 45 = 0.1111`` so that the number
    that differs says what it is (``-`` without samples)."""
    if count is None or not total:
        return "-"
    share = count / total
    if item_mean is not None and abs(share - item_mean) < 1e-9:
        return f"{count:,} / {total:,}"
    return f"pooled {count:,} / {total:,} = {share:.{digits}f}"


def uneven_note(ranges: dict, unit: str = "item", what: str = "samples") -> str:
    """``Samples per item uneven: a / normal 2-4; b / normal 3-4.`` for the cells whose
    ``[fewest, most]`` (``ranges``: label -> range, or None) differ; ``""`` when none does."""
    uneven = [f"{label} {lo}-{hi}" for label, r in ranges.items() if r and (lo := r[0]) != (hi := r[1])]
    return f"{what.capitalize()} per {unit} uneven: {'; '.join(uneven)}." if uneven else ""


def comparison_table(rows, labels: dict, label, left="Left better", right="Right better", second="Arm",
                     digits=None, compact=False) -> str:
    """Paired comparison rows as Markdown; ``label(row)`` gives the first two cells, ``labels``
    names the metrics, ``digits(metric)`` the decimals of a delta (default 3). ``compact`` (for a
    terminal) leaves out the MDE and the win / tie shares."""
    head = ["Comparison", second, "Metric", "Delta [95% CI]", "p (Holm)", "MDE", f"{left} [95% CI]",
            f"{right} [95% CI]", "Tie [95% CI]", "Shared items"]
    body = [[*label(r), labels.get(r["metric"], r["metric"]),
             fmt_cell({"estimate": r["delta"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                       "clustered": r["clustered"], "degenerate": r.get("degenerate")},
                      digits(r["metric"]) if digits else 3, signed=True),
             "-" if r["p_value"] is None else f"{fmt_p(r['p_value'])} ({fmt_p(r['p_holm'])})", fmt_num(r["mde"], 3),
             fmt_rate(r, "a_better"), fmt_rate(r, "b_better"), fmt_rate(r, "tie"), r["n_shared"]] for r in rows]
    keep = [0, 1, 2, 3, 4, 9] if compact else list(range(len(head)))
    return md_table([head[i] for i in keep], [[row[i] for i in keep] for row in body],
                    right={k for k, i in enumerate(keep) if i >= 3})
