"""Report sections for probe-style runs: main metrics, reward groups, causal sensitivity, arms.

Sections render the rows of the eval's summary (:func:`reports.probe.summarize`), computed once
from ``samples.jsonl``. The statistics modules import numpy/scipy, so they load inside methods:
``harness --help`` loads this plugin and must stay fast.
"""

from __future__ import annotations

from harness.hookspecs import hookimpl
from reports.markdown import md_table
from reports.options import report_options
from reports.stats import ci_basis, comparison_table, fmt_cell as _cell, fmt_num as _f


@hookimpl
def register_report_sections(register):
    register(ProbeMainSection)
    register(ProbeGroupsSection)
    register(ProbeSensitivitySection)
    register(ProbeArmsSection)


def _ci_note(manifest) -> str:
    return ci_basis(manifest, "item") + "; whole sources are resampled where items share one (marked *)."


def _comparisons(summary, kind):
    return [r for r in summary.get("comparisons", []) if r["kind"] == kind]


def _comparison_table(rows, label, metrics=None, **kw) -> str:
    from reports.compare import METRICS

    rows = [r for r in rows if metrics is None or r["metric"] in metrics]
    return comparison_table(rows, METRICS, label, digits=lambda m: 4 if m == "reward" else 3, **kw)


def _sensitivity_label(r):
    return f"{r['condition_a']} - {r['condition_b']}", r["arm_a"]


def _cells(summary):
    from reports.probe import cell_table

    return cell_table(summary["metrics"])


class _ProbeSection:
    def applies(self, manifest) -> bool:
        return manifest.get("record_type") == "probe"


class ProbeMainSection(_ProbeSection):
    name = "probe-main"
    description = "per arm x condition: reward, true-suffix log-likelihood and judge score with 95% CIs"

    def render(self, records, manifest, summary) -> str:
        cells = _cells(summary)
        table = md_table(
            ["Arm", "Condition", "Reward mean [95% CI]", "Suffix log-lik/token [95% CI]", "Judge score [95% CI]",
             "Any-success prefix rate [95% CI]", "Avg thought words [95% CI]", "Avg suffix words [95% CI]",
             "Items", "Samples"],
            [[arm, cond, _cell(c.get("reward"), 4), _cell(c.get("suffix_logprob"), 3), _cell(c.get("judge_score"), 3),
              _cell(c.get("any_success"), 3), _cell(c.get("avg_thought_words"), 1),
              _cell(c.get("avg_suffix_words"), 1), _n(c, "n_items"), _n(c, "n_samples")]
             for (arm, cond), c in cells.items()],
            right=set(range(2, 10)))
        return ("## Main metrics\n\nReward: the judge's binary verdict, averaged over an item's samples, then over "
                "items (judge-invalid samples left out, see the reward-gate table). Suffix log-lik/token: "
                "teacher-forced mean log-probability of the true suffix given prefix + thought (judge-free). Judge "
                "score: the judge's continuous score before its threshold, where it has one. Any-success prefix "
                "rate: share of items with at least one rewarded sample (Wilson interval). A reward cell whose "
                "items all scored 0 shows the Wilson interval of 0 of n items instead of an empty bootstrap; other "
                "cells where every item has the same value have no interval and say so. "
                f"{_ci_note(manifest)}\n\n" + table)

    def console(self, records, manifest, summary) -> str:
        """The compact main table printed at the end of a run."""
        cells = _cells(summary)
        return md_table(
            ["Arm", "Condition", "Reward [95% CI]", "Suffix log-lik/token [95% CI]", "Judge score [95% CI]",
             "Invalid", "Items x samples"],
            [[arm, cond, _cell(c.get("reward"), 3), _cell(c.get("suffix_logprob"), 3), _cell(c.get("judge_score"), 3),
              _f((c.get("invalid_rate") or {}).get("estimate"), 3),
              f"{_n(c, 'n_items')} x {_n(c, 'n_samples') // max(_n(c, 'n_items'), 1)}"]
             for (arm, cond), c in cells.items()],
            right=set(range(2, 7)))


