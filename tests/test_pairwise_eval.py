"""The pairwise eval end to end on the tiny random model (two arms of it): records, every summary
number recomputed from samples.jsonl, resume and same-seed reruns, the judge's position
diagnostics with a judge that always answers "first", invalid verdicts and failed judge calls
(never a vote), the two-stage thought path, the embedding judge's compare(), and bad inputs."""

import json
import shutil
import sys
import types
from collections import defaultdict

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from harness import plugins
from harness.cli import cli
from harness.errors import BadInput
from harness.hookspecs import hookimpl
from harness.types import Comparison, Verdict
from reports import paired_stats as ps

pytest.importorskip("torch")

ARMS = ["--arm", "tiny-qwen3", "--arm", "random:tiny-qwen3"]
SMALL = ["--limit", "3", "--samples", "2", "--suffix-max-tokens", "6", "--quiet"]
B, SEED, ALPHA = 10_000, 0, 0.05
DOPPLER = "When a source of sound"  # the first packaged item's prefix starts so


def _run(out, *extra, arms=ARMS, small=SMALL):
    return CliRunner().invoke(cli, ["run", "--plugin", "pairwise", *arms, *small, "--out", str(out), *extra])


def _ok(res):
    assert res.exit_code == 0, res.output
    return res.output


def _records(out, kind=None):
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    return [r for r in rows if kind is None or r["kind"] == kind]


def _key(r):
    return r["kind"], r["arm"], r["condition"], r["item_id"], r["sample"]


def _summary(out):
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """Two arms and the true suffix (three pairs), 3 items x 2 samples, the embedding judge."""
    out = tmp_path_factory.mktemp("pairwise") / "run"
    _ok(_run(out, "--option", "original=true"))
    return out


# -- records ----------------------------------------------------------------------------------

def test_records_hold_both_continuations_and_both_verdicts(run_dir):
    conts, pairs = _records(run_dir, "continuation"), _records(run_dir, "pair")
    assert len(conts) == 2 * 3 * 2 and len(pairs) == 3 * 3 * 2
    keys = [_key(r)[1:] for r in conts + pairs]
    assert len(set(keys)) == len(keys), "(arm, condition, item, sample) must be unique"
    assert {(r["arm_a"], r["arm_b"]) for r in pairs} == {("tiny-qwen3", "random:tiny-qwen3"),
                                                         ("tiny-qwen3", "original"), ("random:tiny-qwen3", "original")}
    text = {(r["arm"], r["item_id"], r["sample"]): r["suffix"] for r in conts}
    items = {json.loads(line)["id"]: json.loads(line) for line in (run_dir / "items.jsonl").read_text().splitlines()}
    for r in pairs:
        assert r["arm"] == r["arm_a"] and r["condition"] == r["arm_b"]
        assert r["suffix_a"] == text[(r["arm_a"], r["item_id"], r["sample"])]
        assert r["suffix_b"] == (items[r["item_id"]]["suffix"] if r["arm_b"] == "original"
                                 else text[(r["arm_b"], r["item_id"], r["sample"])])
        for side in ("ab", "ba"):  # both orders kept
            assert r[f"score_{side}"] in (0.0, 0.5, 1.0) and r[f"invalid_{side}"] is False and r[f"raw_{side}"]
        a_first, a_second = r["score_ab"], 1 - r["score_ba"]
        assert r["consistent"] == (a_first == a_second)
        assert r["a_score"] == (a_first if a_first == a_second else 0.5)
    assert all(r["suffix_tokens"] <= 6 and r["thought"] is None for r in conts)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["record_type"] == "pairwise" and manifest["config"]["temperature"] == 1.0
    assert manifest["config"]["top_p"] == 0.95 and manifest["config"]["judge"]["name"] == "embedding"


def test_the_embedding_judge_prefers_the_true_suffix_over_any_rollout(run_dir):
    for r in _records(run_dir, "pair"):
        if r["arm_b"] == "original":  # the true suffix's cosine with itself is 1
            assert r["outcome"] == "loss" and r["score_ab"] == 0.0 and r["score_ba"] == 1.0


# -- every summary number from samples.jsonl --------------------------------------------------

def _clusters(ids, cluster):
    keys = [cluster[i] for i in ids]
    distinct = len(set(keys))
    return keys if 2 <= distinct < len(keys) else None  # --clusters auto: some source holds two items


