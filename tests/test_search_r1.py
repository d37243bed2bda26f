"""The search_r1 eval and the evidence-use probe.

(a) a scripted character-level backend with known searches and answers, run through ``harness
run``: every turn's ids, the observations and corrections as inserted, the forced final turn, the
metrics and the summary exactly; (b) answer normalisation and EM / sub-EM / F1; (c) the tiny random
model end to end (plumbing), the summary recomputed from the records, resume and rescore; (d) the
four evidence conditions; (e) bad input, one line and nothing written."""

import json
import re
import sys
import types

import numpy as np
import pytest
from click.testing import CliRunner

from harness import plugins
from harness.cli import cli
from harness.errors import BadInput
from harness.hookspecs import hookimpl
from harness.types import Completion, Item
from plugins.evals.search_loop import CORRECTION, FINAL_INSTRUCTION, NO_RESULTS, close_tag, parse_action
from tasks.qa_metrics import exact_match, f1_score, normalize_answer, passage_has_answer, sub_exact_match

CORPUS = [
    {"id": "d1", "contents": "France\nParis is the capital of France."},
    {"id": "d2", "contents": "Germany\nBerlin is the capital of Germany."},
    {"id": "d3", "contents": "Rivers\nThe Seine flows through Paris."},
    {"id": "d4", "contents": "Italy\nRome is the capital of Italy."},
]
QUESTIONS = [  # id, question, golden answers, gold passages
    ("q1", "capital of france", ["Paris"], [CORPUS[0]]),
    ("q2", "capital of germany", ["Berlin"], []),
    ("q3", "river of paris", ["Seine", "Seine River basin"], [CORPUS[2]]),
    ("q4", "capital of italy", ["Rome"], []),
]
# Per question, the arm's text for turns 0, 1, ... (or a function of the prompt: the arm reads its
# passages) and for the final answer-only turn; "\0" = EOS.
SCRIPT = {
    "capital of france": ["<think>hmm</think><search>capital of france</search> and more",
                          lambda prompt: f"<answer>{'Paris' if 'Paris is the capital' in prompt else 'Lyon'}</answer>"],
    "capital of germany": ["I do not know.\0", "<answer> the Berlin! </answer>"],
    "river of paris": ["<search>paris river</search>"],
    "capital of italy": ["blah " * 40],
}
FINAL = {"river of paris": "<answer>Seine river</answer>", "capital of italy": "no idea\0"}
TEMPLATE = "Q: {question}\nA:"


# -- test plugins: a scripted backend, a word-overlap retriever, a small QA task --------------

class ScriptedBackend:
    name = "scripted"
    description = "one character per token; answers from SCRIPT"
    eos_ids = {0}
    requests: list = []

    def __init__(self, arm):
        self.arm = arm

    @classmethod
    def check(cls, arm):
        return None

    def encode(self, text):
        return [ord(c) for c in text]

    def decode(self, ids):
        return "".join(chr(i) for i in ids if i)

    def generate(self, requests, progress=None):
        out = []
        for r in requests:
            ScriptedBackend.requests.append(r)
            prompt = self.decode(r.prompt_ids)
            question = re.search(r"Q: (.*?)\n", prompt).group(1)
            turn = prompt.count("<information>") + prompt.count(CORRECTION)
            script = SCRIPT[question]
            text = FINAL[question] if FINAL_INSTRUCTION in prompt else script[min(turn, len(script) - 1)]
            text = text(prompt) if callable(text) else text
            out.append([self.complete(text, r) for _ in range(r.n)])
        return out

    def complete(self, text, r):
        """What a real backend returns: cut before a stop string, at the cap, or at EOS."""
        eos = text.find("\0")
        ends = [(text.find(s), text.find(s) + len(s)) for s in r.stop_strings if s in text]
        start, end = min(ends) if ends else (None, None)
        if start is not None and end <= r.max_new_tokens and (eos < 0 or start < eos):
            ids, why = self.encode(text[:start]), "stop"
        elif eos >= 0 and eos < r.max_new_tokens:
            ids, why = self.encode(text[:eos]), "eos"
        else:
            ids, why = self.encode(text[:r.max_new_tokens]), "length"
        return Completion(ids, self.decode(ids), why)

    def score(self, requests):
        return [[0.0] * len(r.continuation_ids) for r in requests]


