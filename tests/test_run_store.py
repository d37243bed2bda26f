"""The run store never destroys, mixes or double-counts data: one test per finding."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from harness.cli import cli
from tests.helpers import write_chunks

pytest.importorskip("torch")

FAST = ["--arm", "tiny-qwen3", "--judge", "lexical", "--quiet", "--samples", "2", "--limit", "3",
        "--thought-max-tokens", "4", "--suffix-max-tokens", "4", "--intervention", "normal",
        "--intervention", "blank"]


def _run(args, data):
    return CliRunner().invoke(cli, ["run", *FAST, "--data-file", str(data), *args])


def _lines(res):
    return [line for line in res.output.splitlines() if line.strip()]


def _broken_model(tmp_path):
    model = tmp_path / "broken-model"
    model.mkdir()
    (model / "config.json").write_text("{}")  # resolves, fails to load after the run directory is open
    return model


@pytest.fixture
def data(tmp_path):
    return write_chunks(tmp_path / "d.jsonl", n=4)


@pytest.fixture
def done_run(tmp_path, data):
    out = tmp_path / "run"
    res = _run(["--out", str(out)], data)
    assert res.exit_code == 0, res.output
    return out


# -- critical: a failed run never deletes what the user had ------------------------------------

def test_out_with_user_files_is_refused_and_kept(tmp_path, data):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    res = CliRunner().invoke(cli, ["run", "--arm", str(_broken_model(tmp_path)), "--judge", "lexical",
                                   "--data-file", str(data), "--out", str(out)])
    assert res.exit_code == 2 and "not a run directory" in res.output and "notes.txt" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_out_dot_in_a_directory_with_files_is_refused(tmp_path, data, monkeypatch):
    (tmp_path / "keep.py").write_text("x = 1\n")
    monkeypatch.chdir(tmp_path)
    res = _run(["--out", "."], data)
    assert res.exit_code == 2 and "not a run directory" in res.output
    assert (tmp_path / "keep.py").read_text() == "x = 1\n" and not (tmp_path / "manifest.json").exists()


def test_failed_run_in_an_existing_empty_dir_removes_only_its_files(tmp_path, data):
    out = tmp_path / "empty"
    out.mkdir()
    res = CliRunner().invoke(cli, ["run", "--arm", str(_broken_model(tmp_path)), "--judge", "lexical",
                                   "--data-file", str(data), "--out", str(out)])
    assert res.exit_code == 1 and "could not load" in res.output
    assert out.is_dir() and list(out.iterdir()) == []


def test_out_that_is_a_file_is_one_line(tmp_path, data):
    out = tmp_path / "file.txt"
    out.write_text("precious")
    res = _run(["--out", str(out)], data)
    assert res.exit_code == 2 and len(_lines(res)) == 1 and "is a file" in res.output
    assert out.read_text() == "precious"


# -- high ------------------------------------------------------------------------------------

def test_second_run_on_a_locked_dir_exits_2_and_a_stale_lock_is_taken_over(tmp_path, data, done_run):
    before = (done_run / "samples.jsonl").read_text()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from harness.store import RunStore; s = RunStore(sys.argv[1]); s.lock(); "
        "print('locked', flush=True); time.sleep(120)"), str(done_run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        res = _run(["--out", str(done_run)], data)
        assert res.exit_code == 2 and f"process {holder.pid}" in res.output and "in use" in res.output
    finally:
        holder.kill()  # a killed holder leaves the lock file; the kernel released its lock
        holder.wait()
    assert (done_run / ".lock").exists()
    res = _run(["--out", str(done_run)], data)
    assert res.exit_code == 0 and "(12 records already done)" in res.output, res.output
    assert (done_run / "samples.jsonl").read_text() == before


def test_records_without_manifest_are_refused(data, done_run):
    (done_run / "manifest.json").unlink()
    before = (done_run / "samples.jsonl").read_text()
    res = _run(["--out", str(done_run), "--samples", "1"], data)
    assert res.exit_code == 2 and "no manifest.json" in res.output and len(_lines(res)) == 1
    assert (done_run / "samples.jsonl").read_text() == before


def test_edited_item_text_refuses_resume(data, done_run):
    rows = [json.loads(line) for line in open(data)]
    rows[0]["text"] = rows[0]["text"].replace("river", "canal")
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = _run(["--out", str(done_run)], data)
    assert res.exit_code == 2 and "items' content changed" in res.output


def test_retrained_local_model_refuses_resume(tmp_path, data):
    from transformers import AutoModelForCausalLM

    from harness.modelspec import load_model
    from harness.types import Arm

    model, tok, _ = load_model(Arm(name="m", model="random:tiny-qwen3"))
    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    args = ["run", "--arm", str(ckpt), "--judge", "lexical", "--quiet", "--samples", "1", "--limit", "2",
            "--thought-max-tokens", "3", "--suffix-max-tokens", "3", "--intervention", "blank",
            "--data-file", str(data), "--out", str(tmp_path / "run")]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert "sha256" in manifest["fingerprints"][str(ckpt)]["method"]
    again = AutoModelForCausalLM.from_pretrained(ckpt)
    with __import__("torch").no_grad():
        next(again.parameters()).add_(0.01)  # "retrained in place"
    again.save_pretrained(ckpt)
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and "model files changed" in res.output and str(ckpt) in res.output


def _report(run):
    return CliRunner().invoke(cli, ["report", str(run)])


def test_report_drops_exact_repeats_with_a_warning(done_run):
    lines = (done_run / "samples.jsonl").read_text().splitlines(keepends=True)
    with open(done_run / "samples.jsonl", "a") as fh:
        fh.writelines(lines[:3])
    res = _report(done_run)
    assert res.exit_code == 0 and "3 exact repeat(s)" in res.output and "- Records: 12" in res.output
    assert json.loads((done_run / "summary.json").read_text())["n_records"] == 12


@pytest.mark.parametrize("change,message", [
    (lambda r: dict(r, reward=1 - (r["reward"] or 0)), "conflicts with line 1"),
    (lambda r: dict(r, arm="other-arm"), "arm 'other-arm'"),
    (lambda r: dict(r, item_id="zzz"), "item 'zzz'"),
    (lambda r: dict(r, sample=7), "sample 7"),
    (lambda r: dict(r, condition="swapped"), "condition 'swapped'"),
])
def test_report_refuses_conflicting_and_foreign_records(done_run, change, message):
    first = json.loads((done_run / "samples.jsonl").read_text().splitlines()[0])
    with open(done_run / "samples.jsonl", "a") as fh:
        fh.write(json.dumps(change(first)) + "\n")
    res = _report(done_run)
    assert res.exit_code == 2 and f"samples.jsonl:13" in res.output and message in res.output, res.output


# -- medium ----------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["missing", "torn"])
def test_items_file_is_repaired_on_resume(tmp_path, data, done_run, damage):
    items = done_run / "items.jsonl"
    good = items.read_text()
    if damage == "missing":
        items.unlink()
    else:
        items.write_text(good[: len(good) // 2])
    res = _run(["--out", str(done_run)], data)
    assert res.exit_code == 0, res.output
    assert items.read_text() == good
    other = tmp_path / "other"
    args = [a if a != "tiny-qwen3" else "random:tiny-qwen3" for a in FAST]  # the same items, another arm
    assert CliRunner().invoke(cli, ["run", *args, "--data-file", str(data), "--out", str(other)]).exit_code == 0
    res = CliRunner().invoke(cli, ["report", str(done_run), str(other)])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("flag,value", [("--temperature", "nan"), ("--temperature", "inf"), ("--top-p", "nan"),
                                        ("--top-p", "0")])
def test_non_finite_or_out_of_range_sampling_is_refused(tmp_path, data, flag, value):
    out = tmp_path / "run"
    res = _run(["--out", str(out), flag, value], data)
    assert res.exit_code == 2 and flag in res.output and not out.exists(), res.output


def test_unknown_option_key_is_refused_listing_valid(tmp_path, data):
    out = tmp_path / "run"
    res = _run(["--out", str(out), "--option", "generic_thougth=hi", "--intervention", "generic"], data)
    assert res.exit_code == 2 and len(_lines(res)) == 1 and "generic_thougth" in res.output
    assert "generic_thought" in res.output and not out.exists()


def test_manifest_is_strict_json(done_run):
    def refuse(name):
        raise AssertionError(f"non-finite {name} in manifest")

    json.loads((done_run / "manifest.json").read_text(), parse_constant=refuse)
    json.loads((done_run / "summary.json").read_text(), parse_constant=refuse)


def test_secrets_never_written_or_printed(tmp_path, data, monkeypatch):
    arms = tmp_path / "arms.toml"
    arms.write_text('[arms.keyed]\nmodel = "random:tiny-qwen3"\n'
                    'options = { seed = 0, api_key = "SECRET-ONE", extra_body = { api_key = "SECRET-TWO" } }\n')
    out = tmp_path / "run"
    args = ["run", "--arms-file", str(arms), "--arm", "keyed", "--judge", "lexical", "--quiet", "--samples", "1",
            "--limit", "2", "--thought-max-tokens", "3", "--suffix-max-tokens", "3", "--intervention", "blank",
            "--data-file", str(data), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", ["harness", *args])
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    written = "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())
    assert "<redacted>" in written
    for secret in ("SECRET-ONE", "SECRET-TWO"):
        assert secret not in written and secret not in res.output
    served = CliRunner().invoke(cli, ["run", "--arm", "tiny-qwen3", "--backend", "openai", "--judge", "lexical",
                                      "--backend-url", "http://user:SECRET-FOUR@127.0.0.1:9", "--limit", "2",
                                      "--data-file", str(data), "--out", str(tmp_path / "served")])
    assert served.exit_code != 0 and "SECRET-FOUR" not in served.output and "<redacted>" in served.output


def test_redaction_rules():
    from harness.redact import is_secret_key, redact, redact_argv

    assert all(map(is_secret_key, ["api_key", "hf_token", "apiKey", "OPENAI_API_KEY", "password"]))
    assert not any(map(is_secret_key, ["max_tokens", "thought_max_tokens", "monkey", "score_batch_tokens"]))
    assert redact({"a": {"api_key": "x", "n": 1}, "u": "https://u:p@h/x?token=t&n=1"}) == {
        "a": {"api_key": "<redacted>", "n": 1}, "u": "https://<redacted>@h/x?token=<redacted>&n=1"}
    assert redact_argv(["--option", "api_key=abc", "--api-key", "abc", "--samples", "2"]) == [
        "--option", "api_key=<redacted>", "--api-key", "<redacted>", "--samples", "2"]


@pytest.mark.parametrize("content", ["", '{"config": {"eval": "thought_pr'])
def test_empty_or_truncated_manifest_is_one_line(done_run, content):
    (done_run / "manifest.json").write_text(content)
    res = _report(done_run)
    assert res.exit_code == 2 and len(_lines(res)) == 1 and "manifest.json" in res.output


@pytest.mark.parametrize("line,message", [(b"\xff\xfe not utf-8\n", "not UTF-8"), (b"[1, 2]\n", "JSON object"),
                                          (b'{"arm": \n', "malformed JSON")])
def test_bad_record_lines_name_file_and_line(done_run, line, message):
    with open(done_run / "samples.jsonl", "ab") as fh:
        fh.write(line)
    res = _report(done_run)
    assert res.exit_code == 2 and "samples.jsonl:13" in res.output and message in res.output, res.output
