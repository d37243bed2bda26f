"""Report sections for probe-style runs: main metrics, reward gate and groups, go/no-go flags,
causal sensitivity, arms.

Sections render the rows of the eval's summary (:func:`reports.probe.summarize`), computed once
from ``samples.jsonl``. The statistics modules import numpy/scipy, so they load inside methods:
``harness --help`` loads this plugin and must stay fast.
"""

from __future__ import annotations

from harness.hookspecs import hookimpl
from reports.markdown import md_table
from reports.options import report_options
from reports.stats import clustered_ci_note, comparisons_of, comparison_table, fmt_cell as _cell, fmt_num as _f, fmt_pooled, uneven_note


@hookimpl
def register_report_sections(register):
    register(ProbeMainSection)
    register(ProbeGroupsSection)
    register(ProbeFlagsSection)
    register(ProbeSensitivitySection)
    register(ProbeThoughtsSection)
    register(ProbeArmsSection)


def _ci_note(manifest) -> str:
    return clustered_ci_note(manifest, "item")


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
                "rate: share of the cell's items with at least one rewarded sample (Wilson interval). A reward cell "
                "whose items all scored 0 shows the Wilson interval of 0 of n items instead of an empty bootstrap; "
                "other cells where every item has the same value have no interval and say so. "
                f"{_ci_note(manifest)}\n\n" + table + _uneven(summary))

    def console(self, records, manifest, summary) -> str:
        """The compact main table printed at the end of a run."""
        cells = _cells(summary)
        return md_table(
            ["Arm", "Condition", "Reward [95% CI]", "Suffix log-lik/token [95% CI]", "Judge score [95% CI]",
             "Invalid (pooled)", "Items x samples"],
            [[arm, cond, _cell(c.get("reward"), 3), _cell(c.get("suffix_logprob"), 3), _cell(c.get("judge_score"), 3),
              _f((c.get("invalid_rate") or {}).get("estimate"), 3), f"{_n(c, 'n_items')} x {_per_item(c)}"]
             for (arm, cond), c in cells.items()],
            right=set(range(2, 7)))


def _n(cell, key) -> int:
    return max((r.get(key) or 0) for r in cell.values())


def _range(row) -> list | None:
    return (row or {}).get("samples_per_item")


def _per_item(cell) -> str:
    """Samples per item of a cell (every record, judged or not): ``4``, or ``2-4`` when uneven."""
    r = _range(cell.get("invalid_rate"))
    return "-" if r is None else str(r[0]) if r[0] == r[1] else f"{r[0]}-{r[1]}"


def _uneven(summary) -> str:
    """Footnote naming the cells whose items hold uneven numbers of samples or of valid verdicts."""
    cells = _cells(summary)
    notes = [uneven_note({f"{a} / {c}": _range(cell.get("invalid_rate")) for (a, c), cell in cells.items()}),
             uneven_note({f"{a} / {c}": _range(cell.get("mixed_groups")) for (a, c), cell in cells.items()},
                         what="valid verdicts")]
    notes = [n for n in notes if n]
    if not notes:
        return ""
    return ("\n\n" + " ".join(notes) + " Item means weigh every item equally; pooled numbers weigh items by "
            "their samples, so where counts are uneven the two differ.")


class ProbeGroupsSection(_ProbeSection):
    name = "probe-groups"
    description = "reward-gate table and reward groups: mixed / zero-variance / all-zero / all-one groups, spread"

    def render(self, records, manifest, summary) -> str:
        cells = _cells(summary)
        gate = md_table(
            ["Arm", "Condition", "Reward mean", "Rewarded / judged", "Reward std (pooled)", "Invalid rate (pooled)",
             "Mixed groups", "Zero-variance (near-zero) groups", "Any-success groups", "All-success groups",
             "Avg total new tokens", "Avg predicted suffix words", "Self-closed thoughts",
             "Avg thought words (self-closed)"],
            [[arm, cond, _cell(c.get("reward"), 4), _pooled(c), *(_cell(c.get(m), d) for m, d in (
                ("reward_std_pooled", 4), ("invalid_rate", 4), ("mixed_groups", 3), ("zero_variance_groups", 3),
                ("any_success", 3), ("all_success_groups", 3), ("avg_new_tokens", 1), ("avg_suffix_words", 1),
                ("self_closed_rate", 3), ("avg_thought_words_closed", 1)))] for (arm, cond), c in cells.items()],
            right=set(range(2, 14)))
        groups = md_table(
            ["Arm", "Condition", "Groups", "Valid per group", "Mixed", "Zero-variance (near-zero)", "All-zero",
             "All-one", "< 2 valid", "Mean group reward std", "Mean group reward range"],
            [[arm, cond, (c.get("mixed_groups") or {}).get("n_items", "-"), _valid(c),
              *(_cell(c.get(m), d) for m, d in (
                  ("mixed_groups", 3), ("zero_variance_groups", 3), ("all_zero_groups", 3), ("all_one_groups", 3),
                  ("few_valid_groups", 3), ("group_reward_std", 4), ("group_reward_range", 4)))]
             for (arm, cond), c in cells.items()],
            right=set(range(2, 11)))
        return ("## Reward gate\n\nIs the judge's reward usable for group-relative RL? Per item, its valid (judged) "
                "verdicts in one arm x condition form a group. Mixed: at least 2 valid verdicts with some spread (the "
                "groups a group-relative update learns from). Zero-variance (the study's near-zero): at least 2 valid "
                "verdicts, all equal: all-zero or all-one. Groups with fewer than 2 valid verdicts have no spread to "
                "learn from either; mixed + zero-variance + < 2 valid = 1. Any-success / all-success: at least one / "
                "every valid verdict rewarded (a group with one valid verdict counts). Every share is over all of the "
                "cell's items (one whose every verdict was invalid counts as < 2 valid, and as no success), with a "
                "Wilson interval. Mean group reward std (ddof 0) and range (max - min): over the groups with at least "
                "2 valid verdicts. Reward mean: mean of item means, like every `[95% CI]` cell but the pooled ones. "
                "Pooled over samples: rewarded / judged (shown as `pooled k / n = share` where it differs from the "
                "reward mean), reward std (the study's), and the invalid rate (samples the judge could not score). "
                "Total new tokens: thought plus suffix. Self-closed thoughts: share of sampled thoughts in which the "
                "arm wrote the close tag itself (not the harness's external one); avg thought words over those. "
                + _ci_note(manifest) + "\n\n" + gate + "\n\n" + groups + _uneven(summary))