def _n(cell, key) -> int:
    return max((r.get(key) or 0) for r in cell.values())


class ProbeGroupsSection(_ProbeSection):
    name = "probe-groups"
    description = "reward-gate table: reward spread, mixed / near-zero / all-success groups, lengths"

    def render(self, records, manifest, summary) -> str:
        cols = [("reward", 4), ("reward_std", 4), ("invalid_rate", 4), ("mixed_groups", 3), ("near_zero_groups", 3),
                ("any_success", 3), ("all_success_groups", 3), ("avg_new_tokens", 1), ("avg_suffix_words", 1),
                ("closed_think_rate", 3)]
        table = md_table(
            ["Arm", "Condition", "Reward mean", "Reward std", "Invalid rate", "Mixed groups", "Near-zero groups",
             "Any-success groups", "All-success groups", "Avg total new tokens", "Avg predicted suffix words",
             "Closed-think rate"],
            [[arm, cond, *(_cell(c.get(m), d) for m, d in cols)] for (arm, cond), c in _cells(summary).items()],
            right=set(range(2, 12)))
        return ("## Reward gate\n\nIs the judge's reward usable for group-relative RL? Per item, its judged samples "
                "form a group: mixed (some but not all rewarded: the groups an update learns from), near-zero (none "
                "rewarded), any-success, all-success; shares of items with Wilson intervals. Reward std: over all "
                "judged samples pooled. Invalid rate: samples the judge could not score. Total new tokens: thought "
                "plus suffix. Every cell is `estimate [95% CI]`. " + _ci_note(manifest) + "\n\n" + table)


class ProbeSensitivitySection(_ProbeSection):
    name = "probe-sensitivity"
    description = "prefix-level causal sensitivity normal - condition, with CIs, tests and win/tie rates"

    def render(self, records, manifest, summary) -> str:
        rows = _comparisons(summary, "conditions")
        if not rows:
            return ""
        return ("## Causal sensitivity\n\nPrefix-level `normal - condition` on the same items. Positive: the "
                "arm's own thought helped relative to the intervention. p: paired sign-flip permutation test on "
                "item means (exact McNemar for one binary sample per item), Holm-adjusted across this table's "
                "rows of a metric in brackets. MDE: the smallest true delta this many items detect with power "
                "0.8 at alpha 0.05; a CI inside +-MDE is \"no difference we could see\", not \"no difference\". "
                "Normal / condition better, tie: share of items where normal / the condition scored higher, or "
                f"neither (Wilson intervals). {_ci_note(manifest)}\n\n"
                + _comparison_table(rows, _sensitivity_label, left="Normal better", right="Condition better"))

    def console(self, records, manifest, summary) -> str:
        """The sensitivity rows for reward and log-likelihood, printed at the end of a run."""
        rows = _comparisons(summary, "conditions")
        if not rows:
            return ""
        return _comparison_table(rows, _sensitivity_label, ("reward", "suffix_logprob"), compact=True)


class ProbeArmsSection(_ProbeSection):
    name = "probe-arms"
    description = "paired arm comparisons per condition, every pair or vs --baseline (needs two or more arms)"

    def render(self, records, manifest, summary) -> str:
        rows = _comparisons(summary, "arms")
        if not rows:
            return ""
        baseline = report_options(manifest)["baseline"]
        title = f"baseline {baseline}" if baseline else "every pair"
        table = _comparison_table(rows, lambda r: (f"{r['arm_a']} - {r['arm_b']}", r["condition"]),
                                  left="Left better", right="Right better", second="Condition")
        return (f"## Arm comparisons ({title})\n\n`A - B` on the items both arms were run on, per condition: mean "
                "delta with a paired CI (the same resampled items for both arms), p-value with its Holm adjustment "
                "across this table's rows of a metric, MDE, and the share of items where A (left) or B (right) "
                "scored higher, or tied (Wilson intervals). For the reward metric this is the reference reward-gate "
                f"comparison. {_ci_note(manifest)}\n\n" + table)