def _item_ci(per_item, cluster, binary=True):
    ids = sorted(per_item)
    means = [sum(per_item[i]) / len(per_item[i]) for i in ids]
    keys = _clusters(ids, cluster)
    ci = ps.bootstrap_ci(means, B=B, seed=SEED, clusters=keys, keys=ids)
    if ci["degenerate"] and binary and ci["estimate"] in (0.0, 1.0):
        w = ps.wilson(int(ci["estimate"]) * len(ids), len(ids))
        return float(np.mean(means)), w["ci_low"], w["ci_high"]
    return float(np.mean(means)), ci["ci_low"], ci["ci_high"]


def _by_hand(records):
    """Each pair's numbers from its records, with scipy and numpy only where it is arithmetic."""
    cluster = {r["item_id"]: r["cluster"] for r in records}
    grouped = defaultdict(list)
    for r in records:
        if r["kind"] == "pair":
            grouped[(r["arm_a"], r["arm_b"])].append(r)
    out = {}
    for pair, rows in grouped.items():
        wins = sum(r["score_ab"] == 1 and r["score_ba"] == 0 for r in rows)
        losses = sum(r["score_ab"] == 0 and r["score_ba"] == 1 for r in rows)
        invalid = sum(r["invalid_ab"] or r["invalid_ba"] for r in rows)
        ties = len(rows) - wins - losses - invalid
        shares = defaultdict(list)
        decided = defaultdict(lambda: [0, 0])
        for r in rows:
            if r["invalid_ab"] or r["invalid_ba"]:
                continue
            s = r["score_ab"] if r["score_ab"] == 1 - r["score_ba"] else 0.5
            shares[r["item_id"]].append(s)
            if s != 0.5:
                decided[r["item_id"]][0] += s == 1
                decided[r["item_id"]][1] += 1
        item_share = {i: sum(v) / len(v) for i, v in shares.items()}
        n_a = sum(v > 0.5 for v in item_share.values())
        n_b = sum(v < 0.5 for v in item_share.values())
        p = stats.binomtest(n_a, n_a + n_b, 0.5).pvalue if n_a + n_b else 1.0
        wilson = stats.binomtest(wins, wins + losses).proportion_ci(method="wilson") if wins + losses else None
        both = [r for r in rows if not (r["invalid_ab"] or r["invalid_ba"])]
        singles = [r[f"score_{x}"] for r in rows for x in ("ab", "ba") if not r[f"invalid_{x}"]]
        ids = sorted(decided)
        hits, total = sum(decided[i][0] for i in ids), sum(decided[i][1] for i in ids)
        if hits in (0, total):
            w = ps.wilson(len(ids) if hits else 0, len(ids))
            boot = (w["ci_low"], w["ci_high"])
        else:
            m = ps.bootstrap_means_matrix(np.array([decided[i] for i in ids], float), B=B, seed=SEED,
                                          clusters=_clusters(ids, cluster), keys=ids)
            boot = tuple(np.quantile(m[:, 0] / m[:, 1], [0.025, 0.975]))
        out[pair] = {
            "wins": wins, "ties": ties, "losses": losses, "invalid": invalid, "comparisons": len(rows),
            "items": len({r["item_id"] for r in rows}),
            "share": _item_ci(shares, cluster),
            "decided_text": f"{wins}/{wins + losses} = {100 * wins / (wins + losses):.2f} %" if wins + losses else "-",
            "wilson": None if wilson is None else (wilson.low, wilson.high), "decided_boot": boot,
            "sign": (n_a, n_b, len(item_share) - n_a - n_b, p),
            "consistency": (sum(r["score_ab"] == 1 - r["score_ba"] for r in both), len(both)),
            "first": (sum(s == 1 for s in singles), sum(s != 0.5 for s in singles)),
        }
    # Holm across pairs, by hand: sorted p-values times (m - rank), running max, capped at 1
    order = sorted(out, key=lambda k: out[k]["sign"][3])
    running = 0.0
    for rank, k in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * out[k]["sign"][3]))
        out[k]["holm"] = running
    return out


def _close(got, want):
    assert got == pytest.approx(want, abs=1e-12), (got, want)


