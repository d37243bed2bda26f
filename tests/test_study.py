"""``harness study``: a study file's evals run into one directory, resume, and render one report."""

import json
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
    ('arms = ["tiny-qwen3"]\n[[eval]]\nplugin = "nll"\nretriever = "bm25"\n', "takes no retriever"),
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


def test_packaged_study_files_parse(tmp_path, monkeypatch):
    cpu = load_study("cpu")  # a packaged study by name
    assert cpu.path == ROOT / "harness" / "studies" / "cpu.toml"
    assert cpu.arms == ("tiny-qwen3", "tiny-sft", "smollm2-135m")
    assert [(s.name, s.stage, s.arm) for s in cpu.steps] == [("tiny-sft", "sft", "tiny-qwen3")]
    assert [e.plugin for e in cpu.entries] == ["pairwise", "nll", "reward_gate", "reasoning", "thought_probe"]
    # the reference study reads the README's arms file (and data) from the working directory
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study.toml").write_text("".join(f'[arms.{a}]\nmodel = "./ckpt/{a}"\n' for a in (
        "think_base", "think_phase3", "think_base_rlmt", "think_phase3_rlmt")))
    ref = load_study("reference")
    assert len(ref.arms) == 4 and {e.plugin for e in ref.entries} == set(TITLES) - {"search_r1"}  # the five tables
    reasoning = next(e for e in ref.entries if e.plugin == "reasoning").request
    assert reasoning.task_options["gsm8k.fewshot"] == "2"


def test_an_unknown_study_name_lists_the_packaged_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = _invoke("cpuu")
    assert res.exit_code == 2 and "no packaged study of that name (packaged: cpu, reference)" in res.output


TRAINED = """
arms = ["tiny-qwen3", "tiny-sft", "tiny-sft2"]
seed = 3

[[train]]
name = "tiny-sft"
stage = "sft"
arm = "tiny-qwen3"
args = { steps = 2, lr = 1e-3, warmup_steps = 0, rep_samples = 0, max_tokens = 128 }

[[train]]
name = "tiny-sft2"
stage = "sft"
arm = "tiny-sft"
args = { steps = 1, lr = 1e-3, warmup_steps = 0, rep_samples = 0, max_tokens = 128, seed = 5 }

[[eval]]
plugin = "nll"
limit = 2
max_new_tokens = 2
options = { max_tokens = 64 }
"""


def test_a_study_trains_its_arms_before_the_evals_and_reuses_them(tmp_path):
    out = tmp_path / "out"
    res = _invoke(_study(tmp_path, TRAINED), "--out", out)
    assert res.exit_code == 0, res.output
    lineage = json.loads((out / "train" / "tiny-sft2" / "lineage.json").read_text())
    assert json.loads((out / "train" / "tiny-sft" / "lineage.json").read_text())["config"]["seed"] == 3
    assert lineage["config"]["seed"] == 5 and lineage["config"]["arm"] == str(out / "train" / "tiny-sft")
    config = json.loads((out / "nll" / "manifest.json").read_text())["config"]
    assert [(a["name"], a["model"]) for a in config["arms"]] == [
        ("tiny-qwen3", "random:tiny-qwen3"), ("tiny-sft", str(out / "train" / "tiny-sft")),
        ("tiny-sft2", str(out / "train" / "tiny-sft2"))]
    assert config["arms"][1]["device"] == "cpu"  # the parent's device
    report = (out / "report.md").read_text()
    assert "| tiny-sft | sft | tiny-qwen3 | train/tiny-sft/ | ok |" in report
    weights = {n: (out / "train" / n / "model.safetensors").stat().st_mtime_ns for n in ("tiny-sft", "tiny-sft2")}
    res = _invoke(tmp_path / "study.toml", "--out", out)  # finished checkpoints and records are kept
    assert res.exit_code == 0, res.output
    assert {n: (out / "train" / n / "model.safetensors").stat().st_mtime_ns for n in weights} == weights
    assert "| nll | nll | nll/ | 6 | 0 | ok |" in (out / "report.md").read_text()


def test_a_failed_train_step_stops_the_study_before_its_evals(tmp_path):
    text = TRAINED.replace('arm = "tiny-qwen3"', 'arm = "random:no-such-preset"')
    text = text.replace('arms = ["tiny-qwen3", "tiny-sft", "tiny-sft2"]', 'arms = ["tiny-sft"]')
    text = text[:text.index("[[train]]\nname = \"tiny-sft2\"")] + text[text.index("[[eval]]"):]
    out = tmp_path / "out"
    res = _invoke(_study(tmp_path, text), "--out", out)
    assert res.exit_code == 1 and "[[train]] tiny-sft failed, so no eval ran" in res.output, res.output
    assert "| tiny-sft | sft | random:no-such-preset | train/tiny-sft/ | FAILED:" in (out / "report.md").read_text()
    assert not (out / "nll").exists()


_TRAIN = 'arms = ["tiny-qwen3"]\n[[eval]]\nplugin = "nll"\n[[train]]\n'
BAD_TRAIN = [
    (_TRAIN + 'name = "a"\nstage = "sfx"\narm = "tiny-qwen3"\n', "unknown stage 'sfx'; valid: dpo, rlmt, sft"),
    (_TRAIN + 'name = "a"\nstage = "sft"\narm = "nope"\n', "unknown arm 'nope' to train from"),
    (_TRAIN + 'name = "tiny-qwen3"\nstage = "sft"\narm = "tiny-qwen3"\n', "is an arm already"),
    (_TRAIN + 'name = "a"\nstage = "sft"\narm = "tiny-qwen3"\nargs = { stpes = 2 }\n', "has no --stpes; valid:"),
    (_TRAIN + 'name = "a"\nstage = "sft"\narm = "tiny-qwen3"\nargs = { out = "x" }\n', "args.out is set by the study"),
    (_TRAIN + 'name = "a"\nstage = "sft"\n', "needs arm ="),
    (_TRAIN + 'name = "a"\nstage = "sft"\narm = "tiny-qwen3"\nsteps = 2\n', "unknown key 'steps'"),
    ('arms = ["tiny-qwen3"]\n[[eval]]\nplugin = "nll"\nname = "train"\n[[train]]\nname = "a"\nstage = "sft"\n'
     'arm = "tiny-qwen3"\n', "run-dir name 'train' holds the trained arms"),
]


@pytest.mark.parametrize("text,needle", BAD_TRAIN)
def test_bad_train_steps_are_one_line_errors_before_any_work(tmp_path, text, needle):
    path = _study(tmp_path, text)
    out = tmp_path / "out"
    res = _invoke(path, "--out", out)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and str(path) in lines[0], res.output
    assert not out.exists()


def test_a_study_runs_the_search_eval_with_its_retriever(tmp_path):
    pytest.importorskip("bm25s")
    text = f"""arms = ["tiny-qwen3"]
[[eval]]
plugin = "search_r1"
limit = 2
max_new_tokens = 4
options = {{ max_turns = 1 }}
retriever = "bm25"
retriever_options = {{ cache = "{tmp_path / 'index'}", k1 = 1.2 }}
"""
    out = tmp_path / "out"
    res = _invoke(_study(tmp_path, text), "--out", out)
    assert res.exit_code == 0, res.output
    config = json.loads((out / "search_r1" / "manifest.json").read_text())["config"]
    assert config["retriever"]["name"] == "bm25" and config["retriever"]["k1"] == 1.2
    assert f"## {TITLES['search_r1']}" in (out / "report.md").read_text()
