"""Report sections for probe-style runs: main metrics, reward groups, causal sensitivity, arms.

Sections render the rows of the eval's summary (:func:`reports.probe.summarize`), computed once
from ``samples.jsonl``. The statistics modules import numpy/scipy, so they load inside methods:
``harness --help`` loads this plugin and must stay fast.
"""

from __future__ import annotations

from harness.hookspecs import hookimpl
from reports.markdown import md_table
from reports.stats import fmt_ci


@hookimpl
def register_report_sections(register):
    register(ProbeMainSection)
    register(ProbeGroupsSection)
    register(ProbeSensitivitySection)
    register(ProbeArmsSection)


def _f(x, digits=4):
    return "-" if x is None else f"{x:.{digits}f}"


def _p(x):
    return "-" if x is None else (f"{x:.3f}" if x >= 0.001 else "<0.001")


def _ci_note(manifest) -> str:
    from reports.compare import report_options

    opts = report_options(manifest)
    how = "BCa" if opts["method"] == "bca" else "percentile"
    return (f"95% CIs: {how} bootstrap over items (B={opts['B']:,}, seed {opts['seed']}), an item's samples "
            "averaged first; whole sources are resampled where items share one (marked *).")


def _cell(stat, digits, signed=False):
    return fmt_ci(stat, digits, signed=signed) + ("*" if stat.get("clustered") else "")


def _comparisons(summary, kind):
    return [r for r in summary.get("comparisons", []) if r["kind"] == kind]


def _comparison_table(rows, label, metrics=None) -> str:
    """Paired comparison rows; ``label(row)`` gives the first two cells."""
    from reports.compare import METRICS

    rows = [r for r in rows if metrics is None or r["metric"] in metrics]
    return md_table(
        ["Comparison", "Arm / condition", "Metric", "Delta [95% CI]", "p (Holm)", "MDE", "Left / right better / tie",
         "Shared items"],
        [[*label(r), METRICS[r["metric"]],
          _cell({"estimate": r["delta"], "ci_low": r["ci_low"], "ci_high": r["ci_high"], "clustered": r["clustered"]},
                4 if r["metric"] == "reward" else 3, signed=True),
          f"{_p(r['p_value'])} ({_p(r['p_holm'])})", _f(r["mde"], 3),
          f"{_f(r['a_better'], 2)} / {_f(r['b_better'], 2)} / {_f(r['tie'], 2)}", r["n_shared"]] for r in rows],
        right=set(range(3, 8)))


def _sensitivity_label(r):
    return f"{r['condition_a']} - {r['condition_b']}", r["arm_a"]


class _ProbeSection:
    def applies(self, manifest) -> bool:
        return manifest.get("record_type") == "probe"


class ProbeMainSection(_ProbeSection):
    name = "probe-main"
    description = "per arm x condition: reward, true-suffix log-likelihood and judge score with 95% CIs"

    def render(self, records, manifest, summary) -> str:
        table = md_table(
            ["Arm", "Condition", "Reward mean [95% CI]", "Suffix log-lik/token [95% CI]", "Judge score [95% CI]",
             "Any-success prefix rate [95% CI]", "Avg thought words", "Avg suffix words", "Invalid rate [95% CI]",
             "Closed-think rate", "Items", "Samples"],
            [[r["arm"], r["condition"], _cell(r["reward"], 4), _cell(r["suffix_logprob"], 3),
              _cell(r["judge_score"], 3), fmt_ci(r["any_success"], 3), _f(r["avg_thought_words"], 1),
              _f(r["avg_suffix_words"], 1), fmt_ci(r["invalid"], 3), _f(r["closed_think_rate"]), r["n_items"],
              r["n_samples"]] for r in summary["main"]],
            right=set(range(2, 12)))
        return ("## Main metrics\n\nReward: the judge's binary verdict, averaged over an item's samples, then over "
                "items (judge-invalid samples left out, see Invalid rate). Suffix log-lik/token: teacher-forced "
                "mean log-probability of the true suffix given prefix + thought (judge-free). Judge score: the "
                "judge's continuous score before its threshold, where it has one. Rates of items and samples "
                f"carry Wilson intervals. {_ci_note(manifest)}\n\n" + table)

    def console(self, records, manifest, summary) -> str:
        """The compact main table printed at the end of a run."""
        return md_table(
            ["Arm", "Condition", "Reward [95% CI]", "Suffix log-lik/token [95% CI]", "Judge score [95% CI]",
             "Invalid", "Items x samples"],
            [[r["arm"], r["condition"], fmt_ci(r["reward"], 3), fmt_ci(r["suffix_logprob"], 3),
              fmt_ci(r["judge_score"], 3), _f(r["invalid"]["estimate"], 3),
              f"{r['n_items']} x {r['n_samples'] // max(r['n_items'], 1)}"] for r in summary["main"]],
            right=set(range(2, 7)))


class ProbeGroupsSection(_ProbeSection):
    name = "probe-groups"
    description = "reward variance: mixed / near-zero / all-success sample groups per item"

    def render(self, records, manifest, summary) -> str:
        table = md_table(
            ["Arm", "Condition", "Reward mean", "Reward std", "Mixed groups", "Near-zero groups",
             "All-success groups", "Avg thought tokens", "Avg suffix tokens"],
            [[r["arm"], r["condition"], _f(r["reward_mean"]), _f(r["reward_std"]), _f(r["mixed_groups"]),
              _f(r["near_zero_groups"]), _f(r["all_success_groups"]), _f(r["avg_thought_tokens"], 1),
              _f(r["avg_suffix_tokens"], 1)] for r in summary["groups"]],
            right=set(range(2, 9)))
        return ("## Reward groups\n\nPer item, its samples form a group: mixed (some rewarded), near-zero "
                "(none rewarded), all-success. Mixed groups are what a group-relative RL update learns from.\n\n"
                + table)


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
                "Left / right better: share of items where normal / the condition scored higher. "
                f"{_ci_note(manifest)}\n\n" + _comparison_table(rows, _sensitivity_label))

    def console(self, records, manifest, summary) -> str:
        """The sensitivity rows for reward and log-likelihood, printed at the end of a run."""
        rows = _comparisons(summary, "conditions")
        return _comparison_table(rows, _sensitivity_label, ("reward", "suffix_logprob")) if rows else ""


class ProbeArmsSection(_ProbeSection):
    name = "probe-arms"
    description = "paired arm vs baseline-arm comparisons per condition (needs two or more arms)"

    def render(self, records, manifest, summary) -> str:
        rows = _comparisons(summary, "arms")
        if not rows:
            return ""
        table = _comparison_table(rows, lambda r: (f"{r['arm_a']} - {r['arm_b']}", r["condition"]))
        return (f"## Arm comparisons (baseline {rows[0]['arm_b']})\n\nEach arm minus the baseline on the items both "
                "were run on, per condition: mean delta with a paired CI (the same resampled items for both "
                "arms), p-value with its Holm adjustment, MDE, and the share of items where the arm (left) or the "
                f"baseline (right) scored higher or tied. {_ci_note(manifest)}\n\n" + table)
