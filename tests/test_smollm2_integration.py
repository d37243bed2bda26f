"""One end-to-end run on the real SmolLM2-135M-Instruct (packaged GGUF) with the embedding judge."""

import json

import pytest
from click.testing import CliRunner

from harness.cli import cli

pytest.importorskip("torch")
pytest.importorskip("gguf")


@pytest.mark.smollm2
def test_probe_on_smollm2_with_embedding_judge(tmp_path):
    out = tmp_path / "run"
    args = ["run", "--plugin", "thought_probe", "--arm", "smollm2-135m", "--judge", "embedding", "--limit", "3",
            "--samples", "2", "--thought-max-tokens", "12", "--suffix-max-tokens", "24", "--quiet", "--out", str(out)]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    recs = [json.loads(l) for l in open(out / "samples.jsonl")]
    assert len(recs) == 3 * 2 * 4
    assert {r["condition"] for r in recs} == {"normal", "blank", "generic", "swapped"}
    assert all(r["reward"] in (0, 1) and -1 <= r["judge_score"] <= 1 for r in recs)
    assert all(r["suffix_logprob"] < 0 and r["true_suffix_tokens"] > 0 for r in recs)
    assert any(r["suffix"].strip() for r in recs)
    # a real model gives the true suffix a higher likelihood than a random one would (log 1/49152 = -10.8)
    assert sum(r["suffix_logprob"] for r in recs) / len(recs) > -8
    report = (out / "report.md").read_text()
    assert "normal - swapped" in report and "[" in report
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["invocations"][0]["generated_tokens"] > 0
    again = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert "0 new records (0 tokens generated" in again.output


@pytest.mark.smollm2
def test_search_r1_on_smollm2_through_bm25_and_the_http_server_alike(tmp_path):
    """Real text through the whole tool-use loop: the same greedy rollouts whether the passages come
    from the in-process index or from a real HTTP retrieval server over it."""
    pytest.importorskip("bm25s")
    from plugins.retrievers.bm25 import BM25Retriever
    from tests.retrieval_server import serve

    cache = f"cache={tmp_path / 'index'}"
    common = ["run", "--plugin", "search_r1", "--arm", "smollm2-135m", "--task", "search_fixture", "--limit", "2",
              "--max-new-tokens", "24", "--option", "chat=true", "--option", "max_turns=1", "--quiet"]
    res = CliRunner().invoke(cli, [*common, "--retriever-option", cache, "--out", str(tmp_path / "bm25")])
    assert res.exit_code == 0, res.output
    retriever = BM25Retriever({"cache": str(tmp_path / "index")})  # the defaults, as in the first run
    with serve(retriever) as server:
        res = CliRunner().invoke(cli, [*common, "--retriever", "http", "--retriever-option", f"url={server.url}",
                                       "--out", str(tmp_path / "http")])
    assert res.exit_code == 0, res.output
    local, remote = ([json.loads(line) for line in (tmp_path / name / "samples.jsonl").read_text().splitlines()]
                     for name in ("bm25", "http"))
    assert len(local) == 2 and [r["turns"] for r in local] == [r["turns"] for r in remote]
    assert any(t["text"].strip() for r in local for t in r["turns"])  # real text
    summary = json.loads((tmp_path / "bm25" / "summary.json").read_text())
    em = next(m for m in summary["metrics"] if m["metric"] == "em" and m["dataset"] == "search_fixture")
    assert em["estimate"] == pytest.approx(sum(r["em"] for r in local) / 2)
