"""``harness rejudge``: a run's stored generations judged again into a new run, without generating;
the verdict cache; ``harness report OLD NEW`` pairing two judges (recomputed here by hand)."""

import itertools
import json
import shutil
import signal
import subprocess
import sys
import textwrap
import types
from pathlib import Path
import numpy as np
import pytest
from click.testing import CliRunner

from harness import plugins
from harness.cli import cli
from harness.hookspecs import hookimpl
from harness.types import JudgePair, Verdict

pytest.importorskip("torch")

JUDGE_FIELDS = {"reward", "judge_score", "judge_invalid", "judge_raw"}
SMALL = ["--arm", "tiny-qwen3", "--quiet", "--limit", "4", "--samples", "2", "--suffix-max-tokens", "6"]


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _ok(res):
    assert res.exit_code == 0, res.output
    return res.output


def _rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _key(r):
    return r["arm"], r["condition"], r["item_id"], r["sample"]


def _keyed(run):
    return {_key(r): r for r in _rows(Path(run) / "samples.jsonl")}


def _snapshot(run):
    return {p.name: p.read_bytes() for p in Path(run).iterdir() if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory):
    """A thought-probe run judged by ``lexical`` (4 items x 2 samples x 2 conditions)."""
    out = tmp_path_factory.mktemp("probe") / "run"
    _ok(_invoke("run", "--plugin", "thought_probe", *SMALL, "--thought-max-tokens", "4", "--intervention", "normal",
                "--intervention", "blank", "--judge", "lexical", "--out", out))
    return out


@pytest.fixture(scope="module")
def pairwise_run(tmp_path_factory):
    """A pairwise run (tiny-qwen3 vs the true suffix) judged by ``keyword``."""
    out = tmp_path_factory.mktemp("pairwise") / "run"
    _ok(_invoke("run", "--plugin", "pairwise", *SMALL, "--option", "original=true", "--judge", "keyword",
                "--judge-option", "words=e", "--judge-option", "match=substring", "--out", out))
    return out


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "verdicts"
    monkeypatch.setenv("HARNESS_VERDICT_CACHE", str(path))
    return path


@pytest.fixture
def no_backends(monkeypatch):
    """Every backend class refuses to be constructed or to generate."""
    def boom(*args, **kwargs):
        raise AssertionError("a rejudge created a backend or generated")

    for cls in plugins.registry("backends").classes.values():
        monkeypatch.setattr(cls, "__init__", boom)
        monkeypatch.setattr(cls, "generate", boom, raising=False)


class _EP:
    def __init__(self, module):
        self.name = self.value = module.__name__
        self.dist = types.SimpleNamespace(name="harness-rejudge-test-judges", version="0.1")
        self._module = module

    def load(self):
        return self._module


@pytest.fixture
def install_judges(monkeypatch):
    def install(*classes):
        mod = types.ModuleType("rejudge_test_judges")
        mod.register_judges = hookimpl(lambda register: [register(cls) for cls in classes])
        sys.modules[mod.__name__] = mod
        monkeypatch.setattr(plugins, "_entry_points", lambda: [_EP(mod)])
        plugins.reset()
    return install


def _length_verdict(text):
    """Content-based: invalid when the text's length is a multiple of 3, else reward = length odd."""
    n = len(text)
    if n % 3 == 0:
        return Verdict(reward=None, score=None, invalid=True, raw=f"len {n}")
    return Verdict(reward=n % 2, score=n / 100, raw=f"len {n}")


class Counting:
    """A judge that counts what it is asked, across instances; ``fail`` makes a call raise."""

    name = "counting"
    description = "test judge: verdict from the predicted text's length; counts calls"
    calls = {"judge": 0, "pairs": 0, "compare": 0, "comparisons": 0, "fail": 0}

    def __init__(self, options=None, arms=None):
        pass

    def config(self):
        return {"name": self.name}

    def judge(self, pairs):
        if self.calls["fail"]:
            self.calls["fail"] -= 1
            raise RuntimeError("judge server down")
        self.calls["judge"] += 1
        self.calls["pairs"] += len(pairs)
        return [_length_verdict(p.predicted) for p in pairs]

    def compare(self, comparisons):
        self.calls["compare"] += 1
        self.calls["comparisons"] += len(comparisons)
        if self.calls["fail"]:
            raise RuntimeError("judge server down")
        return [Verdict(reward=int(len(c.first) > len(c.second)), score=float(len(c.first) > len(c.second)))
                for c in comparisons]