class OverlapRetriever:
    name = "overlap"
    description = "passages ranked by words shared with the query"
    calls: list = []

    def __init__(self, options):
        pass

    def retrieve(self, queries, topk):
        OverlapRetriever.calls.append((list(queries), topk))
        out = []
        for q in queries:
            words = set(q.lower().split())
            scored = [(len(words & set(d["contents"].lower().replace(".", "").split())), n, d)
                      for n, d in enumerate(CORPUS)]
            out.append([dict(d, score=float(s)) for s, _, d in sorted(scored, key=lambda x: (-x[0], x[1]))
                        if s > 0][:topk])
        return out

    def config(self):
        return {"corpus": "test"}


class SmallQA:
    name = "small_qa"
    description = "four questions over the test corpus"
    from harness.options import Option
    options = (Option("two_datasets", bool, False, "q3 and q4 belong to a second dataset"),)

    def __init__(self, options):
        self.two = options.get("two_datasets", False)

    def items(self):
        return [Item(i, q, golds[0], meta={"golden_answers": golds, "hops": 1,
                                           "dataset": "other" if self.two and i in ("q3", "q4") else "small",
                                           **({"gold_docs": [dict(d) for d in gold]} if gold else {})})
                for i, q, golds, gold in QUESTIONS]

    def config(self):
        return {"data": "test", "two_datasets": self.two}


class _EP:
    def __init__(self, module):
        self.name = self.value = module.__name__
        self.dist = types.SimpleNamespace(name="harness-search-test", version="0.1")
        self._module = module

    def load(self):
        return self._module


@pytest.fixture(autouse=True)
def test_plugins(monkeypatch):
    mod = types.ModuleType("search_test_plugins")
    mod.register_backends = hookimpl(lambda register: register(ScriptedBackend))
    mod.register_retrievers = hookimpl(lambda register: register(OverlapRetriever))
    mod.register_tasks = hookimpl(lambda register: register(SmallQA))
    sys.modules[mod.__name__] = mod
    monkeypatch.setattr(plugins, "_entry_points", lambda: [_EP(mod)])
    plugins.reset()
    ScriptedBackend.requests, OverlapRetriever.calls = [], []
    yield
    plugins.reset()


def _scripted(tmp_path, *extra, out="run"):
    (tmp_path / "arms.toml").write_text("".join(f'[arms.{name}]\nmodel = "scripted-model"\nbackend = "scripted"\n'
                                                for name in ("script", "script2")))
    (tmp_path / "t.txt").write_text(TEMPLATE)
    return CliRunner().invoke(cli, ["run", "--plugin", "search_r1", "--arms-file", str(tmp_path / "arms.toml"),
                                    "--arm", "script", "--task", "small_qa", "--retriever", "overlap",
                                    "--option", f"template={tmp_path / 't.txt'}", "--option", "max_turns=2",
                                    "--max-new-tokens", "60", "--quiet", "--out", str(tmp_path / out), *extra])


def _records(out):
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


def _ok(res):
    assert res.exit_code == 0, res.output
    return res.output


def _obs(docs):
    body = "\n".join(f"Doc {n}(Title: {d['contents'].split(chr(10))[0]}) {d['contents'].split(chr(10), 1)[1]}"
                     for n, d in enumerate(docs, 1)) or NO_RESULTS
    return f"\n\n<information>{body}</information>\n\n"


def _context(rec, prompt_ids):
    ids = list(prompt_ids)
    for t in rec["turns"]:
        ids += t["lead_ids"] + t["token_ids"] + t["close_ids"] + t["inserted_ids"]
    return ids


# -- (a) the loop, exactly --------------------------------------------------------------------

