"""harness report: combining runs, paired comparisons recomputed by hand, formats, HTML in a browser."""

import json
import shutil
import subprocess
from collections import defaultdict

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import cli
from tests.helpers import write_chunks

pytest.importorskip("torch")

ARMS = '[arms.tiny-a]\nmodel = "random:tiny-qwen3"\noptions = { seed = 1 }\n' \
       '[arms.tiny-b]\nmodel = "random:tiny-qwen3"\noptions = { seed = 2 }\n'


def _run(tmp_path, arm, out, n=6):
    (tmp_path / "arms.toml").write_text(ARMS)
    data = write_chunks(tmp_path / "d.jsonl", n=8)
    res = CliRunner().invoke(cli, ["run", "--arms-file", str(tmp_path / "arms.toml"), "--arm", arm, "--judge", "lexical",
                                   "--judge-option", "threshold=0.05", "--data-file", str(data), "--limit", str(n),
                                   "--samples", "2", "--thought-max-tokens", "6", "--suffix-max-tokens", "12",
                                   "--intervention", "normal", "--intervention", "blank", "--quiet", "--out", str(out)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    return _run(tmp, "tiny-a", tmp / "a"), _run(tmp, "tiny-b", tmp / "b"), tmp


def _item_means(path, metric):
    acc = defaultdict(list)
    for line in open(path / "samples.jsonl"):
        r = json.loads(line)
        if r[metric] is not None:
            acc[(r["arm"], r["condition"], r["item_id"])].append(r[metric])
    return {k: float(np.mean(v)) for k, v in acc.items()}


def test_two_runs_pair_and_numbers_match_a_recomputation(two_runs):
    a, b, _ = two_runs
    res = CliRunner().invoke(cli, ["report", str(a), str(b), "--format", "json", "--baseline", "tiny-a"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    means = {**_item_means(a, "suffix_logprob"), **_item_means(b, "suffix_logprob")}
    rows = [r for r in rep["comparisons"] if r["kind"] == "arms" and r["metric"] == "suffix_logprob"]
    assert {r["condition"] for r in rows} == {"normal", "blank"}
    for r in rows:
        assert (r["arm_a"], r["arm_b"]) == ("tiny-b", "tiny-a") and r["n_shared"] == 6
        items = sorted({k[2] for k in means})
        diffs = [means[("tiny-b", r["condition"], i)] - means[("tiny-a", r["condition"], i)] for i in items]
        assert r["delta"] == pytest.approx(np.mean(diffs), abs=1e-12)
        assert r["ci_low"] <= r["delta"] <= r["ci_high"] and 0 < r["p_value"] <= 1 and r["p_holm"] >= r["p_value"]
    for m in rep["metrics"]:
        if m["metric"] == "suffix_logprob":
            vals = [v for k, v in means.items() if k[:2] == (m["arm"], m["condition"])]
            assert m["estimate"] == pytest.approx(np.mean(vals), abs=1e-12) and m["n_items"] == 6
            assert m["ci_low"] < m["estimate"] < m["ci_high"]
    md = CliRunner().invoke(cli, ["report", str(a), str(b)]).output
    assert "Arm comparisons (every pair)" in md and "tiny-b - tiny-a" in md


def test_runs_with_different_items_are_refused(two_runs, tmp_path):
    a, _, tmp = two_runs
    other = _run(tmp, "tiny-b", tmp_path / "c", n=5)
    res = CliRunner().invoke(cli, ["report", str(a), str(other)])
    assert res.exit_code == 2 and "items differ" in res.output and str(other) in res.output
    res = CliRunner().invoke(cli, ["report", str(a), "--baseline", "nope"])
    assert res.exit_code == 2 and "tiny-a" in res.output


def test_html_report_is_self_contained_and_renders(two_runs, tmp_path):
    a, b, _ = two_runs
    page = tmp_path / "r.html"
    res = CliRunner().invoke(cli, ["report", str(a), str(b), "--format", "html", "--out", str(page)])
    assert res.exit_code == 0, res.output
    text = page.read_text()
    assert text.count("data:image/png;base64,") >= 4 and "<table>" in text and "http" not in text.split("<body>")[1]
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium not installed (.ci/run installs it); the page was built but not rendered")
    shot = tmp_path / "r.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600", f"--screenshot={shot}",
                    page.as_uri()], check=True, capture_output=True, timeout=120)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # a blank page compresses to a few KB


def _wilson(k, n):
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(method="wilson")
    return ci.low, ci.high


def test_reward_gate_and_win_rate_numbers_match_a_recomputation(two_runs):
    a, b, _ = two_runs
    rep = json.loads(CliRunner().invoke(cli, ["report", str(a), str(b), "--format", "json"]).output)
    recs = [json.loads(line) for p in (a, b) for line in open(p / "samples.jsonl")]
    cells = {(m["arm"], m["condition"], m["metric"]): m for m in rep["metrics"]}
    for arm in ("tiny-a", "tiny-b"):
        for cond in ("normal", "blank"):
            rs = [r for r in recs if (r["arm"], r["condition"]) == (arm, cond)]
            groups = defaultdict(list)
            for r in rs:
                groups[r["item_id"]].append(r["reward"])
            n = len(groups)
            # "near_zero_groups" (no sample rewarded, the study's all-zero) became zero_variance_groups (>= 2 valid
            # verdicts, all equal: the study's near-zero) beside all_zero_groups / all_one_groups; these runs judge
            # every sample (2 per item), so no group has fewer than 2 valid verdicts
            for metric, hit in (("mixed_groups", lambda v: 0 < sum(v) < len(v)),
                                ("zero_variance_groups", lambda v: len(v) >= 2 and sum(v) in (0, len(v))),
                                ("all_zero_groups", lambda v: len(v) >= 2 and sum(v) == 0),
                                ("all_one_groups", lambda v: len(v) >= 2 and min(v) == 1),
                                ("few_valid_groups", lambda v: len(v) < 2),
                                ("any_success", lambda v: max(v) == 1), ("all_success_groups", lambda v: min(v) == 1)):
                k = sum(hit(v) for v in groups.values())
                row = cells[(arm, cond, metric)]
                assert row["estimate"] == k / n and (row["ci_low"], row["ci_high"]) == pytest.approx(_wilson(k, n))
            rewards = [r["reward"] for r in rs]
            # renamed from reward_std: it is pooled over samples, unlike the item-mean reward beside it
            std = cells[(arm, cond, "reward_std_pooled")]
            assert std["estimate"] == pytest.approx(np.std(rewards), abs=1e-12)
            assert std["ci_low"] <= std["estimate"] <= std["ci_high"] or np.std(rewards) == 0
            tokens = cells[(arm, cond, "avg_new_tokens")]
            assert tokens["estimate"] == pytest.approx(np.mean([r["thought_tokens"] + r["suffix_tokens"] for r in rs]))
            words = cells[(arm, cond, "avg_suffix_words")]
            assert words["estimate"] == pytest.approx(np.mean([len(r["suffix"].split()) for r in rs]))
            reward = cells[(arm, cond, "reward")]
            if reward["estimate"] == 0:  # all items scored 0: the Wilson bound of 0 of n items, not [0, 0]
                assert (reward["ci_low"], reward["ci_high"]) == pytest.approx(_wilson(0, n))
    means = {**_item_means(a, "suffix_logprob"), **_item_means(b, "suffix_logprob")}
    for r in rep["comparisons"]:
        if r["kind"] == "arms" and r["metric"] == "suffix_logprob":
            d = [means[("tiny-b", r["condition"], i)] - means[("tiny-a", r["condition"], i)]
                 for i in sorted({k[2] for k in means})]
            for key, k in (("a_better", sum(x > 0 for x in d)), ("b_better", sum(x < 0 for x in d)),
                           ("tie", sum(x == 0 for x in d))):
                assert r[key] == k / len(d) and r[f"{key}_ci"] == pytest.approx(list(_wilson(k, len(d))))


def test_constant_reward_cell_gets_a_wilson_bound():
    from reports.compare import item_mean_ci

    opts = {"B": 1000, "seed": 0, "alpha": 0.05, "method": "percentile", "clusters": "auto"}
    zero = item_mean_ci({f"i{k}": [0.0, 0.0] for k in range(20)}, opts, {}, binary=True)
    assert zero["estimate"] == 0 and zero["ci_low"] == 0 and zero["ci_high"] == pytest.approx(_wilson(0, 20)[1])
    assert zero["ci_high"] > 0.1 and "wilson" in zero["ci_method"]
    flat = item_mean_ci({f"i{k}": [3.0] for k in range(5)}, opts, {}, binary=False)
    assert flat["degenerate"] and flat["ci_low"] == flat["ci_high"] == 3.0


def test_pairing_rules_on_plain_data():
    """reports.combine decides on records, manifests and item fingerprints alone (no run directory)."""
    from reports.combine import CombineError, RunData, combine

    def run(name, arm, judge="lexical", items=None, record_type="probe", **config):
        manifest = {"record_type": record_type, "config": {"arms": [{"name": arm}], "judge": judge, "samples": 2,
                                                           **config}}
        records = [{"arm": arm, "condition": "normal", "item_id": i} for i in (items or {"c0": "h0", "c1": "h1"})]
        return RunData(name, manifest, records, items or {"c0": "h0", "c1": "h1"})

    records, manifest = combine([run("A", "x"), run("B", "y", samples=4)])
    assert len(records) == 4 and [a["name"] for a in manifest["config"]["arms"]] == ["x", "y"]
    assert manifest["runs"] == ["A", "B"] and manifest["differences"] == {"samples": {"A": 2, "B": 4}}
    one = run("A", "x")
    records, manifest = combine([one])
    assert records == one.records and manifest["runs"] == ["A"] and manifest["differences"] == {}
    refusals = {
        "items differ (only in A: c1; only in B: c2)": run("B", "y", items={"c0": "h0", "c2": "h2"}),
        "items differ (different text: c1)": run("B", "y", items={"c0": "h0", "c1": "other"}),
        "judged differently": run("B", "y", judge="embedding"),
        "B holds reasoning records but A holds probe records": run("B", "y", record_type="reasoning"),
        "arm 'x', condition 'normal' appears in both A and B": run("B", "x"),
    }
    for message, other in refusals.items():
        with pytest.raises(CombineError) as err:
            combine([run("A", "x"), other])
        assert message in err.value.message and err.value.exit_code == 2