@pytest.fixture
def counting(install_judges):
    Counting.calls.update(judge=0, pairs=0, compare=0, comparisons=0, fail=0)
    install_judges(Counting)
    return Counting.calls


# -- no generation, the same generations, new verdicts ---------------------------------------

def test_rejudge_generates_nothing_keeps_every_generation_and_replaces_the_verdicts(
        probe_run, tmp_path, cache, no_backends):
    from plugins.judges.lexical import rouge_l_f

    before = _snapshot(probe_run)
    out = tmp_path / "new"
    text = _ok(_invoke("rejudge", probe_run, "--judge", "lexical", "--judge-option", "threshold=0.001", "--out", out,
                       "--quiet"))
    assert "no generation" in text and "16 of 16 records" in text
    assert _snapshot(probe_run) == before  # the source is never changed
    old, new = _keyed(probe_run), _keyed(out)
    assert old.keys() == new.keys() and len(_rows(out / "samples.jsonl")) == 16
    items = {r["id"]: r for r in _rows(probe_run / "items.jsonl")}
    for k, r in new.items():
        assert {f: v for f, v in r.items() if f not in JUDGE_FIELDS} == \
            {f: v for f, v in old[k].items() if f not in JUDGE_FIELDS}  # thought, suffix, log-lik, seed, ...
        f = rouge_l_f(r["suffix"], items[r["item_id"]]["suffix"])
        assert r["judge_score"] == round(f, 6) and r["reward"] == int(f >= 0.001) and r["judge_invalid"] is False
    assert _rows(out / "thoughts.jsonl") == _rows(probe_run / "thoughts.jsonl")
    assert (out / "items.jsonl").read_text() == (probe_run / "items.jsonl").read_text()
    src, m = (json.loads((d / "manifest.json").read_text()) for d in (probe_run, out))
    assert m["rejudged_from"]["path"] == str(probe_run.resolve())
    assert m["rejudged_from"]["config_hash"] == src["config_hash"] == m["config"]["rejudged_from"]
    assert m["config"]["judge"] == {"name": "lexical", "threshold": 0.001}
    assert m["record_type"] == src["record_type"] and m["item_ids"] == src["item_ids"]

    def bare(cfg):
        return {k: v for k, v in dict(cfg, plugins={p: x for p, x in cfg["plugins"].items() if p != "judge"}).items()
                if k not in ("judge", "rejudged_from")}

    assert bare(m["config"]) == bare(src["config"])
    assert m["invocations"][-1]["generated_tokens"] == 0 and m["invocations"][-1]["rejudge"]["judged"] == 16
    assert (out / "report.md").exists() and (out / "summary.json").exists()
    guard = _invoke("run", "--plugin", "thought_probe", *SMALL, "--judge", "lexical", "--out", tmp_path / "gen")
    assert isinstance(guard.exception, AssertionError)  # the guard above does stop a generation


def test_rejudging_with_the_runs_own_judge_reproduces_its_records(probe_run, pairwise_run, tmp_path, cache,
                                                                   no_backends):
    _ok(_invoke("rejudge", probe_run, "--judge", "lexical", "--out", tmp_path / "same", "--quiet"))
    assert _keyed(tmp_path / "same") == _keyed(probe_run)
    _ok(_invoke("rejudge", pairwise_run, "--judge", "keyword", "--judge-option", "words=e", "--judge-option",
                "match=substring", "--out", tmp_path / "pairs", "--quiet"))
    assert _keyed(tmp_path / "pairs") == _keyed(pairwise_run)