def test_every_turn_of_the_scripted_rollouts(tmp_path):
    _ok(_scripted(tmp_path))
    recs = {r["item_id"]: r for r in _records(tmp_path / "run")}
    enc = ScriptedBackend(None).encode
    prompt = {q: enc(TEMPLATE.replace("{question}", text)) for q, text, _, _ in QUESTIONS}

    q1 = recs["q1"]["turns"]
    assert [t["action"] for t in q1] == ["search", "answer"]
    assert q1[0]["text"] == "<think>hmm</think><search>capital of france" and q1[0]["finish_reason"] == "stop"
    assert q1[0]["token_ids"] == enc(q1[0]["text"]) and q1[0]["close"] == "</search>"
    assert q1[0]["close_ids"] == enc("</search>") and q1[0]["query"] == "capital of france"
    assert q1[0]["retrieved_ids"] == ["d1", "d2", "d4"] and [d["id"] for d in q1[0]["docs"]] == ["d1", "d2", "d4"]
    assert q1[0]["inserted"] == _obs([CORPUS[0], CORPUS[1], CORPUS[3]]) and q1[0]["inserted_kind"] == "observation"
    assert q1[0]["inserted_ids"] == enc(q1[0]["inserted"]) and q1[0]["lead_ids"] == []
    assert q1[1]["text"] == "<answer>Paris" and q1[1]["close"] == "</answer>" and q1[1]["inserted_ids"] == []
    assert recs["q1"]["prediction"] == "Paris" and recs["q1"]["em"] is True and recs["q1"]["n_searches"] == 1

    q2 = recs["q2"]["turns"]  # EOS without an action: the correction, then an answer
    assert q2[0]["finish_reason"] == "eos" and q2[0]["close"] == "" and q2[0]["action"] == "invalid"
    assert q2[0]["inserted"] == CORRECTION and q2[0]["inserted_ids"] == enc(CORRECTION)
    assert q2[0]["inserted_kind"] == "correction" and recs["q2"]["n_invalid"] == 1
    assert recs["q2"]["prediction"] == "the Berlin!" and recs["q2"]["em"] is True

    q3 = recs["q3"]["turns"]  # searches until max_turns, then the final turn with the instruction
    assert [t["action"] for t in q3] == ["search", "search", "answer"]
    assert [t["search_enabled"] for t in q3] == [True, True, False]
    assert q3[2]["lead"] == FINAL_INSTRUCTION and q3[2]["lead_ids"] == enc(FINAL_INSTRUCTION)
    assert q3[0]["lead_ids"] == [] and recs["q3"]["n_searches"] == 2 and recs["q3"]["n_turns"] == 3
    assert recs["q3"]["prediction"] == "Seine river"
    assert (recs["q3"]["em"], recs["q3"]["sub_em"]) == (False, True)
    assert recs["q3"]["f1"] == pytest.approx(0.8)  # "seine river" vs "seine river basin"; "seine" gives 2/3

    q4 = recs["q4"]["turns"]  # the token cap: no action, corrections, then the final turn ends at EOS
    assert [t["finish_reason"] for t in q4] == ["length", "length", "eos"]
    assert [t["action"] for t in q4] == ["invalid"] * 3 and q4[2]["inserted_ids"] == []
    assert recs["q4"]["no_answer"] is True and recs["q4"]["prediction"] is None and recs["q4"]["em"] is False

    # every request the backend saw is the record's context up to that turn, ids appended only
    seen = {}
    for r in ScriptedBackend.requests:
        q = re.search(r"Q: (.*?)\n", "".join(map(chr, r.prompt_ids))).group(1)
        seen.setdefault(q, []).append(r.prompt_ids)
    for q, text, _, _ in QUESTIONS:
        rec = recs[q]
        for t, got in enumerate(seen[text]):
            partial = dict(rec, turns=rec["turns"][:t])
            want = _context(partial, prompt[q]) + rec["turns"][t]["lead_ids"]
            assert got == want, (q, t)
        assert rec["prompt_tokens"] == len(prompt[q])
        assert rec["completion_tokens"] == sum(len(t["token_ids"]) for t in rec["turns"])
    assert OverlapRetriever.calls[0] == (["capital of france", "paris river"], 3)  # one call per turn


