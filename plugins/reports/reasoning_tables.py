"""Report sections for reasoning runs: the reference table (Mean@k, Pass@k with counts, macro
rows), pass@j curves, and paired arm comparisons per benchmark and macro.

Rows come from :func:`reports.reasoning.summarize`, computed once from ``samples.jsonl``;
statistics modules load inside methods so ``harness --help`` stays light.
"""

from __future__ import annotations

from harness.hookspecs import hookimpl
from reports.markdown import md_table
from reports.options import report_options
from reports.stats import ci_basis, comparison_table, fmt_cell, fmt_pooled, uneven_note


@hookimpl
def register_report_sections(register):
    register(ReasoningMainSection)
    register(ReasoningPassCurveSection)
    register(ReasoningArmsSection)


def _cells(summary) -> dict[tuple, dict[str, dict]]:
    """(arm, benchmark) -> metric -> row; each arm's macro row after its benchmarks."""
    out: dict[tuple, dict[str, dict]] = {}
    rows = summary.get("metrics", [])
    for arm in dict.fromkeys(r["arm"] for r in rows):
        for r in rows:
            if r["arm"] == arm and r["condition"] != "macro":
                out.setdefault((arm, r["condition"]), {})[r["metric"]] = r
        for r in rows:
            if r["arm"] == arm and r["condition"] == "macro":
                out.setdefault((arm, "macro"), {})[r["metric"]] = r
    return out


def _count(row, of: str) -> str:
    """``count / of``; labelled ``pooled ... = share`` where it differs from the row's estimate."""
    if not row or row.get("count") is None:
        return "-"
    return fmt_pooled(row["count"], row[of], row.get("estimate"))


def _uneven(summary) -> str:
    """Footnote for cells whose problems hold uneven numbers of samples (a partial or combined run)."""
    note = uneven_note({f"{a} / {b}": (c.get("mean_at_k") or {}).get("samples_per_item")
                        for (a, b), c in _cells(summary).items() if b != "macro"}, unit="problem")
    if not note:
        return ""
    return ("\n\n" + note + " Mean@k and every CI weigh each problem equally; the pooled Correct / Samples weighs "
            "problems by their samples. A problem's Pass@k is over the samples it has; pass@j leaves out problems "
            "with fewer than j.")


def _note(manifest) -> str:
    macro_method = "" if report_options(manifest)["method"] == "percentile" else "percentile "
    return (ci_basis(manifest, "problem") + "; a 0/1 cell where every problem scored the same shows the Wilson "
            "interval of 0 (or n) of n problems. Macro: the mean of an arm's benchmark estimates, equal weights, its "
            f"CI from a {macro_method}bootstrap that resamples problems within each benchmark.")


class _ReasoningSection:
    def applies(self, manifest) -> bool:
        return manifest.get("record_type") == "reasoning"