def test_every_summary_number_equals_a_recomputation_from_the_records(run_dir):
    records, summary = _records(run_dir), _summary(run_dir)
    hand = _by_hand(records)
    assert [(p["arm_a"], p["arm_b"]) for p in summary["pairs"]] == [
        ("tiny-qwen3", "random:tiny-qwen3"), ("tiny-qwen3", "original"), ("random:tiny-qwen3", "original")]
    for p in summary["pairs"]:
        h = hand[(p["arm_a"], p["arm_b"])]
        for key in ("wins", "ties", "losses", "invalid", "comparisons", "items", "decided_text"):
            assert p[key] == h[key], key
        assert p["decided"] == p["wins"] + p["losses"] and p["valid"] == p["comparisons"] - p["invalid"]
        for got, want in zip((p["win_share"][k] for k in ("estimate", "ci_low", "ci_high")), h["share"]):
            _close(got, want)
        if h["wilson"] is not None:
            _close(p["decided_rate"], p["wins"] / p["decided"])
            _close(p["decided_wilson"][0], h["wilson"][0])
            _close(p["decided_wilson"][1], h["wilson"][1])
        _close(p["decided_bootstrap"]["ci_low"], h["decided_boot"][0])
        _close(p["decided_bootstrap"]["ci_high"], h["decided_boot"][1])
        t = p["sign_test"]
        assert (t["a_items"], t["b_items"], t["tied_items"]) == h["sign"][:3]
        _close(t["p_value"], h["sign"][3])
        _close(p["p_holm"], h["holm"])
        pc, fp = p["position_consistency"], p["first_position_wins"]
        assert (pc["k"], pc["n"]) == h["consistency"] and (fp["k"], fp["n"]) == h["first"]
        w = stats.binomtest(pc["k"], pc["n"]).proportion_ci(method="wilson")
        _close(pc["ci"][0], 0.0 if pc["k"] == 0 else w.low)
        _close(pc["ci"][1], 1.0 if pc["k"] == pc["n"] else w.high)
    # the judge's diagnostics over all pairs are the sums
    j = summary["judge"]
    assert j["position_consistency"]["k"] == sum(h["consistency"][0] for h in hand.values())
    assert j["first_position_wins"]["n"] == sum(h["first"][1] for h in hand.values())
    # MetricRows and ComparisonRows carry the same numbers
    rows = {(m["arm"], m["condition"], m["metric"]): m for m in summary["metrics"]}
    comps = {(c["arm_a"], c["arm_b"]): c for c in summary["comparisons"]}
    for p in summary["pairs"]:
        share = rows[(p["arm_a"], p["arm_b"], "win_share")]
        assert share["estimate"] == p["win_share"]["estimate"] and share["ci_low"] == p["win_share"]["ci_low"]
        assert rows[(p["arm_a"], p["arm_b"], "decided_win_rate")]["count"] == p["wins"]
        c = comps[(p["arm_a"], p["arm_b"])]
        _close(c["delta"], p["win_share"]["estimate"] - 0.5)
        assert c["p_value"] == p["sign_test"]["p_value"] and c["p_holm"] == p["p_holm"]
    # continuation lengths and truncation per arm
    cluster = {r["item_id"]: r["cluster"] for r in records}
    for arm in ("tiny-qwen3", "random:tiny-qwen3"):
        per_item = defaultdict(list)
        cut = defaultdict(list)
        for r in records:
            if r["kind"] == "continuation" and r["arm"] == arm:
                per_item[r["item_id"]].append(float(r["suffix_tokens"]))
                cut[r["item_id"]].append(float(r["finish_reason"] == "length"))
        got = rows[(arm, "continuation", "suffix_tokens")]
        want = _item_ci(per_item, cluster, binary=False)
        _close(got["estimate"], want[0])
        if got["ci_low"] is not None:
            _close(got["ci_low"], want[1])
        _close(rows[(arm, "continuation", "truncated")]["estimate"], _item_ci(cut, cluster)[0])


def test_report_and_console_show_the_tables(run_dir):
    report = (run_dir / "report.md").read_text()
    assert "## Pairwise continuation quality (judge embedding)" in report and "## Judge diagnostics" in report
    assert "## Continuations" in report
    s = _summary(run_dir)
    for p in s["pairs"]:
        assert p["decided_text"] in report
    out = _ok(CliRunner().invoke(cli, ["report", str(run_dir), "--format", "json"]))
    assert {m["metric"] for m in json.loads(out)["metrics"]} >= {"win_share", "decided_win_rate"}