def _pooled(cell) -> str:
    row = cell.get("reward_pooled")
    if not row:
        return "-"
    return fmt_pooled(row.get("count"), row.get("n_samples"), (cell.get("reward") or {}).get("estimate"))


def _valid(cell) -> str:
    r = _range(cell.get("mixed_groups"))
    return "-" if r is None else str(r[0]) if r[0] == r[1] else f"{r[0]}-{r[1]}"


def _flag_inputs(check) -> str:
    parts = ["; ".join(f"{k} " + ", ".join(f"{arm} {_f(v, 4)}" for arm, v in values.items())
                       for k, values in check["inputs"].items())]
    d = check.get("paired_delta")
    if d and d.get("delta") is not None:
        ci = (" (all items equal)" if d.get("degenerate") else "" if d.get("ci_low") is None
              else f" [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]")
        parts.append(f"paired delta {d['delta']:+.4f}{ci} on {d['n_shared']} shared items")
    return "; ".join(parts)


class ProbeFlagsSection(_ProbeSection):
    name = "probe-flags"
    description = "the study's go/no-go flags: reward validity, variance, per arm pair separability and mean reward"

    def render(self, records, manifest, summary) -> str:
        flags = summary.get("flags")
        if not flags or not flags.get("checks"):
            return ""
        shown = {True: "yes", False: "no", None: "n/a"}
        table = md_table(["Condition", "Flag", "Arms", "OK", "Rule", "Inputs"],
                         [[c["condition"], c["flag"], f"{c['arm_a']} vs {c['arm_b']}" if "arm_a" in c else "every arm",
                           shown[c["ok"]], c["rule"], _flag_inputs(c)] for c in flags["checks"]], right={3})
        return (f"## Go/no-go flags\n\nThe reference study's reward-gate flags on {', '.join(flags['conditions'])}: "
                f"{flags['basis']}. Thresholds: pooled invalid rate <= {flags['thresholds']['invalid_rate']:.2f}, "
                f"zero-variance group share <= {flags['thresholds']['zero_variance_groups']:.2f}. Each flag lists "
                "the numbers it compares (point estimates from the tables above; n/a: an input is missing; arm_a is "
                "the first arm named in Arms). \"Higher\" compares point estimates: read the paired delta's CI "
                "before calling it a difference. Also in summary.json (`flags`).\n\n" + table)


class ProbeSensitivitySection(_ProbeSection):
    name = "probe-sensitivity"
    description = "prefix-level causal sensitivity normal - condition, with CIs, tests and win/tie rates"

    def render(self, records, manifest, summary) -> str:
        rows = comparisons_of(summary, "conditions")
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
        rows = comparisons_of(summary, "conditions")
        if not rows:
            return ""
        return _comparison_table(rows, _sensitivity_label, ("reward", "suffix_logprob"), compact=True)


class ProbeArmsSection(_ProbeSection):
    name = "probe-arms"
    description = "paired arm comparisons per condition, every pair or vs --baseline (needs two or more arms)"

    def render(self, records, manifest, summary) -> str:
        rows = comparisons_of(summary, "arms")
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


def _notes_table(rows) -> str:
    def skipped(r):
        return f"{r['skipped_items']} of {r['run_items']}" if r["run_items"] else str(r["skipped_items"])

    return md_table(["Arm", "Condition", "Samples", "Skipped items", "How the thoughts were made"],
                    [[r["arm"], r["condition"], r["n_samples"], skipped(r),
                      "; ".join(f"{k} {v}" for k, v in r["info"].items()) or "-"] for r in rows], right={2, 3})


class ProbeThoughtsSection(_ProbeSection):
    name = "probe-thoughts"
    description = "where conditions' thoughts came from: another arm's (re-encoded or not), unchanged, skipped items"

    def render(self, records, manifest, summary) -> str:
        rows = summary.get("thought_notes") or []
        if not rows:
            return ""
        return ("## Thought provenance\n\nConditions whose thoughts say how they were made (each record's "
                "`thought_info`), and conditions that skip items. `source_arm`: the arm whose `normal` thought "
                "was used (`cross_arm`); `reencoded`: samples whose donor text was encoded with the recipient's "
                "tokenizer because the two arms' tokenizers differ (otherwise the donor's token ids are used as "
                "they are). `unchanged`: thoughts with nothing to replace, used as sampled (`corrupted`). "
                "`paraphrased_by`: the teacher arm. Skipped items: items the condition does not apply to (e.g. "
                "no teacher thought in the data), left out of its cells and of its paired comparisons.\n\n"
                + _notes_table(rows))

    def console(self, records, manifest, summary) -> str:
        rows = summary.get("thought_notes") or []
        return _notes_table(rows) if rows else ""