class ReasoningMainSection(_ReasoningSection):
    name = "reasoning-main"
    description = "per arm x benchmark: Mean@k, Pass@k with counts, maj@k, tokens, truncation; macro rows"

    def _rows(self, summary, full: bool):
        out = []
        for (arm, bench), c in _cells(summary).items():
            row = [arm, "Macro" if bench == "macro" else bench, fmt_cell(c.get("mean_at_k"), 4),
                   _count(c.get("mean_at_k"), "n_samples"), fmt_cell(c.get("pass_at_k"), 4),
                   _count(c.get("pass_at_k"), "n_items"), fmt_cell(c.get("completion_tokens"), 1)]
            if full:
                row[5:5] = [fmt_cell(c.get("maj_at_k"), 4)]
                row += [fmt_cell(c.get("truncated"), 3), fmt_cell(c.get("no_answer"), 3)]
            out.append(row)
        return out

    def _headers(self, k, full):
        head = ["Arm", "Benchmark", f"Mean@{k} [95% CI]", "Correct / Samples", f"Pass@{k} [95% CI]",
                "Pass / Problems", "Avg completion tokens [95% CI]"]
        if full:
            head[5:5] = [f"maj@{k} [95% CI]"]
            head += ["Truncation rate [95% CI]", "No-answer rate [95% CI]"]
        return head

    def render(self, records, manifest, summary) -> str:
        k = summary["k"]
        table = md_table(self._headers(k, True), self._rows(summary, True), right=set(range(2, 11)))
        return (f"## Reasoning ({k} samples per problem)\n\nMean@{k}: share of correct samples (sample-level). "
                f"Pass@{k}: share of problems with at least one correct sample. maj@{k}: the most frequent extracted "
                "answer is correct (exact string vote; ties go to the earliest sample). Truncation: the completion hit "
                "the token limit. No answer: nothing could be extracted (no \\boxed{} or final-answer phrase, or a "
                f"thought left open). Correct / Samples: pooled over samples, labelled so where it differs from "
                f"Mean@{k} (uneven samples per problem). {_note(manifest)}\n\n" + table + _uneven(summary))

    def console(self, records, manifest, summary) -> str:
        """The reference-style table, printed at the end of a run."""
        k = summary["k"]
        return md_table(self._headers(k, False), self._rows(summary, False), right=set(range(2, 7))) + _uneven(summary)


class ReasoningPassCurveSection(_ReasoningSection):
    name = "reasoning-pass-curve"
    description = "unbiased pass@j for j = 1, 2, 4, ... k per arm and benchmark"

    def render(self, records, manifest, summary) -> str:
        from reports.reasoning import pass_levels

        levels = pass_levels(summary["k"])
        if len(levels) < 2:
            return ""
        table = md_table(["Arm", "Benchmark", *(f"pass@{j} [95% CI]" for j in levels)],
                         [[arm, "Macro" if bench == "macro" else bench, *(fmt_cell(c.get(f"pass@{j}"), 4) for j in levels)]
                          for (arm, bench), c in _cells(summary).items()], right=set(range(2, 2 + len(levels))))
        return ("## pass@j\n\nThe unbiased estimator 1 - C(n-c, j) / C(n, j) per problem (n samples, c correct), "
                f"averaged over problems. {_note(manifest)}\n\n" + table)


class ReasoningArmsSection(_ReasoningSection):
    name = "reasoning-arms"
    description = "paired arm comparisons per benchmark and macro: Mean@k, Pass@k, maj@k, tokens deltas"

    def render(self, records, manifest, summary) -> str:
        from reports.reasoning import METRICS

        rows = [r for r in summary.get("comparisons", []) if r["kind"] == "arms"]
        if not rows:
            return ""
        k = summary["k"]
        labels = {m: v.replace("@k", f"@{k}") for m, v in METRICS.items()}
        baseline = report_options(manifest)["baseline"]
        order = list(dict.fromkeys(r["condition"] for r in rows))  # benchmarks, then macro
        rows = sorted(rows, key=lambda r: (list(labels).index(r["metric"]), order.index(r["condition"])))
        table = comparison_table(rows, labels, lambda r: (f"{r['arm_a']} - {r['arm_b']}", r["condition"]),
                                 second="Benchmark", digits=lambda m: 1 if m == "completion_tokens" else 4)
        return (f"## Arm comparisons ({f'baseline {baseline}' if baseline else 'every pair'})\n\n`A - B` on the "
                "problems both arms answered: mean per-problem delta with a paired bootstrap CI (the same resampled "
                "problems for both arms). p: exact McNemar for Pass@k and maj@k (one 0/1 value per problem), a paired "
                "sign-flip permutation test otherwise; Holm-adjusted across this table's rows of a metric. MDE: the "
                "smallest delta detectable with power 0.8 at alpha 0.05. Left / right better: share of problems where "
                "A / B scored higher (Wilson intervals). Macro rows: equal-weight mean of the benchmark deltas, CI "
                f"from a bootstrap stratified by benchmark (no test). {_note(manifest)}\n\n" + table)