# -- reruns -----------------------------------------------------------------------------------

def test_same_seed_same_records_and_a_cut_run_resumes_to_them(run_dir, tmp_path):
    whole = sorted(_records(run_dir), key=_key)
    again = tmp_path / "again"
    _ok(_run(again, "--option", "original=true"))
    assert sorted(_records(again), key=_key) == whole
    out = _ok(_run(again, "--option", "original=true"))
    assert "0 new records" in out  # nothing left to do: no generation, no judging
    for keep in (len(whole) - 5, 3):  # cut inside the judging, then inside the generation
        cut = tmp_path / f"cut{keep}"
        shutil.copytree(run_dir, cut)
        lines = (cut / "samples.jsonl").read_text().splitlines(keepends=True)
        (cut / "samples.jsonl").write_text("".join(lines[:keep]))
        out = _ok(_run(cut, "--option", "original=true"))
        assert "resuming" in out and f"{len(whole) - keep} new records" in out
        assert sorted(_records(cut), key=_key) == whole


# -- judges: position bias, invalid verdicts, failed calls ------------------------------------

class _EP:
    def __init__(self, module):
        self.name = self.value = module.__name__
        self.dist = types.SimpleNamespace(name="harness-pairwise-test-judges", version="0.1")
        self._module = module

    def load(self):
        return self._module


def _judge(name, decide):
    """A judge plugin class whose ``compare`` answers ``decide(comparison, call)`` per comparison
    (``call`` counts calls, across instances)."""
    calls = {"n": 0}

    def compare(self, comparisons):
        calls["n"] += 1
        return [decide(c, calls["n"]) for c in comparisons]

    return type(name.title(), (), {
        "name": name, "description": f"pairwise test judge {name}", "calls": calls,
        "__init__": lambda self, options=None, arms=None: None, "config": lambda self: {"name": name},
        "judge": lambda self, pairs: [Verdict(reward=0, score=0.0) for _ in pairs], "compare": compare})


@pytest.fixture
def install_judges(monkeypatch):
    def install(*classes):
        mod = types.ModuleType("pairwise_test_judges")

        def register_judges(register):
            for cls in classes:
                register(cls)

        mod.register_judges = hookimpl(register_judges)
        sys.modules[mod.__name__] = mod
        monkeypatch.setattr(plugins, "_entry_points", lambda: [_EP(mod)])
        plugins.reset()
    return install


def _first(c, call):
    return Verdict(reward=1, score=1.0, raw="first")


def test_a_judge_that_always_answers_first_is_all_ties_and_fully_position_biased(tmp_path, install_judges):
    install_judges(_judge("first", _first))
    out = tmp_path / "first"
    _ok(_run(out, "--judge", "first"))
    pairs = _records(out, "pair")
    assert len(pairs) == 6 and all(r["outcome"] == "tie" and r["consistent"] is False for r in pairs)
    (p,) = _summary(out)["pairs"]
    assert (p["wins"], p["ties"], p["losses"], p["invalid"]) == (0, 6, 0, 0)
    assert p["win_share"]["estimate"] == 0.5 and p["decided"] == 0 and p["decided_text"] == "-"
    assert p["sign_test"]["tied_items"] == 3 and p["sign_test"]["p_value"] == 1.0
    assert p["position_consistency"] == {"k": 0, "n": 6, "rate": 0.0, "ci": pytest.approx(
        [0.0, stats.binomtest(0, 6).proportion_ci(method="wilson").high])}
    fp = p["first_position_wins"]
    assert (fp["k"], fp["n"], fp["rate"]) == (12, 12, 1.0)
    assert "0/6 = 0.00 %" in (out / "report.md").read_text() and "12/12 = 100.00 %" in (out / "report.md").read_text()


def _lexical_order(c, call):
    """Prefers the text that sorts later (position-consistent); on the Doppler item the order
    with the later text first is invalid, so that item is left out."""
    if c.prefix.startswith(DOPPLER) and c.first > c.second:
        return Verdict(reward=None, invalid=True, raw="no idea")
    if c.first == c.second:
        return Verdict(reward=0, score=0.5)
    won = c.first > c.second
    return Verdict(reward=int(won), score=float(won), raw="A" if won else "B")