def test_scripted_summary_numbers(tmp_path):
    _ok(_scripted(tmp_path))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    cells = {(r["dataset"], r["metric"]): r for r in summary["metrics"] if r["condition"] == "normal"}
    recs = {r["item_id"]: r for r in _records(tmp_path / "run")}
    assert cells[("small", "em")]["estimate"] == pytest.approx(0.5) and cells[("small", "em")]["count"] == 2
    assert cells[("small", "sub_em")]["estimate"] == pytest.approx(0.75)
    assert cells[("small", "f1")]["estimate"] == pytest.approx(np.mean([recs[q]["f1"] for q in recs]))
    assert cells[("small", "n_searches")]["estimate"] == pytest.approx((1 + 0 + 2 + 0) / 4)
    assert cells[("small", "n_turns")]["estimate"] == pytest.approx((2 + 2 + 3 + 3) / 4)
    assert cells[("small", "invalid_rate")]["estimate"] == pytest.approx((0 + 1 / 2 + 0 + 1) / 4)
    assert cells[("small", "no_answer")]["estimate"] == pytest.approx(0.25)
    # recall over the rollouts that searched: q1 saw Paris, q3 saw the Seine
    assert cells[("small", "answer_in_retrieved")]["estimate"] == pytest.approx(1.0)
    assert cells[("small", "answer_in_retrieved")]["n_items"] == 2
    assert ("small", "pass_at_k") not in cells  # one sample
    md = (tmp_path / "run" / "report.md").read_text()
    assert "## Search QA" in md and "| script | normal    | small" in md


def test_macro_over_datasets_and_arm_comparisons(tmp_path):
    res = _scripted(tmp_path, "--arm", "script2", "--task-option", "two_datasets=true", "--intervention", "normal",
                    "--intervention", "no_results")
    output = _ok(res)
    assert "| script2 | no_results" in output  # the console tables
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    cells = {(r["arm"], r["condition"], r["dataset"], r["metric"]): r for r in summary["metrics"]}
    recs = [r for r in _records(tmp_path / "run") if r["arm"] == "script" and r["condition"] == "normal"]
    by_ds = {ds: np.mean([float(r["em"]) for r in recs if r["dataset"] == ds]) for ds in ("small", "other")}
    macro = cells[("script", "normal", "macro", "em")]
    assert macro["estimate"] == pytest.approx(np.mean(list(by_ds.values()))) and macro["n_datasets"] == 2
    own = [cells[("script", "normal", ds, "em")] for ds in ("small", "other")]  # all 1, all 0: Wilson bounds
    assert macro["n_items"] == 4 and macro["ci_method"] == "mean of the datasets' bounds"
    assert macro["ci_high"] == pytest.approx(np.mean([c["ci_high"] for c in own]))
    f1 = cells[("script", "normal", "macro", "f1")]
    assert f1["ci_method"] == "percentile, stratified by dataset" and f1["ci_low"] < f1["estimate"] < f1["ci_high"]
    comps = summary["comparisons"]
    arms = [r for r in comps if r["kind"] == "arms" and r["metric"] == "em"]
    assert {(r["arm_a"], r["arm_b"], r["condition"], r["dataset"]) for r in arms} == {
        ("script2", "script", c, ds) for c in ("normal", "no_results") for ds in ("small", "other", "macro")}
    assert all(r["delta"] == 0 for r in arms)  # the same script
    sens = {r["dataset"]: r for r in comps if r["kind"] == "conditions" and r["metric"] == "em"
            and r["arm_a"] == "script"}
    assert sens["small"]["delta"] == pytest.approx(0.5) and sens["other"]["delta"] == 0  # q1 is in "small"
    assert sens["macro"]["delta"] == pytest.approx(0.25) and sens["macro"]["n_shared"] == 4
    md = (tmp_path / "run" / "report.md").read_text()
    assert "## Arm comparisons (every pair)" in md and "script2 - script" in md and "| macro" in md


def test_observation_cap_keeps_the_close_tag(tmp_path):
    _ok(_scripted(tmp_path, "--option", "max_obs_tokens=60"))
    t = next(r for r in _records(tmp_path / "run") if r["item_id"] == "q1")["turns"][0]
    assert t["obs_truncated"] is True and len(t["inserted_ids"]) == 60
    assert t["inserted"].startswith("\n\n<information>Doc 1(Title: France)")
    assert t["inserted"].endswith("</information>\n\n")


