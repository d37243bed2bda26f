"""``harness study``: a study file's evals run into one directory, resume, and render one report."""

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.study import TITLES, load_study

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]

TINY = """
arms = ["tiny-qwen3", "random:tiny-qwen3"]
seed = 1

[[eval]]
plugin = "pairwise"
limit = 2
samples = 1
suffix_max_tokens = 6
judge = "embedding"

[[eval]]
plugin = "nll"
limit = 2
max_new_tokens = 4
options = { max_tokens = 128 }

[[eval]]
plugin = "reward_gate"
name = "gate"
limit = 2
samples = 2
thought_max_tokens = 4
suffix_max_tokens = 6
judge = "lexical"
judge_options = { threshold = 0.3 }
"""


def _study(tmp_path, text, name="study.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _invoke(*args):
    return CliRunner().invoke(cli, ["study", *map(str, args)])


def _records(run_dir):
    return (run_dir / "samples.jsonl").read_text().splitlines()


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    out = tmp / "out"
    res = _invoke(_study(tmp, TINY), "--out", out)
    assert res.exit_code == 0, res.output
    return tmp, out


def test_each_eval_is_a_normal_run_directory(study_dir):
    _, out = study_dir
    for name, plugin in (("pairwise", "pairwise"), ("nll", "nll"), ("gate", "reward_gate")):
        manifest = json.loads((out / name / "manifest.json").read_text())
        assert manifest["config"]["eval"] == plugin
        assert [a["name"] for a in manifest["config"]["arms"]] == ["tiny-qwen3", "random:tiny-qwen3"]
        assert manifest["config"]["seed"] == 1
        assert (out / name / "report.md").is_file() and (out / name / "summary.json").is_file()
    gate = json.loads((out / "gate" / "manifest.json").read_text())["config"]
    assert (gate["samples"], gate["limit"], gate["judge"]["name"]) == (2, 2, "lexical")


def test_combined_report_has_an_index_and_every_section(study_dir):
    _, out = study_dir
    text = (out / "report.md").read_text()
    for name in ("pairwise", "nll", "gate"):
        n = len(_records(out / name))
        assert f"| {name}/ | {n} | {n} | ok |" in text
    for plugin in ("pairwise", "nll"):
        assert f"## {TITLES[plugin]}\n" in text
    assert f"## {TITLES['reward_gate']} (gate)\n" in text
    assert text.index(TITLES["pairwise"]) < text.index(TITLES["nll"]) < text.index(TITLES["reward_gate"])
    assert "### pairwise report" in text and "### reward_gate report" in text  # the runs' own, demoted


def test_a_rerun_resumes_without_new_records(study_dir):
    tmp, out = study_dir
    before = {n: _records(out / n) for n in ("pairwise", "nll", "gate")}
    res = _invoke(tmp / "study.toml", "--out", out)
    assert res.exit_code == 0, res.output
    assert {n: _records(out / n) for n in before} == before
    for name in before:
        assert f"| {name}/ | {len(before[name])} | 0 | ok |" in (out / "report.md").read_text()


def test_a_failing_eval_is_recorded_and_the_others_still_run(tmp_path):
    text = """arms = ["tiny-qwen3"]
[[eval]]
plugin = "reasoning"
task = "gsm8k"
task_options = { data = "no-such-file.jsonl" }
[[eval]]
plugin = "nll"
limit = 1
max_new_tokens = 2
options = { max_tokens = 64 }
"""
    out = tmp_path / "out"
    res = _invoke(_study(tmp_path, text), "--out", out)
    assert res.exit_code == 1, res.output
    assert "1 of 2 evals failed (reasoning)" in res.output
    report = (out / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| reasoning |"))
    assert "FAILED:" in row and "no-such-file" in row
    assert "| nll | nll | nll/ | 1 | 1 | ok |" in report
    assert f"## {TITLES['reasoning']}" in report and f"## {TITLES['nll']}" in report


BAD = [
    ('arms = ["tiny-qwen3"]\ncolour = 1\n[[eval]]\nplugin = "nll"\n', "unknown top-level key 'colour'"),
    ('arms = ["tiny-qwen3"]\n[[eval]]\nplugin = "nll"\n[[eval]]\nplugin = "pairwise"\nsampels = 2\n',
     "[[eval]] #2 (plugin pairwise): unknown key 'sampels'"),
    ('arms = ["tiny-qwen3"]\n[[eval]]\nplugin = "nope"\n', "[[eval]] #1 (plugin nope): unknown plugin 'nope'"),
    ('arms = ["tiny-qwen3"]\n[[eval]]\nplugin = "nll"\nlimit = 0\n', "limit must be an integer >= 1"),
    ('arms = ["tiny-qwen3"]\n[[eval]]\nplugin = "nll"\njudge = "lexical"\n', "takes no judge"),
    ('arms = ["tiny-qwen3"]\n[[eval]]\nplugin = "reasoning"\nsuffix_max_tokens = 8\n', "has no suffix_max_tokens"),
    ('arms = ["tiny-qwen3"]\n[[eval]]\nplugin = "nll"\n[[eval]]\nplugin = "nll"\n', "used twice"),
    ('arms = ["tiny-qwen3"]\n[[eval]]\nplugin = "nll"\ntop_p = 0\n', "top_p must be a finite number in (0, 1]"),
    ('arms = []\n[[eval]]\nplugin = "nll"\n', "arms must be a non-empty list"),
    ('arms = ["tiny-qwen3"]\n', "no [[eval]] tables"),
    ('arms = ["tiny-qwen3"\n', "not valid TOML"),
    ('arms = ["tiny-qwen3"]\narms_file = "missing.toml"\n[[eval]]\nplugin = "nll"\n', "arms_file 'missing.toml'"),
    ('arms = ["tiny-qwen3"]\n[[eval]]\nplugin = "nll"\nlimit = 1\n[[eval]]\nplugin = "pairwise"\noptions = [1]\n',
     "options must be a table"),
]


@pytest.mark.parametrize("text,needle", BAD)
def test_bad_study_files_are_one_line_errors_before_any_run(tmp_path, text, needle):
    path = _study(tmp_path, text)
    out = tmp_path / "out"
    res = _invoke(path, "--out", out)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and str(path) in lines[0], res.output
    assert not out.exists()


def test_packaged_study_files_parse(tmp_path):
    cpu = load_study(ROOT / "studies" / "cpu.toml")
    assert cpu.arms == ("tiny-qwen3", "smollm2-135m")
    assert [e.plugin for e in cpu.entries] == ["pairwise", "nll", "reward_gate", "reasoning", "thought_probe"]
    # the reference study reads the README's arms file from the directory above it
    (tmp_path / "studies").mkdir()
    shutil.copy(ROOT / "studies" / "reference.toml", tmp_path / "studies" / "reference.toml")
    (tmp_path / "study.toml").write_text("".join(f'[arms.{a}]\nmodel = "./ckpt/{a}"\n' for a in (
        "think_base", "think_phase3", "think_base_rlmt", "think_phase3_rlmt")))
    ref = load_study(tmp_path / "studies" / "reference.toml")
    assert len(ref.arms) == 4 and {e.plugin for e in ref.entries} == set(TITLES)
    reasoning = next(e for e in ref.entries if e.plugin == "reasoning").request
    assert reasoning.task_options["gsm8k.fewshot"] == "2"