def test_an_invalid_verdict_in_either_order_leaves_the_comparison_out(tmp_path, install_judges):
    install_judges(_judge("order", _lexical_order))
    out = tmp_path / "order"
    _ok(_run(out, "--judge", "order"))
    pairs = _records(out, "pair")
    for r in pairs:
        if r["item_id"] == "doppler-effect":
            assert r["outcome"] == "invalid" and r["a_score"] is None and r["invalid_ab"] != r["invalid_ba"]
        else:
            want = "win" if r["suffix_a"] > r["suffix_b"] else "loss" if r["suffix_a"] < r["suffix_b"] else "tie"
            assert r["outcome"] == want and r["consistent"] is True
    (p,) = _summary(out)["pairs"]
    assert p["invalid"] == 2 and p["invalid_verdicts"] == 2 and p["win_share"]["n_items"] == 2
    assert p["wins"] == sum(r["outcome"] == "win" for r in pairs) and p["judge_errors"] == 0
    assert p["position_consistency"] == {"k": 4, "n": 4, "rate": 1.0, "ci": pytest.approx(
        [stats.binomtest(4, 4).proportion_ci(method="wilson").low, 1.0])}


def _fails_first(c, call):
    if call == 1:
        raise ConnectionError("judge server went away")
    return _lexical_order(c, call) if not c.prefix.startswith(DOPPLER) else Verdict(reward=1, score=1.0)


def _always_fails(c, call):
    raise RuntimeError("judge exploded")


def test_failed_judge_calls_are_retried_then_invalid_never_a_vote(tmp_path, install_judges):
    retried, broken = _judge("retried", _fails_first), _judge("broken", _always_fails)
    install_judges(retried, broken)
    _ok(_run(tmp_path / "retried", "--judge", "retried"))
    assert retried.calls["n"] == 2  # one chunk: a failed call, then the retry
    assert all(r["outcome"] != "invalid" and r["error_ab"] is None for r in _records(tmp_path / "retried", "pair"))
    out = _ok(_run(tmp_path / "broken", "--judge", "broken"))
    assert broken.calls["n"] == 3 and "failed 3 times" in out
    pairs = _records(tmp_path / "broken", "pair")
    assert all(r["outcome"] == "invalid" and r["a_score"] is None and "judge exploded" in r["error_ab"]
               for r in pairs)
    (p,) = _summary(tmp_path / "broken")["pairs"]
    assert (p["wins"], p["ties"], p["losses"], p["invalid"], p["judge_errors"]) == (0, 0, 0, 6, 12)
    assert p["win_share"]["estimate"] is None and p["decided_text"] == "-"


def test_a_compare_that_breaks_its_contract_stops_the_run(tmp_path, install_judges):
    install_judges(_judge("half", lambda c, call: Verdict(reward=None, score=None)))
    res = _run(tmp_path / "half", "--judge", "half")
    assert res.exit_code == 1 and "compare() returned score=None for comparison 0" in res.output
    assert _records(tmp_path / "half", "pair") == [] and len(_records(tmp_path / "half")) == 12  # continuations kept


# -- two-stage thought path, one arm against the true suffix ----------------------------------

def test_thought_path_reuses_the_probe_thoughts_and_stage_two_token_ids(tmp_path):
    small = ["--limit", "2", "--samples", "2", "--suffix-max-tokens", "6", "--thought-max-tokens", "4", "--quiet"]
    keyword = ["--judge", "keyword", "--judge-option", "words=e", "--judge-option", "match=substring"]
    out = tmp_path / "thought"
    _ok(_run(out, "--option", "thought=true", "--option", "original=true", *keyword, arms=["--arm", "tiny-qwen3"],
             small=small))
    conts, pairs = _records(out, "continuation"), _records(out, "pair")
    assert len(conts) == 4 and len(pairs) == 4 and {r["arm_b"] for r in pairs} == {"original"}
    thoughts = [json.loads(line) for line in (out / "thoughts.jsonl").read_text().splitlines()]
    assert len(thoughts) == 4 and {t["condition"] for t in thoughts} == {"normal"}
    gate = tmp_path / "gate"
    _ok(CliRunner().invoke(cli, ["run", "--plugin", "reward_gate", "--arm", "tiny-qwen3", *small, *keyword,
                                 "--out", str(gate)]))
    gate_thoughts = [json.loads(line) for line in (gate / "thoughts.jsonl").read_text().splitlines()]
    key = lambda t: (t["item_id"], t["sample"])  # noqa: E731
    assert sorted(thoughts, key=key) == sorted(gate_thoughts, key=key)
    gate_suffix = {(r["item_id"], r["sample"]): r for r in _records(gate)}
    for r in conts:  # same seeds, same prompt ids (prefix, open tag, thought, close tag): same continuation
        g = gate_suffix[(r["item_id"], r["sample"])]
        assert (r["suffix"], r["suffix_tokens"], r["seed"], r["thought"]) == (g["suffix"], g["suffix_tokens"],
                                                                              g["seed"], g["thought"])


