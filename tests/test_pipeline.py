import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from harness.cli import cli
from tests.helpers import write_chunks

pytest.importorskip("torch")


def _run(args, tmp_path):
    return CliRunner().invoke(cli, ["run", "--arm", "tiny-qwen3", "--judge", "lexical", "--quiet",
                                    "--suffix-max-tokens", "16", "--thought-max-tokens", "8"] + args,
                              catch_exceptions=False)


def _records(out):
    return [json.loads(l) for l in open(out / "samples.jsonl")]


def test_stage2_is_exact_id_concatenation(tmp_path, monkeypatch):
    from plugins.backends import hf

    seen = []
    original = hf.HFBackend.generate

    def spy(self, requests, progress=None):
        seen.extend(requests)
        return original(self, requests, progress)

    monkeypatch.setattr(hf.HFBackend, "generate", spy)
    data = write_chunks(tmp_path / "d.jsonl", n=3)
    out = tmp_path / "run"
    res = _run(["--data-file", str(data), "--samples", "2", "--out", str(out)], tmp_path)
    assert res.exit_code == 0, res.output
    thoughts = [json.loads(l) for l in open(out / "thoughts.jsonl")]
    backend = hf.HFBackend.__new__(hf.HFBackend)
    from harness.types import Arm
    hf.HFBackend.__init__(backend, Arm(name="tiny", model="random:tiny-qwen3", options={"seed": 0}))
    items = {json.loads(l)["id"]: json.loads(l) for l in open(out / "items.jsonl")}
    close = backend.encode("</think>")
    stage2 = {tuple(r.prompt_ids) for r in seen if r.max_new_tokens == 16}
    for t in thoughts:
        prompt = backend.encode(items[t["item_id"]]["prefix"]) + backend.encode("<think>")
        assert tuple(prompt + t["token_ids"] + close) in stage2
    normal = [t for t in thoughts if t["condition"] == "normal"]
    swapped = {(t["item_id"], t["sample"]): t for t in thoughts if t["condition"] == "swapped"}
    for (item, s), t in swapped.items():
        donor = next(n for n in normal if n["item_id"] == t["source_item"] and n["sample"] == s)
        assert t["source_item"] != item and t["token_ids"] == donor["token_ids"]


def test_rerun_generates_nothing_and_resume_after_torn_write(tmp_path):
    data = write_chunks(tmp_path / "d.jsonl", n=4)
    out = tmp_path / "run"
    args = ["--data-file", str(data), "--samples", "2", "--out", str(out)]
    assert _run(args, tmp_path).exit_code == 0
    full = _records(out)
    assert len(full) == 4 * 2 * 4
    res = _run(args, tmp_path)
    assert "0 new records (0 tokens generated" in res.output
    # Simulate a kill: keep 10 records and a torn half line.
    lines = open(out / "samples.jsonl").read().splitlines(keepends=True)
    with open(out / "samples.jsonl", "w") as fh:
        fh.writelines(lines[:10])
        fh.write(lines[10][:25])
    res = _run(args, tmp_path)
    assert res.exit_code == 0, res.output
    again = _records(out)
    key = lambda r: (r["condition"], r["item_id"], r["sample"])
    assert len({key(r) for r in again}) == len(again) == len(full)
    # The regenerated records are the same samples. Their suffix log-likelihood is the same up to
    # float rounding: the item's prefix is computed again for the resumed chunk, in a forward of
    # another shape than the thought stage's (measured: 1e-8 apart).
    lp = lambda rs: [r.pop("suffix_logprob") for r in rs]
    before, after = sorted(full, key=key), sorted(again, key=key)
    assert lp(after) == pytest.approx(lp(before), abs=1e-6)
    assert after == before


def test_sigkill_mid_run_resumes_without_duplicates(tmp_path):
    data = write_chunks(tmp_path / "d.jsonl", n=12)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "harness", "run", "--arm", "tiny-qwen3", "--judge", "lexical", "--quiet",
           "--data-file", str(data), "--samples", "2", "--suffix-max-tokens", "64", "--out", str(out)]
    env = dict(os.environ)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (out / "samples.jsonl").exists() and (out / "samples.jsonl").stat().st_size > 0:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(open(out / "samples.jsonl").read().splitlines())
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    recs = _records(out)
    keys = [(r["condition"], r["item_id"], r["sample"]) for r in recs]
    assert len(keys) == len(set(keys)) == 12 * 2 * 4
    assert partial < len(keys)


def test_config_change_is_refused(tmp_path):
    data = write_chunks(tmp_path / "d.jsonl", n=2)
    out = tmp_path / "run"
    assert _run(["--data-file", str(data), "--samples", "1", "--out", str(out), "--intervention", "blank"],
                tmp_path).exit_code == 0
    res = CliRunner().invoke(cli, ["run", "--arm", "tiny-qwen3", "--judge", "lexical", "--data-file", str(data),
                                   "--samples", "2", "--out", str(out), "--intervention", "blank"])
    assert res.exit_code != 0 and "samples" in res.output


def test_llm_judge_invalid_answers_are_recorded_not_counted(tmp_path):
    # A random-init judge model cannot answer YES/NO: every verdict must be invalid, reward null.
    data = write_chunks(tmp_path / "d.jsonl", n=2)
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", "--arm", "tiny-qwen3", "--judge", "llm", "--judge-option", "arm=tiny-qwen3",
                                   "--data-file", str(data), "--samples", "1", "--intervention", "blank", "--quiet",
                                   "--suffix-max-tokens", "8", "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    recs = _records(out)
    assert recs and all(r["reward"] is None and r["judge_invalid"] and r["judge_raw"] is not None for r in recs)
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["metric"]: r for r in summary["metrics"]}
    assert rows["invalid_rate"]["estimate"] == 1.0 and "reward" not in rows and "any_success" not in rows