def test_parse_and_close_helpers():
    assert parse_action("<think>x</think><search> a b </search>") == ("search", "a b")
    assert parse_action("<answer>y</answer><search>z</search>") == ("answer", "y")
    assert parse_action("<search>  </search>") == ("invalid", None)
    assert parse_action("no tags") == ("invalid", None)
    assert close_tag("<answer>a <search>b") == "</search>" and close_tag("text") == ""


# -- (b) answer metrics -----------------------------------------------------------------------

@pytest.mark.parametrize("pred,golds,em,sub,f1", [
    ("The Eiffel Tower!", ["eiffel tower"], True, True, 1.0),
    ("  an  apple ", ["Apple"], True, True, 1.0),
    ("Paris, France", ["Paris"], False, True, 2 / 3),
    ("Lyon", ["Paris", "lyon"], True, True, 1.0),
    ("1990s", ["1990"], False, True, 0.0),
    ("", ["Paris"], False, False, 0.0),
    (None, ["Paris"], False, False, 0.0),
    ("the", ["the"], False, False, 0.0),  # a golden answer that normalises to nothing never matches
    ("New York City", ["new york", "NYC"], False, True, 0.8),
])
def test_answer_metrics(pred, golds, em, sub, f1):
    assert exact_match(pred, golds) is em
    assert sub_exact_match(pred, golds) is sub
    assert f1_score(pred, golds) == pytest.approx(f1)


def test_normalisation_and_passage_matching():
    assert normalize_answer("The  Cat's   hat.") == "cats hat"
    assert normalize_answer("A-ha, an ANT!") == "aha ant"
    assert passage_has_answer("Born in 1990 in Paris.", ["1990"])
    assert not passage_has_answer("It was the 1990s.", ["1990"])  # whole tokens only
    assert passage_has_answer("the Seine River flows", ["seine river"])


# -- (d) evidence conditions ------------------------------------------------------------------

CONDITIONS = ["--intervention", "normal", "--intervention", "no_results", "--intervention", "swapped_docs",
              "--intervention", "gold_doc"]


def test_the_four_conditions_and_the_sensitivity_table(tmp_path):
    from harness.seeding import derive_seed
    from plugins.evidence.swapped_docs import question_derangement

    _ok(_scripted(tmp_path, *CONDITIONS))
    recs = _records(tmp_path / "run")
    by = {(r["condition"], r["item_id"]): r for r in recs}
    assert len(recs) == 4 * 4
    retriever = OverlapRetriever({})

    first = by[("no_results", "q1")]["turns"][0]  # the search happened; nothing was shown
    assert first["retrieved_ids"] == ["d1", "d2", "d4"] and first["docs"] == []
    assert first["inserted"] == _obs([]) and by[("no_results", "q1")]["answer_in_retrieved"] is False

    donors = question_derangement(SmallQA({}).items(), derive_seed(0, "swapped_docs-derangement"))
    assert all(a != b for a, b in donors.items())
    questions = {i: q for i, q, _, _ in QUESTIONS}
    for item in ("q1", "q3"):
        t = by[("swapped_docs", item)]["turns"][0]
        want = retriever.retrieve([questions[donors[item]]], len(t["retrieved_ids"]))[0]
        assert [d["id"] for d in t["docs"]] == [d["id"] for d in want], item
        assert t["inserted"] == _obs(want)

    assert [d["id"] for d in by[("gold_doc", "q1")]["turns"][0]["docs"]] == ["d1", "d2", "d4"]  # gold already first
    assert [d["id"] for d in by[("gold_doc", "q3")]["turns"][0]["docs"]] == ["d3", "d1"]  # gold first, topk kept
    skipped = [r for r in recs if r.get("skipped")]
    assert {(r["condition"], r["item_id"]) for r in skipped} == {("gold_doc", "q2"), ("gold_doc", "q4")}
    assert all("em" not in r for r in skipped)

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["skipped"] == {"script": {"gold_doc": 2}}
    sens = {(r["condition_b"], r["metric"]): r for r in summary["comparisons"] if r["kind"] == "conditions"}
    for cond in ("no_results", "swapped_docs", "gold_doc"):
        row = sens[(cond, "em")]
        ids = [i for i in questions if (cond, i) in by and not by[(cond, i)].get("skipped")]
        want = np.mean([float(by[("normal", i)]["em"]) - float(by[(cond, i)]["em"]) for i in ids])
        assert row["condition_a"] == "normal" and row["n_shared"] == len(ids) and row["delta"] == pytest.approx(want)
        assert row["test"] == "McNemar exact" and row["dataset"] == "small"
    assert sens[("no_results", "em")]["delta"] == pytest.approx(0.25)  # q1 answers Lyon without its passage
    assert by[("no_results", "q1")]["prediction"] == "Lyon" and by[("gold_doc", "q1")]["prediction"] == "Paris"
    md = (tmp_path / "run" / "report.md").read_text()
    assert "## Evidence-use sensitivity" in md and "normal - gold_doc" in md and "script / gold_doc: 2" in md