# -- the embedding judge's compare() ----------------------------------------------------------

def test_embedding_compare_prefers_the_continuation_closer_to_the_true_suffix():
    from plugins.judges.embedding import EmbeddingJudge

    near, far, ref = "the cat sat on the mat", "quarks carry colour charge", "a cat was sitting on a mat"
    judge = EmbeddingJudge({})
    v = judge.compare([Comparison("p", near, far, ref), Comparison("p", far, near, ref),
                       Comparison("p", near, near, ref)])
    assert [x.score for x in v] == [1.0, 0.0, 0.5] and [x.reward for x in v] == [1, 0, 0]
    assert all(x.invalid is False and x.raw.startswith("cos first") for x in v)
    assert "tie_margin" not in judge.config()  # configs from before the option stay the same
    wide = EmbeddingJudge({"tie_margin": "2"})
    assert [x.score for x in wide.compare([Comparison("p", near, far, ref)])] == [0.5]
    assert wide.config()["tie_margin"] == 2.0
    with pytest.raises(BadInput, match="no reference"):
        judge.compare([Comparison("p", near, far)])
    with pytest.raises(BadInput):
        EmbeddingJudge({"tie_margin": "-1"})


# -- bad input: one line, exit 2, nothing written ---------------------------------------------

@pytest.mark.parametrize("args,needle", [
    (["--arm", "tiny-qwen3"], "compares at least two candidates"),
    (ARMS + ["--judge", "lexical"], "judge 'lexical' cannot compare two continuations; judges that can: "),
    (ARMS + ["--intervention", "normal"], "takes no --intervention"),
    (ARMS + ["--option", "thought=maybe"], "thought='maybe' is not true or false"),
    (ARMS + ["--option", "question=why"], "unknown option 'question'"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, needle):
    out = tmp_path / "bad"
    res = CliRunner().invoke(cli, ["run", "--plugin", "pairwise", *args, "--limit", "2", "--quiet", "--out", str(out)])
    lines = [line for line in res.output.splitlines() if line.strip() and not line.startswith(("new run", "Loading"))]
    assert res.exit_code == 2 and len(lines) == 1 and needle in lines[0], res.output
    assert not out.exists()


def test_check_setup_refuses_what_cannot_be_compared():
    """What a runner could call before it opens the store; the eval's run() calls it first thing."""
    from harness.types import Arm, Item
    from plugins.evals.pairwise import Pairwise
    from plugins.judges.embedding import EmbeddingJudge
    from plugins.judges.lexical import LexicalJudge

    one, two = [Arm("a", "random:tiny-qwen3")], [Arm("a", "random:tiny-qwen3"), Arm("b", "random:tiny-qwen3")]
    items = [Item("x", "a prefix", "")]
    judge = EmbeddingJudge({})
    Pairwise.check_setup(one, judge, {"options": {"original": "true"}})  # one arm against the true suffix
    Pairwise.check_setup(two, judge, {"options": {}}, items)  # no true suffix needed without original
    for arms, j, config, needle in [
            (one, judge, {"options": {}}, "at least two candidates"),
            (two, LexicalJudge({}), {"options": {}, "judge": {"name": "lexical"}}, "cannot compare"),
            (two, judge, {"options": {"original": "true"}}, "has no true suffix"),
            ([Arm("original", "random:tiny-qwen3"), two[0]], judge, {"options": {"original": "true"}}, "reserved"),
            ([Arm("continuation", "random:tiny-qwen3"), two[0]], judge, {"options": {}}, "reserved")]:
        with pytest.raises(BadInput, match=needle):
            Pairwise.check_setup(arms, j, config, items)