def test_pairwise_rejudge_compares_the_stored_continuations_in_both_orders(
        pairwise_run, tmp_path, cache, counting, no_backends):
    out = tmp_path / "new"
    _ok(_invoke("rejudge", pairwise_run, "--judge", "counting", "--out", out, "--quiet"))
    old, new = _keyed(pairwise_run), _keyed(out)
    assert old.keys() == new.keys()
    pairs = [r for r in new.values() if r["kind"] == "pair"]
    assert len(pairs) == 8 and counting["comparisons"] == 16  # both orders of every pair
    for k, r in new.items():
        if r["kind"] == "continuation":
            assert r == old[k]
            continue
        a, b = len(r["suffix_a"]), len(r["suffix_b"])
        assert (r["score_ab"], r["score_ba"]) == (float(a > b), float(b > a))
        assert r["suffix_a"] == old[k]["suffix_a"] and r["suffix_b"] == old[k]["suffix_b"]
        assert r["outcome"] == ("win" if a > b else "loss" if b > a else "tie")
    report = _ok(_invoke("report", pairwise_run, out, "--resamples", "200"))
    assert "tiny-qwen3 [keyword]" in report and "tiny-qwen3 [counting]" in report and "Judges compared" in report


# -- the paired report of two judges, by hand ------------------------------------------------

def test_report_pairs_two_judges_and_its_numbers_recompute_by_hand(probe_run, tmp_path, cache):
    new = tmp_path / "emb"
    _ok(_invoke("rejudge", probe_run, "--judge", "embedding", "--out", new, "--quiet"))
    B = 2000
    md = _ok(_invoke("report", probe_run, new, "--resamples", B, "--clusters", "off"))
    assert "- Arms: tiny-qwen3 [lexical], tiny-qwen3 [embedding]" in md
    assert "Judges compared" in md and "later label minus earlier" in md
    summary = json.loads(_ok(_invoke("report", probe_run, new, "--resamples", B, "--clusters", "off",
                                     "--format", "json")))
    old, emb = _rows(probe_run / "samples.jsonl"), _rows(new / "samples.jsonl")
    checked = 0
    for cond, metric in itertools.product(("normal", "blank"), ("judge_score", "reward", "suffix_logprob")):
        (row,) = [r for r in summary["comparisons"] if r["kind"] == "arms" and r["condition"] == cond
                  and r["metric"] == metric]
        assert (row["arm_a"], row["arm_b"]) == ("tiny-qwen3 [embedding]", "tiny-qwen3 [lexical]")

        def item_means(rows):
            per = {}
            for r in rows:
                if r["condition"] == cond and r[metric] is not None:
                    per.setdefault(r["item_id"], []).append(r[metric])
            return {i: float(np.mean(v)) for i, v in per.items()}

        a, b = item_means(emb), item_means(old)
        ids = sorted(set(a) & set(b))  # the report resamples items in item-id order
        d = np.array([a[i] - b[i] for i in ids])
        assert row["n_shared"] == len(ids) == 4 and row["delta"] == pytest.approx(d.mean(), abs=1e-12)
        if metric == "suffix_logprob":  # judge-free: the same generations, so no difference at all
            assert np.all(d == 0) and row["degenerate"]
            continue
        if np.all(d == d[0]):
            continue
        # percentile bootstrap over items, seed 0 (the run's seed), as the report's text states
        assert row["ci_method"] == "percentile" and row["clustered"] is False
        idx = np.random.default_rng(0).integers(0, len(d), (B, len(d)))
        lo, hi = np.quantile(d[idx].mean(axis=1), [0.025, 0.975])
        assert (row["ci_low"], row["ci_high"]) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))
        # paired sign-flip permutation test, exact over the 2^4 sign patterns
        flips = [abs(np.mean(np.array(s) * d)) for s in itertools.product((1, -1), repeat=len(d))]
        assert row["test"] == "paired permutation"
        assert row["p_value"] == pytest.approx(np.mean([f >= abs(d.mean()) - 1e-12 for f in flips]))
        checked += 1
    assert checked >= 2  # the judge scores differ on both conditions


def test_runs_judged_differently_that_differ_in_more_are_refused(probe_run, tmp_path, cache):
    new = tmp_path / "lex0"
    _ok(_invoke("rejudge", probe_run, "--judge", "lexical", "--judge-option", "threshold=0.5", "--out", new, "--quiet"))
    md = _ok(_invoke("report", probe_run, new, "--resamples", "200"))
    assert "tiny-qwen3 [lexical threshold=0.25]" in md and "tiny-qwen3 [lexical threshold=0.5]" in md
    other = tmp_path / "other"
    shutil.copytree(new, other)
    m = json.loads((other / "manifest.json").read_text())
    m["config"]["temperature"] = 0.5
    (other / "manifest.json").write_text(json.dumps(m))
    res = _invoke("report", probe_run, other)
    assert res.exit_code == 2 and "judged differently" in res.output and "temperature" in res.output