def test_derangement_has_no_fixed_point_and_no_same_question():
    from plugins.evidence.swapped_docs import question_derangement

    for n in range(2, 12):
        items = [Item(f"i{k}", f"question {k // 2 if n >= 4 else k}", "a") for k in range(n)]  # pairs share one
        for seed in range(20):
            d = question_derangement(items, seed)
            assert sorted(d) == sorted(d.values()) == sorted(i.id for i in items)
            q = {i.id: i.prefix for i in items}
            assert all(a != b and q[a] != q[b] for a, b in d.items())
        assert question_derangement(items, 7) == question_derangement(list(reversed(items)), 7)
    with pytest.raises(BadInput):
        question_derangement([Item("a", "same", ""), Item("b", "Same ", "")], 0)


def test_gold_doc_observe_keeps_topk():
    from plugins.evidence.gold_doc import GoldDoc

    item = Item("x", "q", "a", meta={"gold_docs": [{"id": "g1", "contents": "T\ng one"},
                                                   {"id": "d2", "contents": "T\nd two"}]})
    docs = [{"id": f"d{n}", "contents": f"T\nd{n}", "score": 1.0} for n in (1, 2, 3)]
    assert [d["id"] for d in GoldDoc().observe(item, "q", docs)] == ["g1", "d2", "d1"]
    assert [d["id"] for d in GoldDoc().observe(item, "q", [])] == ["g1", "d2"]
    assert not GoldDoc().applies(Item("y", "q", "a")) and GoldDoc().applies(item)


# -- resume, kill, rescore --------------------------------------------------------------------

def test_resume_skips_everything_and_a_cut_run_resumes_to_the_same_records(tmp_path):
    _ok(_scripted(tmp_path, *CONDITIONS))
    path = tmp_path / "run" / "samples.jsonl"
    full = path.read_text()
    ScriptedBackend.requests = []
    assert "0 new records (0 tokens generated" in _ok(_scripted(tmp_path, *CONDITIONS))
    assert ScriptedBackend.requests == []
    lines = full.splitlines(keepends=True)
    path.write_text("".join(lines[:5]) + lines[5][:40])  # killed mid-write: a torn last line
    assert "11 new records" in _ok(_scripted(tmp_path, *CONDITIONS))
    key = lambda r: (r["condition"], r["item_id"], r["sample"])  # noqa: E731
    assert sorted(map(json.dumps, _records(tmp_path / "run")), key=len) == sorted(
        (json.dumps(json.loads(line)) for line in full.splitlines()), key=len)
    assert len({key(r) for r in _records(tmp_path / "run")}) == 16


