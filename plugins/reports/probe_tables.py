"""Report sections for probe-style runs: main metrics, reward-gate groups, causal sensitivity."""

from __future__ import annotations

from harness.hookspecs import hookimpl
from reports import probe
from reports.markdown import md_table
from reports.stats import fmt_ci


@hookimpl
def register_report_sections(register):
    register(ProbeMainSection)
    register(ProbeGroupsSection)
    register(ProbeSensitivitySection)


def _f(x, digits=4):
    return "-" if x is None else f"{x:.{digits}f}"


class _ProbeSection:
    def applies(self, manifest) -> bool:
        return manifest.get("record_type") == "probe"


class ProbeMainSection(_ProbeSection):
    name = "probe-main"
    description = "per arm x condition: reward and true-suffix log-likelihood with 95% CIs"

    def render(self, records, manifest) -> str:
        rows = probe.main_rows(records, seed=manifest["config"]["seed"])
        table = md_table(
            ["Arm", "Condition", "Reward mean [95% CI]", "Suffix log-lik/token [95% CI]", "Judge score [95% CI]",
             "Any-success prefix rate", "Avg thought words", "Avg suffix words", "Invalid rate",
             "Closed-think rate", "Items", "Samples"],
            [[r["arm"], r["condition"], fmt_ci(r["reward"], 4), fmt_ci(r["suffix_logprob"], 3),
              fmt_ci(r["judge_score"], 3), _f(r["any_success_rate"]), _f(r["avg_thought_words"], 1),
              _f(r["avg_suffix_words"], 1), _f(r["invalid_rate"]), _f(r["closed_think_rate"]), r["n_items"],
              r["n_samples"]] for r in rows],
            right=set(range(2, 12)))
        return ("## Main metrics\n\nReward: the judge's binary verdict, averaged over an item's samples, then over "
                "items (judge-invalid samples left out, see Invalid rate). Suffix log-lik/token: teacher-forced "
                "mean log-probability of the true suffix given prefix + thought (judge-free). Judge score: the "
                "judge's continuous score before its threshold, where it has one. CIs: percentile bootstrap "
                "over items (B=10,000).\n\n" + table)

    def console(self, records, manifest) -> str:
        """The compact main table printed at the end of a run."""
        rows = probe.main_rows(records, seed=manifest["config"]["seed"])
        return md_table(
            ["Arm", "Condition", "Reward [95% CI]", "Suffix log-lik/token [95% CI]", "Judge score [95% CI]",
             "Invalid", "Items x samples"],
            [[r["arm"], r["condition"], fmt_ci(r["reward"], 3), fmt_ci(r["suffix_logprob"], 3),
              fmt_ci(r["judge_score"], 3), _f(r["invalid_rate"], 3),
              f"{r['n_items']} x {r['n_samples'] // max(r['n_items'], 1)}"] for r in rows],
            right=set(range(2, 7)))


class ProbeGroupsSection(_ProbeSection):
    name = "probe-groups"
    description = "reward variance: mixed / near-zero / all-success sample groups per item"

    def render(self, records, manifest) -> str:
        rows = probe.group_rows(records)
        table = md_table(
            ["Arm", "Condition", "Reward mean", "Reward std", "Mixed groups", "Near-zero groups",
             "All-success groups", "Avg thought tokens", "Avg suffix tokens"],
            [[r["arm"], r["condition"], _f(r["reward_mean"]), _f(r["reward_std"]), _f(r["mixed_groups"]),
              _f(r["near_zero_groups"]), _f(r["all_success_groups"]), _f(r["avg_thought_tokens"], 1),
              _f(r["avg_suffix_tokens"], 1)] for r in rows],
            right=set(range(2, 9)))
        return ("## Reward groups\n\nPer item, its samples form a group: mixed (some rewarded), near-zero "
                "(none rewarded), all-success. Mixed groups are what a group-relative RL update learns from.\n\n"
                + table)


class ProbeSensitivitySection(_ProbeSection):
    name = "probe-sensitivity"
    description = "prefix-level causal sensitivity normal - condition, with CIs and win/tie rates"

    def render(self, records, manifest) -> str:
        rows = probe.sensitivity_rows(records, seed=manifest["config"]["seed"])
        if not rows:
            return ""
        table = md_table(
            ["Arm", "Comparison", "Reward delta [95% CI]", "Log-lik delta [95% CI]", "Normal better",
             "Condition better", "Tie", "Shared items"],
            [[r["arm"], f"{r['baseline']} - {r['condition']}", fmt_ci(r["reward_delta"], 4, signed=True),
              fmt_ci(r["logprob_delta"], 3, signed=True), _f(r["baseline_better"]), _f(r["condition_better"]),
              _f(r["tie"]), r["n_shared"]] for r in rows],
            right=set(range(2, 8)))
        return ("## Causal sensitivity\n\nPrefix-level `normal - condition` on the same items (paired bootstrap "
                "over items). Positive: the arm's own thought helped relative to the intervention. Win rates "
                "compare each item's mean reward under the two conditions.\n\n" + table)

    def console(self, records, manifest) -> str:
        """The compact sensitivity table printed at the end of a run."""
        rows = probe.sensitivity_rows(records, seed=manifest["config"]["seed"])
        if not rows:
            return ""
        return md_table(
            ["Arm", "Comparison", "Reward delta [95% CI]", "Log-lik delta [95% CI]", "Normal / cond. / tie"],
            [[r["arm"], f"{r['baseline']} - {r['condition']}", fmt_ci(r["reward_delta"], 3, signed=True),
              fmt_ci(r["logprob_delta"], 3, signed=True),
              f"{_f(r['baseline_better'], 2)} / {_f(r['condition_better'], 2)} / {_f(r['tie'], 2)}"]
             for r in rows],
            right=set(range(2, 5)))