# -- the verdict cache -----------------------------------------------------------------------

def test_rejudging_twice_with_the_same_judge_makes_no_judge_call(probe_run, tmp_path, cache, counting, no_backends):
    first = _ok(_invoke("rejudge", probe_run, "--judge", "counting", "--out", tmp_path / "a", "--quiet"))
    distinct = len({(r["suffix"], r["item_id"]) for r in _rows(probe_run / "samples.jsonl")})
    assert counting["judge"] == 1 and counting["pairs"] == distinct and "0 from the verdict cache" in first
    invalid = [r for r in _rows(tmp_path / "a" / "samples.jsonl") if r["judge_invalid"]]
    assert invalid and all(r["reward"] is None for r in invalid)  # invalid verdicts are kept as invalid
    calls = dict(counting)
    second = _ok(_invoke("rejudge", probe_run, "--judge", "counting", "--out", tmp_path / "b", "--quiet"))
    assert counting == calls and "0 judged in 0 call(s), 16 from the verdict cache" in second
    assert _keyed(tmp_path / "b") == _keyed(tmp_path / "a")  # cached invalid verdicts come back invalid
    _ok(_invoke("rejudge", probe_run, "--judge", "counting", "--out", tmp_path / "c", "--quiet", "--no-cache"))
    assert counting["judge"] == calls["judge"] + 1 and counting["pairs"] == 2 * distinct
    assert (cache / "verdicts.sqlite").exists()


def test_a_failed_judge_call_is_not_cached_and_a_new_rejudge_leaves_nothing(probe_run, tmp_path, cache, counting):
    counting["fail"] = 1
    res = _invoke("rejudge", probe_run, "--judge", "counting", "--out", tmp_path / "a", "--quiet")
    assert isinstance(res.exception, RuntimeError) and not (tmp_path / "a").exists()
    _ok(_invoke("rejudge", probe_run, "--judge", "counting", "--out", tmp_path / "a", "--quiet"))
    assert counting["judge"] == 1 and counting["pairs"] > 0  # judged for real: the failure was not cached


def test_a_pairwise_judge_call_that_fails_is_invalid_and_not_cached(pairwise_run, tmp_path, cache, counting):
    counting["fail"] = 1
    _ok(_invoke("rejudge", pairwise_run, "--judge", "counting", "--out", tmp_path / "a", "--quiet"))
    pairs = [r for r in _rows(tmp_path / "a" / "samples.jsonl") if r["kind"] == "pair"]
    assert all(r["outcome"] == "invalid" and r["error_ab"] for r in pairs)
    tried = counting["compare"]
    counting["fail"] = 0
    _ok(_invoke("rejudge", pairwise_run, "--judge", "counting", "--out", tmp_path / "b", "--quiet"))
    assert counting["compare"] == tried + 1
    assert all(r["outcome"] != "invalid" for r in _rows(tmp_path / "b" / "samples.jsonl") if r["kind"] == "pair")


def test_cache_keys_hold_the_judge_config_and_the_order_of_a_comparison(tmp_path):
    from harness.verdict_cache import CachedJudge, VerdictStore

    class J:
        name = "j"
        n = 0

        def judge(self, pairs):
            J.n += len(pairs)
            return [Verdict(reward=1, score=1.0) for _ in pairs]

    store = VerdictStore(tmp_path)
    a, b = CachedJudge(J(), {"name": "j", "t": 1}, {}, store), CachedJudge(J(), {"name": "j", "t": 2}, {}, store)
    pair = JudgePair("x", "y", "p")
    assert a.key("judge", ["x", "y", "p"]) != b.key("judge", ["x", "y", "p"])
    assert a.key("compare", ["p", "x", "y", "r"]) != a.key("compare", ["p", "y", "x", "r"])
    a.judge([pair, pair])
    a.judge([pair])
    b.judge([pair])
    assert J.n == 2 and (a.calls, a.judged, a.hits, b.calls) == (1, 1, 1, 1)  # a repeat in one call is asked once
    assert not callable(getattr(a, "compare", None))  # no compare() on a judge without one
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    c = CachedJudge(J(), {"name": "j"}, {}, VerdictStore(blocked))
    assert c.judge([pair]) == [Verdict(reward=1, score=1.0)] and c.store.broken  # judged without the cache