def test_rescore_regrades_from_the_turns(tmp_path):
    _ok(_scripted(tmp_path))
    path = tmp_path / "run" / "samples.jsonl"
    recs = _records(tmp_path / "run")
    q4 = next(r for r in recs if r["item_id"] == "q4")
    q4["turns"][-1]["text"] = "<answer>rome</answer>"  # as a fixed extraction would see it
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    res = CliRunner().invoke(cli, ["rescore", str(tmp_path / "run")], catch_exceptions=False)
    assert res.exit_code == 0 and "2 -> 3 em" in res.output, res.output
    after = {r["item_id"]: r for r in _records(tmp_path / "run")}
    assert after["q4"]["prediction"] == "rome" and after["q4"]["em"] is True and after["q4"]["no_answer"] is False
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["rescored"][-1]["em_before"] == 2 and manifest["rescored"][-1]["em_after"] == 3
    assert (tmp_path / "run" / manifest["rescored"][-1]["backup"]).exists()
    res = CliRunner().invoke(cli, ["rescore", str(tmp_path / "run"), "--workers", "2"])
    assert res.exit_code == 2 and "unknown search_r1 rescore option 'workers'; valid: none" in res.output


def test_rescore_refuses_an_eval_that_cannot_regrade(tmp_path):
    run = tmp_path / "probe"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"record_type": "probe", "config": {"eval": "thought_probe"}}))
    res = CliRunner().invoke(cli, ["rescore", str(run)])
    assert res.exit_code == 1 and "thought_probe eval cannot regrade" in res.output
    assert "reasoning" in res.output and "search_r1" in res.output


# -- the built-in retrievers ------------------------------------------------------------------

def test_the_same_rollouts_through_the_http_retriever(tmp_path):
    from tests.retrieval_server import serve

    _ok(_scripted(tmp_path, out="direct"))
    with serve(OverlapRetriever({})) as server:
        _ok(_scripted(tmp_path, "--retriever", "http", "--retriever-option", f"url={server.url}", out="http"))
        assert server.requests and all(path == "/retrieve" for path, _ in server.requests)
    assert [r["turns"] for r in _records(tmp_path / "http")] == [r["turns"] for r in _records(tmp_path / "direct")]


def test_bm25_over_a_corpus_file(tmp_path):
    pytest.importorskip("bm25s")
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in CORPUS))
    _ok(_scripted(tmp_path, "--retriever", "bm25", "--retriever-option", f"corpus={corpus}",
                  "--retriever-option", f"cache={tmp_path / 'index'}"))
    recs = {r["item_id"]: r for r in _records(tmp_path / "run")}
    first = recs["q1"]["turns"][0]
    assert first["retrieved_ids"][0] == "d1" and first["docs"][0]["contents"] == CORPUS[0]["contents"]
    assert recs["q1"]["prediction"] == "Paris"
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["config"]["retriever"]["name"] == "bm25"


