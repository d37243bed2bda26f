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
