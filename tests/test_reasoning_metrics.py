"""Reasoning metrics recomputed by hand from synthetic graded records (no model, no grader)."""

from itertools import combinations

import numpy as np
import pytest

from reports.reasoning import majority_correct, pass_at, pass_levels, summarize


def _brute_pass(n, c, j):
    """Share of the j-subsets of n samples (c correct) holding at least one correct sample."""
    outcomes = [1] * c + [0] * (n - c)
    subsets = list(combinations(range(n), j))
    return sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 4, 5, 8])
def test_unbiased_pass_at_matches_enumeration(n):
    for c in range(n + 1):
        assert pass_at(n, c, 1) == pytest.approx(c / n)
        assert pass_at(n, c, n) == (1.0 if c else 0.0)
        for j in range(1, n + 1):
            assert pass_at(n, c, j) == pytest.approx(_brute_pass(n, c, j), abs=1e-12)
    with pytest.raises(ValueError):
        pass_at(n, 0, n + 1)


def test_pass_levels():
    assert pass_levels(8) == [1, 2, 4, 8] and pass_levels(6) == [1, 2, 4, 6] and pass_levels(1) == [1]


def _rec(arm, bench, pid, s, correct, extracted="x", tokens=10, finish="eos"):
    return {"arm": arm, "condition": bench, "benchmark": bench, "item_id": f"{bench}/{pid}", "sample": s,
            "cluster": None, "correct": correct, "extracted": extracted, "completion_tokens": tokens,
            "finish_reason": finish}


def test_majority_vote_ties_go_to_the_earliest_answer_and_missing_answers_do_not_vote():
    rows = [_rec("a", "b", 1, 0, False, "3"), _rec("a", "b", 1, 1, True, "4"), _rec("a", "b", 1, 2, True, "4"),
            _rec("a", "b", 1, 3, False, "3"), _rec("a", "b", 1, 4, False, None), _rec("a", "b", 1, 5, False, None)]
    assert majority_correct(rows) == 0.0  # 3 and 4 tie at two votes each; 3 came first
    assert majority_correct(rows[1:]) == 1.0
    assert majority_correct([_rec("a", "b", 1, 0, False, None)]) == 0.0


@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(3)
    records = []
    for arm, p in (("base", 0.3), ("tuned", 0.45)):
        for bench, n_problems in (("gsm8k", 40), ("math500", 25)):
            for pid in range(n_problems):
                difficulty = rng.uniform(-0.2, 0.2)
                for s in range(4):
                    ok = bool(rng.random() < p + difficulty)
                    records.append(_rec(arm, bench, pid, s, ok, str(rng.integers(0, 3)), int(rng.integers(5, 50)),
                                        "length" if rng.random() < 0.1 else "eos"))
    manifest = {"config": {"samples": 4, "seed": 0}, "report": {"B": 2000}}
    return records, summarize(records, manifest)


def _by(summary):
    return {(r["arm"], r["condition"], r["metric"]): r for r in summary["metrics"]}


def test_mean_and_pass_at_k_equal_a_direct_recomputation(synthetic):
    records, summary = synthetic
    cells = _by(summary)
    bench_means = {}
    for arm in ("base", "tuned"):
        for bench in ("gsm8k", "math500"):
            rs = [r for r in records if r["arm"] == arm and r["condition"] == bench]
            by_pid = {}
            for r in rs:
                by_pid.setdefault(r["item_id"], []).append(r)
            mean_k = np.mean([np.mean([r["correct"] for r in v]) for v in by_pid.values()])
            pass_k = np.mean([any(r["correct"] for r in v) for v in by_pid.values()])
            row = cells[(arm, bench, "mean_at_k")]
            assert row["estimate"] == pytest.approx(mean_k) and row["count"] == sum(r["correct"] for r in rs)
            assert row["n_samples"] == len(rs) and row["ci_low"] < row["estimate"] < row["ci_high"]
            row = cells[(arm, bench, "pass_at_k")]
            assert row["estimate"] == pytest.approx(pass_k) and row["count"] == sum(
                any(r["correct"] for r in v) for v in by_pid.values()) and row["n_items"] == len(by_pid)
            assert cells[(arm, bench, "pass@4")]["estimate"] == pytest.approx(pass_k)
            assert cells[(arm, bench, "pass@1")]["estimate"] == pytest.approx(mean_k)
            assert cells[(arm, bench, "truncated")]["estimate"] == pytest.approx(
                np.mean([np.mean([r["finish_reason"] == "length" for r in v]) for v in by_pid.values()]))
            assert cells[(arm, bench, "completion_tokens")]["estimate"] == pytest.approx(
                np.mean([np.mean([r["completion_tokens"] for r in v]) for v in by_pid.values()]))
            bench_means[(arm, bench)] = mean_k
        macro = cells[(arm, "macro", "mean_at_k")]
        assert macro["estimate"] == pytest.approx((bench_means[(arm, "gsm8k")] + bench_means[(arm, "math500")]) / 2)
        assert macro["ci_low"] < macro["estimate"] < macro["ci_high"]


def test_paired_deltas_per_benchmark_and_macro(synthetic):
    records, summary = synthetic
    cells = _by(summary)
    rows = {(r["condition"], r["metric"]): r for r in summary["comparisons"]}
    for bench in ("gsm8k", "math500"):
        r = rows[(bench, "mean_at_k")]
        assert (r["arm_a"], r["arm_b"]) == ("tuned", "base")
        assert r["delta"] == pytest.approx(cells[("tuned", bench, "mean_at_k")]["estimate"]
                                           - cells[("base", bench, "mean_at_k")]["estimate"])
        assert r["test"] == "paired permutation" and rows[(bench, "pass_at_k")]["test"] == "McNemar exact"
    macro = rows[("macro", "mean_at_k")]
    assert macro["delta"] == pytest.approx(cells[("tuned", "macro", "mean_at_k")]["estimate"]
                                           - cells[("base", "macro", "mean_at_k")]["estimate"])
    assert macro["ci_low"] < macro["delta"] < macro["ci_high"] and macro["n_shared"] == 65


def test_macro_ci_is_narrower_than_a_single_benchmark(synthetic):
    _, summary = synthetic
    cells = _by(summary)
    width = {b: cells[("base", b, "mean_at_k")]["ci_high"] - cells[("base", b, "mean_at_k")]["ci_low"]
             for b in ("gsm8k", "math500", "macro")}
    assert width["macro"] < min(width["gsm8k"], width["math500"])


@pytest.mark.parametrize("method, label", [("bca", "BCa"), ("percentile", "percentile")])
def test_the_tables_name_the_interval_method_the_report_used(synthetic, method, label):
    """``harness report --ci-method bca`` computes BCa cells; the notes under the tables say so (the
    macro rows' stratified bootstrap stays percentile)."""
    from plugins.reports.reasoning_tables import ReasoningMainSection, ReasoningPassCurveSection

    records, _ = synthetic
    manifest = {"record_type": "reasoning", "config": {"samples": 4, "seed": 0}, "report": {"B": 300, "method": method}}
    summary = summarize(records, manifest)
    assert {r["ci_method"] for r in summary["metrics"] if r["metric"] == "mean_at_k" and r["condition"] != "macro"} \
        == {method}
    for section in (ReasoningMainSection(), ReasoningPassCurveSection()):
        text = section.render(records, manifest, summary)
        assert f"95% CIs: {label} bootstrap over problems (B=300, seed 0)" in text
        assert (method == "percentile") == ("percentile bootstrap over problems" in text)
        assert ("CI from a percentile bootstrap" in text) == (method == "bca")