def test_each_arm_can_bring_its_own_template(tmp_path):
    (tmp_path / "a.txt").write_text("One. " + TEMPLATE)
    (tmp_path / "b.txt").write_text("Template two. " + TEMPLATE)
    (tmp_path / "arms.toml").write_text(
        '[arms.script]\nmodel = "scripted-model"\nbackend = "scripted"\n'
        f'options = {{ search_template = "{tmp_path / "a.txt"}" }}\n'
        '[arms.script2]\nmodel = "scripted-model"\nbackend = "scripted"\n'
        f'options = {{ search_template = "{tmp_path / "b.txt"}" }}\n')
    res = CliRunner().invoke(cli, ["run", "--plugin", "search_r1", "--arms-file", str(tmp_path / "arms.toml"),
                                   "--arm", "script", "--arm", "script2", "--task", "small_qa", "--retriever",
                                   "overlap", "--option", "max_turns=2", "--max-new-tokens", "60", "--quiet",
                                   "--out", str(tmp_path / "run")])
    _ok(res)
    import hashlib

    shas = {r["arm"]: r["template_sha"] for r in _records(tmp_path / "run")}
    assert shas == {"script": hashlib.sha256(("One. " + TEMPLATE).encode()).hexdigest(),
                    "script2": hashlib.sha256(("Template two. " + TEMPLATE).encode()).hexdigest()}
    (tmp_path / "b.txt").write_text("Edited. " + TEMPLATE)  # a resume after one arm's template changed
    res = CliRunner().invoke(cli, ["run", "--plugin", "search_r1", "--arms-file", str(tmp_path / "arms.toml"),
                                   "--arm", "script", "--arm", "script2", "--task", "small_qa", "--retriever",
                                   "overlap", "--option", "max_turns=2", "--max-new-tokens", "60", "--quiet",
                                   "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and "arm 'script2': the prompt template changed" in res.output, res.output


# -- (c) the tiny random model end to end -----------------------------------------------------

@pytest.fixture()
def tiny_run(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("bm25s")
    args = ["run", "--plugin", "search_r1", "--arm", "tiny-qwen3", "--task", "search_fixture", "--limit", "4",
            "--samples", "2", "--temperature", "1.0", "--max-new-tokens", "6", "--option", "max_turns=1",
            "--option", "max_obs_tokens=48", "--intervention", "normal", "--intervention", "gold_doc",
            "--retriever-option", f"cache={tmp_path / 'index'}",
            "--quiet", "--out", str(tmp_path / "tiny")]
    return args, tmp_path / "tiny", _ok(CliRunner().invoke(cli, args))


def test_tiny_model_end_to_end_summary_from_records_and_resume(tiny_run):
    args, out, _ = tiny_run
    recs = _records(out)
    assert len(recs) == 2 * 4 * 2 and all(not r["skipped"] for r in recs)  # every fixture item has a gold passage
    assert {r["dataset"] for r in recs} == {"search_fixture"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["retriever"]["name"] == "bm25" and manifest["record_type"] == "search"
    from plugins.evals.search_r1 import DEFAULT_TEMPLATE

    template = DEFAULT_TEMPLATE.read_bytes()  # the packaged template, byte for byte (a byte-level tokenizer)
    assert all(r["prompt_tokens"] == len(template.replace(b"{question}", r["question"].encode())) for r in recs)
    for r in recs:
        assert 1 <= r["n_turns"] <= 2 and all(len(t["token_ids"]) <= 6 for t in r["turns"])
        assert r["completion_tokens"] == sum(len(t["token_ids"]) for t in r["turns"])
    summary = json.loads((out / "summary.json").read_text())
    cells = {(r["condition"], r["dataset"], r["metric"]): r for r in summary["metrics"]}
    for cond in ("normal", "gold_doc"):
        for metric in ("em", "f1", "n_turns", "completion_tokens", "pass_at_k"):
            by_item: dict = {}
            for r in recs:
                if r["condition"] == cond:
                    by_item.setdefault(r["item_id"], []).append(float(r["em"] if metric == "pass_at_k" else r[metric]))
            want = np.mean([max(v) if metric == "pass_at_k" else np.mean(v) for v in by_item.values()])
            ds = recs[0]["dataset"]
            assert cells[(cond, ds, metric)]["estimate"] == pytest.approx(want), (cond, metric)
            assert cells[(cond, ds, metric)]["n_items"] == 4
    res = CliRunner().invoke(cli, args)
    assert "0 new records (0 tokens generated" in _ok(res)
    assert len(_records(out)) == len(recs)


# -- (e) bad input ----------------------------------------------------------------------------

def _one_line(res):
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1, res.output
    return lines[0]


def test_unknown_retriever_lists_the_valid_ones(tmp_path):
    res = _scripted(tmp_path, "--retriever", "nope")
    line = _one_line(res)
    assert res.exit_code == 2 and "unknown retriever 'nope'; valid:" in line and "overlap" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text,needle", [("Question: {q}\n", "has no {question} placeholder"),
                                         (b"\xff\xfe{question}", "cannot read it as UTF-8")])
def test_a_template_without_the_question_is_refused(tmp_path, text, needle):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(text if isinstance(text, bytes) else text.encode())
    res = _scripted(tmp_path, "--option", f"template={bad}")
    line = _one_line(res)
    assert res.exit_code == 2 and needle in line, res.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args,needle", [
    (["--option", "topk=0"], "topk='0' must be in [1, 100]"), (["--option", "toppk=2"], "unknown option 'toppk'"),
    (["--intervention", "blank"], "unknown evidence condition 'blank'"),
    (["--judge", "lexical"], "takes no judge"), (["--task", "chunks"], "has no golden answers"),
])
def test_other_bad_input_is_one_line_before_any_work(tmp_path, args, needle):
    res = _scripted(tmp_path, *args)
    line = _one_line(res)
    assert res.exit_code == 2 and needle in line, res.output
    assert not (tmp_path / "run").exists()
