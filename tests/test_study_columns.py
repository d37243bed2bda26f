"""The reward-gate and probe columns of the reference study, recomputed by hand from samples.jsonl.

Hand-built records with uneven valid verdicts per item (1, 2, 3 valid samples, invalid verdicts, an
item with every verdict invalid) and all-zero / all-one / mixed groups go through ``harness report``
like a real run; every new or changed column, the go/no-go flags in summary.json and the report's
tables are checked against a direct recomputation from the records read back from the file. The
reasoning table's pooled Correct / Samples and its uneven-samples footnote likewise.
"""

import json
from collections import defaultdict

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import cli

# (arm, condition) -> item -> its samples' verdicts in sample order (None: the judge's answer was invalid)
PLAN = {
    ("a", "normal"): {"i1": [1, 0, 1, None], "i2": [0, 0], "i3": [1, 1, None, None], "i4": [1, None],
                      "i5": [None, None], "i6": [0]},
    ("b", "normal"): {"i1": [0, 1], "i2": [0, 1, 1, 0], "i3": [0, 0, 0], "i4": [1, 1], "i5": [1, 0, 0],
                      "i6": [0, 0]},
    ("a", "blank"): {"i1": [0, 0], "i2": [0, 0], "i3": [1, 0], "i4": [0, 0], "i5": [0, 0], "i6": [0, 0]},
    ("b", "blank"): {"i1": [1, 1], "i2": [1, 0], "i3": [0, 0], "i4": [0, 1], "i5": [0, 0], "i6": [1, 1]},
}
ITEMS = [f"i{k}" for k in range(1, 7)]


def _records():
    rows = []
    for (arm, cond), items in PLAN.items():
        for item, verdicts in items.items():
            for s, v in enumerate(verdicts):
                words = 1 + (3 * s + int(item[1:]) + len(arm)) % 5
                closed = None if cond == "blank" else (s + int(item[1:])) % 3 != 0
                rows.append({
                    "eval": "thought_probe", "arm": arm, "condition": cond, "item_id": item, "sample": s,
                    "cluster": None, "thought": "" if cond == "blank" else " ".join(["w"] * words),
                    "thought_tokens": 0 if cond == "blank" else 2 * words, "thought_closed": closed,
                    "thought_source": None, "suffix": " ".join(["s"] * (1 + s % 3)), "suffix_tokens": 3 + s,
                    "finish_reason": "length", "reward": v, "judge_score": None if v is None else 0.1 * v + 0.01 * s,
                    "judge_invalid": v is None, "judge_raw": None, "suffix_logprob": -1.0 - 0.1 * s - 0.01 * len(item),
                    "true_suffix_tokens": 10, "seed": s, "cached_tokens": None})
    return rows


def _manifest(record_type="probe", eval_name="thought_probe", samples=4, interventions=("normal", "blank")):
    cfg = {"eval": eval_name, "arms": [{"name": "a"}, {"name": "b"}], "tasks": [{"name": "chunks", "data": "hand"}],
           "samples": samples, "seed": 0, "temperature": 1.0, "top_p": 1.0}
    if record_type == "probe":
        cfg.update(interventions=list(interventions), judge={"name": "lexical"}, thought_max_tokens=8,
                   suffix_max_tokens=8)
    else:
        cfg.update(max_new_tokens=16)
    return {"record_type": record_type, "config": cfg, "item_ids": ITEMS}