# -- resume and refusals ---------------------------------------------------------------------

KILLER = textwrap.dedent("""
    import os, signal, sys
    from harness import rejudge, store as S

    rejudge.CHUNK_RECORDS = 4
    append = S.RunStore.append

    def killing_append(self, rows, name=S.SAMPLES):
        append(self, rows, name)
        if name == S.SAMPLES and rows:
            os.kill(os.getpid(), signal.SIGKILL)

    S.RunStore.append = killing_append
    from harness.cli import main
    sys.argv = ["harness", *sys.argv[1:]]
    main()
""")


def test_a_killed_rejudge_resumes_without_judging_again_what_it_wrote(probe_run, tmp_path, cache, monkeypatch):
    from plugins.judges.lexical import LexicalJudge

    out = tmp_path / "new"
    args = ["rejudge", str(probe_run), "--judge", "lexical", "--judge-option", "threshold=0.1", "--out", str(out),
            "--quiet", "--no-cache"]
    killed = subprocess.run([sys.executable, "-c", KILLER, *args], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert len(_rows(out / "samples.jsonl")) == 4
    seen = []
    judge = LexicalJudge.judge
    monkeypatch.setattr(LexicalJudge, "judge", lambda self, pairs: seen.extend(pairs) or judge(self, pairs))
    _ok(_invoke(*args))
    assert len(seen) == 12  # the 4 records written before the kill are kept, not judged again
    ref = tmp_path / "ref"
    _ok(_invoke("rejudge", probe_run, "--judge", "lexical", "--judge-option", "threshold=0.1", "--out", ref, "--quiet"))
    assert len(_rows(out / "samples.jsonl")) == 16 and _keyed(out) == _keyed(ref)


def _one_line_refusal(res, *words):
    assert res.exit_code == 2, res.output
    assert res.output.strip().count("\n") == 0, res.output
    for w in words:
        assert w in res.output, res.output


def test_bad_input_is_one_line_exit_2_and_writes_nothing(probe_run, pairwise_run, tmp_path, cache):
    before = _snapshot(probe_run)
    out = tmp_path / "new"
    _one_line_refusal(_invoke("rejudge", probe_run, "--judge", "nosuch", "--out", out), "nosuch", "embedding",
                      "lexical", "llm")
    _one_line_refusal(_invoke("rejudge", probe_run, "--judge", "lexical", "--judge-option", "threshold=2",
                              "--out", out), "threshold")
    _one_line_refusal(_invoke("rejudge", probe_run, "--judge", "lexical", "--out", probe_run), "--out", "rejudged")
    _one_line_refusal(_invoke("rejudge", pairwise_run, "--judge", "lexical", "--out", out), "cannot compare")
    reasoning = tmp_path / "reasoning"
    reasoning.mkdir()
    (reasoning / "manifest.json").write_text(json.dumps({"record_type": "reasoning", "config": {
        "eval": "reasoning", "arms": [], "samples": 1, "seed": 0}}))
    _one_line_refusal(_invoke("rejudge", reasoning, "--judge", "lexical", "--out", out), "reasoning",
                      "grades its own answers", "pairwise", "reward_gate", "thought_probe")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    _one_line_refusal(_invoke("rejudge", probe_run, "--judge", "lexical", "--out", busy), "notes.txt")
    assert not out.exists() and sorted(p.name for p in busy.iterdir()) == ["notes.txt"]
    assert _snapshot(probe_run) == before and not cache.exists()
    # a directory holding another run: refused, its records untouched
    _ok(_invoke("rejudge", probe_run, "--judge", "lexical", "--judge-option", "threshold=0.5", "--out", out, "--quiet"))
    kept = _snapshot(out)
    _one_line_refusal(_invoke("rejudge", probe_run, "--judge", "lexical", "--out", out), "different config", "judge")
    assert _snapshot(out) == kept


def test_rejudge_is_listed_in_the_help():
    assert "rejudge" in _ok(_invoke("--help"))
