"""The ``nll`` eval end to end on the random-init tiny arms: records, every summary number
recomputed from ``samples.jsonl`` (and one row re-scored by a plain forward pass), equality with
``harness train sft``'s evals on the same rows and weights, rows without thoughts, resume, bad input,
and the ``interleaved`` task."""

import json
import math

import pytest
from click.testing import CliRunner

from harness.cli import cli

torch = pytest.importorskip("torch")

ARMS = ["--arm", "tiny-qwen3", "--arm", "random:tiny-qwen3"]
KINDS = ("raw", "augmented", "thought", "text", "post_thought")


def _run(out, *extra, ok=True):
    res = CliRunner().invoke(cli, ["run", "--plugin", "nll", *extra, "--quiet", "--out", str(out)],
                             catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res


def _records(out):
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


def _summary(out):
    return json.loads((out / "summary.json").read_text())


def _cells(summary):
    return {(m["arm"], m["metric"]): m for m in summary["metrics"]}


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    """The packaged sample (first 5 rows), cut to 320 tokens, 12-token continuations."""
    out = tmp_path_factory.mktemp("nll") / "run"
    _run(out, *ARMS, "--limit", "5", "--option", "max_tokens=320", "--max-new-tokens", "12")
    return out


def test_one_record_per_arm_and_row_with_sums_counts_and_tokenizer(sample_run):
    recs = _records(sample_run)
    assert len(recs) == 2 * 5
    assert len({(r["arm"], r["condition"], r["item_id"], r["sample"]) for r in recs}) == len(recs)
    assert {r["condition"] for r in recs} == {"nll"} and {r["sample"] for r in recs} == {0}
    for r in recs:
        assert r["tokenizer"].startswith("random:tiny-qwen3") and len(r["tokenizer_sha"]) == 12
        assert r["thoughts"] > 0 and r["augmented_tokens"] == 319 and r["truncated"] is True
        assert r["thought_tokens"] + r["text_tokens"] == r["augmented_tokens"]
        assert r["tokens_scored"] == r["raw_tokens"] + r["augmented_tokens"]
        assert r["continuation_tokens"] <= 12 and r["continuation_prompt_tokens"] == 160
    a = {r["item_id"]: r for r in recs if r["arm"] == "tiny-qwen3"}
    b = {r["item_id"]: r for r in recs if r["arm"] == "random:tiny-qwen3"}
    assert {k: v["continuation_seed"] for k, v in a.items()} == {k: v["continuation_seed"] for k, v in b.items()}
    manifest = json.loads((sample_run / "manifest.json").read_text())
    assert manifest["config"]["tasks"][0]["data"] == "package:sample_interleaved"


def test_every_summary_number_recomputes_from_the_records(sample_run):
    import numpy as np

    from plugins.evals.nll_scoring import repetition_rate
    from reports import paired_stats as ps
    from reports.compare import clusters_for

    recs, summary = _records(sample_run), _summary(sample_run)
    clustered = []
    cells = _cells(summary)
    clusters = {r["item_id"]: r["cluster"] for r in recs}
    for arm in ("tiny-qwen3", "random:tiny-qwen3"):
        mine = sorted((r for r in recs if r["arm"] == arm), key=lambda r: r["item_id"])
        for r in mine:
            for k in KINDS:
                assert r[f"{k}_nll"] == (r[f"{k}_nll_sum"] / r[f"{k}_tokens"] if r[f"{k}_tokens"] else None)
            words = r["continuation"].lower().split()
            grams = [tuple(words[i:i + 4]) for i in range(len(words) - 3)]
            assert r["repetition_4gram_rate"] == (1 - len(set(grams)) / len(grams) if grams else 0.0)
            assert r["repetition_4gram_rate"] == repetition_rate(r["continuation"])
        for k in KINDS:
            cell = cells[(arm, f"{k}_nll")]
            have = [r for r in mine if r[f"{k}_tokens"]]
            rows = [(r[f"{k}_nll_sum"], r[f"{k}_tokens"]) for r in have]
            assert cell["estimate"] == math.fsum(s for s, _ in rows) / sum(n for _, n in rows)
            assert cell["count"] == sum(n for _, n in rows) and cell["n_items"] == len(rows)
            # the interval: the resamples' ratios of sums, rows resampled by source where a source
            # holds several of them (the sample pairs passages by topic)
            ids = [r["item_id"] for r in have]
            keys = clusters_for(ids, clusters, "auto")
            b = ps.bootstrap_means_matrix(np.array(rows, dtype=float), B=10_000, seed=0, clusters=keys, keys=ids)
            ci = ps.percentile_ci(b[:, 0] / b[:, 1], cell["estimate"])
            assert (cell["ci_low"], cell["ci_high"]) == pytest.approx((ci["ci_low"], ci["ci_high"]), abs=1e-12)
            assert cell["clustered"] == (keys is not None) and cell["ci_low"] <= cell["estimate"] <= cell["ci_high"]
            clustered.append(cell["clustered"])
        rep = cells[(arm, "repetition_4gram_rate")]
        assert rep["estimate"] == pytest.approx(sum(r["repetition_4gram_rate"] for r in mine) / len(mine))
        assert cells[(arm, "tokens_scored")]["count"] == sum(r["tokens_scored"] for r in mine)
    assert any(clustered)
    for c in (c for c in summary["comparisons"] if c["metric"].endswith("_nll")):
        a, b = cells[(c["arm_a"], c["metric"])], cells[(c["arm_b"], c["metric"])]
        assert c["delta"] == pytest.approx(a["estimate"] - b["estimate"], abs=1e-12)
    # the report is rebuilt from the records alone
    (sample_run / "summary.json").unlink()
    res = CliRunner().invoke(cli, ["report", str(sample_run)])
    assert res.exit_code == 0, res.output
    assert _summary(sample_run) == summary


def test_a_record_equals_a_plain_forward_pass_over_its_row(sample_run):
    """No batching, no padding: one forward per sequence, NLL summed by kind by hand."""
    from harness.modelspec import load_model
    from harness.types import Arm
    from tasks.thought_spans import parse_thoughts

    rec = next(r for r in _records(sample_run) if r["arm"] == "tiny-qwen3")
    item = next(json.loads(line) for line in (sample_run / "items.jsonl").read_text().splitlines()
                if json.loads(line)["id"] == rec["item_id"])
    model, tok, _ = load_model(Arm(name="tiny-qwen3", model="random:tiny-qwen3", dtype="float32", device="cpu"))
    model.eval()

    def enc(text):
        return tok(text, add_special_tokens=False).input_ids

    ids, kinds = [], []
    for kind, content in parse_thoughts(item["prefix"]).segments():
        piece = enc("<think>") + enc(content) + enc("</think>") if kind == "thought" else enc(content)
        ids, kinds = ids + piece, kinds + [kind] * len(piece)
    ids, kinds = ids[:320], kinds[:320]
    raw = enc(" ".join(parse_thoughts(item["prefix"]).stripped().split()))[:320]

    def nll(seq):
        with torch.no_grad():
            logp = model(input_ids=torch.tensor([seq])).logits[0, :-1].double().log_softmax(-1)
        return [-float(logp[i, t]) for i, t in enumerate(seq[1:])]

    tok_nll = nll(ids)
    assert rec["raw_nll_sum"] == pytest.approx(sum(nll(raw)), rel=1e-5)
    assert rec["augmented_nll_sum"] == pytest.approx(sum(tok_nll), rel=1e-5)
    assert rec["thought_nll_sum"] == pytest.approx(sum(v for v, k in zip(tok_nll, kinds[1:]) if k == "thought"),
                                                   rel=1e-5)
    assert rec["thought_tokens"] == sum(k == "thought" for k in kinds[1:])


def test_the_trainers_eval_and_the_nll_eval_give_the_same_numbers(tmp_path):
    """SFT for 2 steps; its final eval (on the live weights) equals `harness run --plugin nll` on the
    checkpoint, on the rows it held out (`rows=validation`), with the same token budget."""
    from helpers import write_interleaved

    from training import sft
    from training.common import Setup

    data = write_interleaved(tmp_path / "inter.jsonl", n=16)
    cfg = sft.SFTConfig(steps=2, batch_rows=4, micro_batch=2, max_tokens=160, lr=3e-3, warmup_steps=0,
                        val_fraction=0.125, eval_every=0, rep_samples=4, rep_tokens=16)
    out = sft.train(Setup(arm="random:tiny-qwen3", out=str(tmp_path / "ckpt"), device="cpu", log_every=0,
                          data=str(data), save_every=0), cfg)
    trained = json.loads((out.root / "metrics.json").read_text())["evals"][-1]
    arms = tmp_path / "arms.toml"
    # float32 as the trainer's master weights (auto would be bfloat16 on a CPU with native bfloat16)
    arms.write_text(f'[arms.sft]\nmodel = "{out.root}"\ndevice = "cpu"\ndtype = "float32"\n'
                    f"options = {{ score_batch_tokens = {cfg.micro_batch * cfg.max_tokens} }}\n")
    run = tmp_path / "run"
    _run(run, "--arms-file", str(arms), "--arm", "sft", "--data-file", str(data), "--task-option", "rows=validation",
         "--task-option", "val_fraction=0.125", "--option", "max_tokens=160", "--max-new-tokens", "16")
    recs = _records(run)
    train_raw, held = sft.split_rows([dict(r, _id=r["id"]) for r in map(json.loads, open(data))], 0.125)
    assert sorted(r["item_id"] for r in recs) == sorted(r["_id"] for r in held) and len(recs) == 2
    cells = _cells(_summary(run))
    for ours, theirs in (("raw_nll", "val_nll_raw"), ("augmented_nll", "val_nll"), ("thought_nll", "thought_nll"),
                         ("text_nll", "text_nll"), ("post_thought_nll", "post_thought_nll")):
        assert cells[("sft", ours)]["estimate"] == trained[theirs], ours
    assert cells[("sft", "repetition_4gram_rate")]["estimate"] == pytest.approx(trained["repetition_4gram_rate"])


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rows_without_thoughts_are_scored_and_their_thought_nll_is_undefined(tmp_path):
    data = _write(tmp_path / "d.jsonl", [
        {"id": "a", "text": "The sand moves. <think>waves next</think> The waves sort it by size."},
        {"id": "plain", "text": "A row with no thought at all, just prose about rivers and the sea."},
        {"id": "end", "text": "Text first, then a thought at the very end. <think>nothing follows</think>"}])
    out = tmp_path / "run"
    _run(out, *ARMS, "--data-file", str(data), "--max-new-tokens", "8")
    recs = {(r["arm"], r["item_id"]): r for r in _records(out)}
    plain, end = recs[("tiny-qwen3", "plain")], recs[("tiny-qwen3", "end")]
    assert plain["thoughts"] == 0 and plain["thought_tokens"] == 0 and plain["thought_nll"] is None
    assert plain["post_thought_nll"] is None and "no thoughts" in plain["note"]
    assert plain["raw_nll"] is not None and plain["text_nll"] is not None and plain["augmented_nll"] is not None
    assert end["thought_nll"] is not None and end["post_thought_nll"] is None and "post_thought_nll" in end["note"]
    summary = _summary(out)
    cells = _cells(summary)
    assert cells[("tiny-qwen3", "thought_nll")]["n_items"] == 2 and cells[("tiny-qwen3", "raw_nll")]["n_items"] == 3
    assert summary["rows"]["tiny-qwen3"] == {"rows": 3, "without_thoughts": 1, "truncated": 0}
    assert any("1 of 3 rows have no thoughts" in n for n in summary["notes"])
    assert "1 of 3 rows have no thoughts" in (out / "report.md").read_text()
    # only plain rows: the thought cells have no estimate, the rest is reported
    only = _write(tmp_path / "plain.jsonl", [{"id": f"p{i}", "text": f"Plain prose number {i} about sand."}
                                             for i in range(3)])
    out2 = tmp_path / "run2"
    _run(out2, *ARMS, "--data-file", str(only), "--option", "repetition=off")
    cells = _cells(_summary(out2))
    assert cells[("tiny-qwen3", "thought_nll")]["estimate"] is None
    assert cells[("tiny-qwen3", "raw_nll")]["estimate"] is not None
    assert all(r["repetition_4gram_rate"] is None for r in _records(out2))


def test_killed_run_resumes_to_the_same_records(tmp_path, monkeypatch):
    """Records cut off the end (a kill) are made again: bit-for-bit the same, chunks scored whole."""
    from plugins.evals.nll import NLL

    monkeypatch.setattr(NLL, "chunk_items", 2)
    args = [*ARMS, "--limit", "5", "--option", "max_tokens=96", "--max-new-tokens", "8"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    _run(whole, *args)
    _run(cut, *args)
    path = cut / "samples.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-3]) + lines[-3][:17])  # three records gone, a torn line left
    res = _run(cut, *args)
    assert "resuming" in res.output and "3 new records" in res.output

    def key(r):
        return r["arm"], r["item_id"]

    assert sorted(_records(cut), key=key) == sorted(_records(whole), key=key)
    assert _summary(cut)["metrics"] == _summary(whole)["metrics"]


def test_bad_input_is_one_line_before_any_work(tmp_path):
    out = tmp_path / "run"
    res = _run(out, *ARMS, "--samples", "2", ok=False)
    assert res.exit_code == 2 and "scores each row once" in res.output and not out.exists()
    res = _run(out, *ARMS, "--option", "max_tokens=lots", ok=False)
    assert res.exit_code == 2 and "max_tokens='lots' is not an integer" in res.output
    res = _run(out, *ARMS, "--option", "repetition=maybe", ok=False)
    assert res.exit_code == 2 and "repetition='maybe'" in res.output
    res = _run(out, *ARMS, "--task", "chunks", ok=False)
    assert res.exit_code == 2 and "scores whole interleaved rows" in res.output and not out.exists()
    bad = _write(tmp_path / "bad.jsonl", [{"id": "x", "text": "A <think>open and never closed."}])
    res = _run(out, *ARMS, "--data-file", str(bad), ok=False)
    assert res.exit_code == 1 and f"{bad}:1: unbalanced tags" in res.output and not out.exists()
    arms = tmp_path / "arms.toml"
    arms.write_text('[arms.notags]\nmodel = "random:tiny-qwen3"\ndevice = "cpu"\nthink_open = ""\n')
    res = _run(out, "--arms-file", str(arms), "--arm", "notags", ok=False)
    assert res.exit_code == 2 and "no think_open/think_close tags" in res.output and not out.exists()


def test_different_tokenizers_are_named_and_noted():
    from reports.nll import summarize

    recs = []
    for arm, sha, scale in (("a", "aaa", 1.0), ("b", "bbb", 2.0)):
        for i in range(3):
            recs.append({"arm": arm, "condition": "nll", "item_id": f"r{i}", "sample": 0, "cluster": None,
                         "tokenizer": f"tok-{arm}", "tokenizer_sha": sha, "thoughts": 1, "truncated": False,
                         **{f"{k}_nll_sum": scale * (i + 2) * 10 for k in KINDS},
                         **{f"{k}_tokens": 10 + i for k in KINDS},
                         "tokens_scored": 20, "repetition_4gram_rate": 0.1 * i})
    s = summarize(recs, {"config": {"seed": 0}})
    assert s["tokenizers"] == {"a": {"tokenizer": "tok-a", "tokenizer_sha": "aaa"},
                               "b": {"tokenizer": "tok-b", "tokenizer_sha": "bbb"}}
    assert any("different tokenizers" in n for n in s["notes"])
    delta = next(c for c in s["comparisons"] if c["metric"] == "raw_nll")
    cells = _cells(s)
    assert (delta["arm_a"], delta["arm_b"]) == ("b", "a")
    assert delta["delta"] == pytest.approx(cells[("b", "raw_nll")]["estimate"] - cells[("a", "raw_nll")]["estimate"])
    assert delta["p_value"] is not None and delta["p_holm"] is not None and delta["a_better"] == 1.0


def test_interleaved_task_items_options_and_heldout_rows(tmp_path):
    from helpers import write_interleaved

    from harness.checks import check_items
    from harness.errors import BadInput
    from tasks.interleaved import InterleavedTask
    from tasks.loading import DataError
    from training.sft import split_rows

    items = InterleavedTask({}).items()
    check_items("interleaved", items)
    assert len(items) == 32 and all(i.meta["thoughts"] > 0 and "<think>" in i.prefix for i in items)
    assert [i.id for i in InterleavedTask({"data": "sample"}).items()] == [i.id for i in items]
    json.dumps(InterleavedTask({}).config(), allow_nan=False)
    with pytest.raises(BadInput):
        InterleavedTask({"no_such_option": "1"})
    data = write_interleaved(tmp_path / "d.jsonl", n=16)
    rows = [dict(r, _id=r["id"]) for r in map(json.loads, open(data))]
    train, held = split_rows(rows, 0.25)
    got = InterleavedTask({"data": str(data), "rows": "validation", "val_fraction": "0.25"}).items()
    assert [i.id for i in got] == [r["_id"] for r in held]
    got = InterleavedTask({"data": str(data), "rows": "train", "val_fraction": "0.25"}).items()
    assert [i.id for i in got] == [r["_id"] for r in train]
    empty = _write(tmp_path / "e.jsonl", [{"id": "x", "text": "fine <think></think> text"}])
    with pytest.raises(DataError, match=r"e\.jsonl:1: empty thought"):
        InterleavedTask({"data": str(empty)}).items()