@pytest.fixture(scope="module")
def hand_run(tmp_path_factory):
    """A run directory written by hand, reported by ``harness report``: (records read back, summary, markdown)."""
    out = tmp_path_factory.mktemp("hand") / "run"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps(_manifest()))
    (out / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records()))
    res = CliRunner().invoke(cli, ["report", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    return records, json.loads((out / "summary.json").read_text()), (out / "report.md").read_text(), out


def _cells(summary):
    return {(m["arm"], m["condition"], m["metric"]): m for m in summary["metrics"]}


def _groups(records, arm, cond):
    """item -> its valid verdicts (every item of the cell, [] when all were invalid)."""
    g = defaultdict(list)
    for r in records:
        if (r["arm"], r["condition"]) == (arm, cond):
            g[r["item_id"]]
            if not r["judge_invalid"]:
                g[r["item_id"]].append(r["reward"])
    return dict(g)


def _wilson(k, n):
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(method="wilson")
    return ci.low, ci.high


SHAPES = {  # what each group column counts, written out by hand
    "mixed_groups": lambda v: len(v) >= 2 and 0 < sum(v) < len(v),
    "zero_variance_groups": lambda v: len(v) >= 2 and sum(v) in (0, len(v)),
    "all_zero_groups": lambda v: len(v) >= 2 and sum(v) == 0,
    "all_one_groups": lambda v: len(v) >= 2 and sum(v) == len(v),
    "few_valid_groups": lambda v: len(v) < 2,
    "any_success": lambda v: sum(v) >= 1,
    "all_success_groups": lambda v: len(v) >= 1 and sum(v) == len(v),
}


@pytest.mark.parametrize("cell", list(PLAN))
def test_group_shares_are_shares_of_every_item_of_the_cell(hand_run, cell):
    records, summary, _, _ = hand_run
    cells = _cells(summary)
    groups = _groups(records, *cell)
    n = len(groups)
    assert n == 6
    for metric, hit in SHAPES.items():
        k = sum(hit(v) for v in groups.values())
        row = cells[(*cell, metric)]
        assert (row["estimate"], row["count"], row["n_items"]) == (k / n, k, n), metric
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(_wilson(k, n)), metric
    partition = sum(cells[(*cell, m)]["estimate"] for m in ("mixed_groups", "zero_variance_groups", "few_valid_groups"))
    assert partition == pytest.approx(1.0)
    assert cells[(*cell, "zero_variance_groups")]["estimate"] == pytest.approx(
        cells[(*cell, "all_zero_groups")]["estimate"] + cells[(*cell, "all_one_groups")]["estimate"])


def test_the_hand_plan_has_the_cases_it_claims(hand_run):
    """a / normal: items with 3, 2, 2, 1, 0, 1 valid verdicts; mixed, all-zero, all-one, too few."""
    records, summary, _, _ = hand_run
    g = _groups(records, "a", "normal")
    assert [len(g[i]) for i in ITEMS] == [3, 2, 2, 1, 0, 1]
    cells = _cells(summary)
    # the study's published "near-zero" was all-zero; zero-variance also counts the all-one i3
    assert cells[("a", "normal", "zero_variance_groups")]["estimate"] == 2 / 6
    assert cells[("a", "normal", "all_zero_groups")]["estimate"] == 1 / 6
    assert cells[("a", "normal", "few_valid_groups")]["estimate"] == 3 / 6
    assert cells[("a", "normal", "any_success")]["estimate"] == 3 / 6  # i5 (all invalid) has no success


@pytest.mark.parametrize("cell", list(PLAN))
def test_group_spread_is_a_mean_over_groups_with_two_valid_verdicts(hand_run, cell):
    from reports.paired_stats import bootstrap_ci

    records, summary, _, _ = hand_run
    cells = _cells(summary)
    spread = {i: v for i, v in _groups(records, *cell).items() if len(v) >= 2}
    ids = sorted(spread)
    for metric, fn in (("group_reward_std", lambda v: float(np.sqrt(np.mean((np.array(v) - np.mean(v)) ** 2)))),
                       ("group_reward_range", lambda v: float(max(v) - min(v)))):
        values = [fn(spread[i]) for i in ids]
        row = cells[(*cell, metric)]
        assert row["estimate"] == pytest.approx(np.mean(values), abs=1e-12) and row["n_items"] == len(ids)
        assert row["samples_per_item"] == [min(map(len, spread.values())), max(map(len, spread.values()))]
        if len(set(values)) > 1:  # the report's bootstrap over items (B=10,000, seed 0), same items
            want = bootstrap_ci(values, B=10_000, seed=0, keys=ids)
            assert (row["ci_low"], row["ci_high"]) == pytest.approx((want["ci_low"], want["ci_high"]), abs=1e-12)
    std = cells[(*cell, "group_reward_std")]
    assert std["estimate"] <= cells[(*cell, "group_reward_range")]["estimate"] / 2 + 1e-12


def test_a_cell_without_spread_bounds_the_group_std_by_half_the_range():
    from reports.probe import summarize

    recs = [r for r in _records() if (r["arm"], r["condition"]) == ("a", "blank") and r["item_id"] != "i3"]
    cells = _cells(summarize(recs, _manifest(interventions=("blank",))))
    rng, std = cells[("a", "blank", "group_reward_range")], cells[("a", "blank", "group_reward_std")]
    assert rng["estimate"] == std["estimate"] == 0.0 and rng["ci_high"] == pytest.approx(_wilson(0, 5)[1])
    assert std["ci_high"] == pytest.approx(rng["ci_high"] / 2) and not std["degenerate"]


@pytest.mark.parametrize("cell", list(PLAN))
def test_pooled_columns_are_pooled_and_the_reward_mean_is_an_item_mean(hand_run, cell):
    from reports.paired_stats import bootstrap_means_matrix

    records, summary, _, _ = hand_run
    cells = _cells(summary)
    rs = [r for r in records if (r["arm"], r["condition"]) == cell]
    valid = [r["reward"] for r in rs if not r["judge_invalid"]]
    inv = cells[(*cell, "invalid_rate")]
    assert inv["estimate"] == sum(r["judge_invalid"] for r in rs) / len(rs) and inv["n_samples"] == len(rs)
    per_item = defaultdict(lambda: [0, 0])
    for r in rs:
        per_item[r["item_id"]][0] += r["judge_invalid"]
        per_item[r["item_id"]][1] += 1
    if 0 < inv["estimate"] < 1:  # ratio of sums, resampled over items
        boots = bootstrap_means_matrix([per_item[i] for i in ITEMS], B=10_000, seed=0, keys=ITEMS)
        lo, hi = np.quantile(boots[:, 0] / boots[:, 1], [0.025, 0.975])
        assert (inv["ci_low"], inv["ci_high"]) == pytest.approx((lo, hi), abs=1e-12)
    else:  # no invalid verdict anywhere: the Wilson bound of 0 of n items
        assert (inv["ci_low"], inv["ci_high"]) == pytest.approx(_wilson(0, 6))
    pooled = cells[(*cell, "reward_pooled")]
    assert (pooled["count"], pooled["n_samples"]) == (sum(valid), len(valid))
    assert pooled["estimate"] == pytest.approx(sum(valid) / len(valid))
    assert cells[(*cell, "reward_std_pooled")]["estimate"] == pytest.approx(np.std(valid), abs=1e-12)
    groups = {i: v for i, v in _groups(records, *cell).items() if v}
    reward = cells[(*cell, "reward")]
    assert reward["estimate"] == pytest.approx(np.mean([np.mean(v) for v in groups.values()]), abs=1e-12)
    assert reward["samples_per_item"] == [min(map(len, groups.values())), max(map(len, groups.values()))]


@pytest.mark.parametrize("cell", [c for c in PLAN if c[1] == "normal"])
def test_self_closed_thoughts_and_their_words(hand_run, cell):
    records, summary, _, _ = hand_run
    cells = _cells(summary)
    rs = [r for r in records if (r["arm"], r["condition"]) == cell]
    closed, words = defaultdict(list), defaultdict(list)
    for r in rs:
        closed[r["item_id"]].append(float(r["thought_closed"]))
        if r["thought_closed"]:
            words[r["item_id"]].append(len(r["thought"].split()))
    assert cells[(*cell, "self_closed_rate")]["estimate"] == pytest.approx(
        np.mean([np.mean(v) for v in closed.values()]))
    row = cells[(*cell, "avg_thought_words_closed")]
    assert row["estimate"] == pytest.approx(np.mean([np.mean(v) for v in words.values()]))
    assert row["n_items"] == len(words) and row["n_samples"] == sum(map(len, words.values()))
    assert not any(k[2] in ("closed_think_rate", "near_zero_groups", "reward_std") for k in cells)  # renamed
    assert ("a", "blank", "self_closed_rate") not in cells  # no sampled thought, nothing to close


def _by_flag(flags):
    return {(c["condition"], c["flag"]): c for c in flags["checks"]}


def test_flags_in_summary_json_gate_on_normal_with_their_inputs(hand_run):
    records, summary, _, _ = hand_run
    flags = summary["flags"]
    assert flags["conditions"] == ["normal"] and "normal" in flags["basis"]
    assert flags["thresholds"] == {"invalid_rate": 0.05, "zero_variance_groups": 0.5}
    checks = _by_flag(flags)
    assert {c for c, _ in checks} == {"normal"} and len(flags["checks"]) == 4
    by_hand = {}
    for arm in ("a", "b"):
        rs = [r for r in records if (r["arm"], r["condition"]) == (arm, "normal")]
        g = _groups(records, arm, "normal")
        spread = [v for v in g.values() if len(v) >= 2]
        by_hand[arm] = {"invalid": sum(r["judge_invalid"] for r in rs) / len(rs),
                        "zero_var": sum(len(v) >= 2 and len(set(v)) == 1 for v in g.values()) / len(g),
                        "std": np.mean([np.std(v) for v in spread]),
                        "mixed": sum(len(set(v)) == 2 for v in g.values()) / len(g),
                        "reward": np.mean([np.mean(v) for v in g.values() if v])}
    validity = checks[("normal", "reward_validity_ok")]
    assert validity["inputs"]["invalid_rate"] == pytest.approx({a: by_hand[a]["invalid"] for a in "ab"})
    assert validity["ok"] is (max(by_hand[a]["invalid"] for a in "ab") <= 0.05) is False  # a: 6 of 15 invalid
    variance = checks[("normal", "variance_ok")]
    assert variance["inputs"]["zero_variance_groups"] == pytest.approx({a: by_hand[a]["zero_var"] for a in "ab"})
    assert variance["ok"] is True and by_hand["b"]["zero_var"] == 0.5  # <= 0.50 passes
    sep = checks[("normal", "more_reward_separable")]
    assert (sep["arm_a"], sep["arm_b"]) == ("b", "a")  # later arm vs earlier, as the arm comparisons pair them
    assert sep["inputs"]["group_reward_std"] == pytest.approx({a: by_hand[a]["std"] for a in "ab"})
    assert sep["inputs"]["mixed_groups"] == pytest.approx({a: by_hand[a]["mixed"] for a in "ab"})
    assert sep["ok"] is bool(by_hand["b"]["std"] > by_hand["a"]["std"] or by_hand["b"]["mixed"] > by_hand["a"]["mixed"])
    higher = checks[("normal", "higher_mean_reward")]
    assert higher["inputs"]["reward"] == pytest.approx({a: by_hand[a]["reward"] for a in "ab"})
    assert higher["ok"] is bool(by_hand["b"]["reward"] > by_hand["a"]["reward"])
    paired = next(r for r in summary["comparisons"] if r["kind"] == "arms" and r["metric"] == "reward"
                  and r["condition"] == "normal")
    assert higher["paired_delta"] == {k: paired[k] for k in ("delta", "ci_low", "ci_high", "n_shared", "degenerate")}


def test_without_a_normal_condition_every_condition_is_gated_and_missing_inputs_say_so():
    from reports.probe import summarize

    recs = [r for r in _records() if r["condition"] == "blank"]
    recs += [dict(r, arm="c", reward=None, judge_invalid=True) for r in recs if r["arm"] == "a"]
    flags = summarize(recs, _manifest(interventions=("blank",)))["flags"]
    assert flags["conditions"] == ["blank"] and "no normal condition" in flags["basis"]
    checks = _by_flag(flags)
    assert checks[("blank", "reward_validity_ok")]["inputs"]["invalid_rate"]["c"] == 1.0
    assert checks[("blank", "reward_validity_ok")]["ok"] is False
    assert checks[("blank", "variance_ok")]["inputs"]["zero_variance_groups"]["c"] is None
    assert checks[("blank", "variance_ok")]["ok"] is None  # c has no valid verdict: no share to check
    pairs = [(c["arm_a"], c["arm_b"], c["ok"]) for c in flags["checks"] if c["flag"] == "higher_mean_reward"]
    assert pairs == [("b", "a", True), ("c", "a", None), ("c", "b", None)]


def test_the_report_shows_the_group_columns_the_flags_and_the_uneven_counts(hand_run):
    records, summary, md, out = hand_run
    gate = md.split("## Reward gate", 1)[1].split("## Go/no-go flags", 1)[0]
    for header in ("Reward std (pooled)", "Invalid rate (pooled)", "Rewarded / judged",
                   "Zero-variance (near-zero) groups", "Self-closed thoughts", "Avg thought words (self-closed)",
                   "All-zero", "All-one", "< 2 valid", "Mean group reward std", "Mean group reward range"):
        assert header in gate, header
    assert "Near-zero groups |" not in md and "Closed-think rate" not in md
    # a / normal: 5 of 9 valid verdicts rewarded pooled, but the mean of item means is 0.5333
    cells = _cells(summary)
    assert cells[("a", "normal", "reward")]["estimate"] == pytest.approx(np.mean([2 / 3, 0, 1, 1, 0]))
    assert "| 0.5333 [" in gate and "pooled 5 / 9 = 0.5556 |" in gate
    assert " 1 / 12 |" in gate  # a / blank: 2 samples per item, the pooled share is the item mean: no label
    assert "Samples per item uneven: a / normal 1-4; b / normal 2-4." in gate
    assert "Valid verdicts per item uneven: a / normal 0-3; b / normal 2-4." in gate
    flags = md.split("## Go/no-go flags", 1)[1].split("\n## ", 1)[0]
    assert "normal condition" in flags and "reward_validity_ok" in flags and "b vs a" in flags
    assert "invalid_rate a 0.4000, b 0.0000" in flags and "paired delta" in flags
    rep = json.loads(CliRunner().invoke(cli, ["report", str(out), "--format", "json"]).output)
    assert rep["flags"] == summary["flags"]
    assert {m["metric"]: m["samples_per_item"] for m in rep["metrics"]
            if (m["arm"], m["condition"]) == ("a", "normal")}["invalid_rate"] == [1, 4]


# --- reasoning: Mean@k is a mean of problem shares; Correct / Samples is pooled --------------------


def _reasoning(plan):
    """plan: (arm, bench) -> problem -> its samples' correctness."""
    return [{"eval": "reasoning", "arm": arm, "condition": bench, "benchmark": bench, "item_id": f"{bench}/{pid}",
             "problem_id": pid, "sample": s, "cluster": None, "correct": ok, "extracted": str(int(ok)),
             "completion_tokens": 10 + s, "finish_reason": "eos"}
            for (arm, bench), problems in plan.items() for pid, oks in problems.items() for s, ok in enumerate(oks)]


def test_reasoning_rows_with_uneven_samples_per_problem_label_the_pooled_count():
    from plugins.reports.reasoning_tables import ReasoningMainSection
    from reports.reasoning import summarize

    plan = {("a", "gsm8k"): {"p1": [True], "p2": [False, True], "p3": [False, False, False]},
            ("a", "math500"): {"p1": [True, False, False], "p2": [False, False, True]}}
    records = _reasoning(plan)
    manifest = _manifest("reasoning", "reasoning", samples=3)
    summary = summarize(records, manifest)
    cells = _cells(summary)
    gsm = cells[("a", "gsm8k", "mean_at_k")]
    assert gsm["estimate"] == pytest.approx(np.mean([1, 1 / 2, 0])) and (gsm["count"], gsm["n_samples"]) == (2, 6)
    assert gsm["samples_per_item"] == [1, 3] and cells[("a", "gsm8k", "pass_at_k")]["samples_per_item"] == [1, 3]
    assert cells[("a", "gsm8k", "pass_at_k")]["count"] == 2 and cells[("a", "gsm8k", "pass_at_k")]["n_items"] == 3
    assert cells[("a", "gsm8k", "pass@2")]["n_items"] == 2  # p1 has one sample: no pass@2
    text = ReasoningMainSection().render(records, manifest, summary)
    assert "pooled 2 / 6 = 0.3333" in text and "0.5000" in text
    assert "Samples per problem uneven: a / gsm8k 1-3." in text and "math500 3-3" not in text
    math = cells[("a", "math500", "mean_at_k")]
    assert math["estimate"] == pytest.approx(2 / 6) and " 2 / 6 |" in text  # even: the counts agree, no label
    even = _reasoning({("a", "gsm8k"): {"p1": [True, False], "p2": [False, False]}})
    text = ReasoningMainSection().render(even, manifest, summarize(even, manifest))
    assert "pooled" not in text.split("| ---")[-1] and "per problem uneven" not in text
