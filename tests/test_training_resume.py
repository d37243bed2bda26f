"""Resume points and the atomic final checkpoint of ``harness train`` (tiny random Qwen3, CPU).

One test per reliability finding (the last step is a resume point; a kill inside the final
checkpoint leaves nothing that looks like a checkpoint, and the rerun completes it; a moved
unfinished output resumes; half-written ``state.pt.tmp<pid>`` files are removed), then real
``kill -9`` runs: ``harness train rlmt`` and ``harness train sft`` as subprocesses that SIGKILL
themselves at each save point, rerun, and compared with an uninterrupted run: weights bit for
bit, metrics exactly except timings and memory."""

import json
import os
import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from training import rlmt  # noqa: E402
from training.common import Setup  # noqa: E402
from training.output import Output  # noqa: E402

TINY = "random:tiny-qwen3"
LETTER_E = {"words": "e", "match": "substring"}
ROOT = Path(__file__).resolve().parent.parent


def setup(tmp_path, name, **kw):
    return Setup(arm=TINY, out=str(tmp_path / name), device="cpu", log_every=0, **kw)


def small(steps):
    return rlmt.RLMTConfig(steps=steps, samples=3, thought_tokens=4, suffix_tokens=6, prefix_tokens=48, lr=1e-3,
                           judge="keyword")


def weights(d):
    from safetensors.torch import load_file

    return load_file(Path(d) / "model.safetensors")


def same_weights(a, b) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def deterministic(obj):
    """Metrics without wall-clock timings (``*_s``) and peak memory."""
    if isinstance(obj, dict):
        return {k: deterministic(v) for k, v in obj.items() if not k.endswith("_s") and k != "peak_memory_gib"}
    if isinstance(obj, list):
        return [deterministic(v) for v in obj]
    return obj


def metrics(d):
    return json.loads((Path(d) / "metrics.json").read_text())


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread here and in the subprocesses (two of them share the 2 cores), so runs
    split across processes compute bit-identical floats."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def judge_calls(monkeypatch):
    """Counts keyword-judge calls (one per RLMT step); ``fail_at`` makes that call raise."""
    from plugins.judges.keyword import KeywordJudge

    real = KeywordJudge.judge
    calls = {"n": 0, "fail_at": None}

    def judge(self, pairs):
        calls["n"] += 1
        if calls["n"] == calls["fail_at"]:
            raise KeyboardInterrupt
        return real(self, pairs)

    monkeypatch.setattr(KeywordJudge, "judge", judge)
    return calls


def test_save_due():
    from training.output import save_due

    assert [d for d in range(1, 8) if save_due(d, 7, 3)] == [3, 6, 7]
    assert [d for d in range(1, 4) if save_due(d, 3, 0)] == [3]
    assert [d for d in range(1, 31) if save_due(d, 30, 50)] == [30]  # the README's tiny RLMT command


# -- finding 1: the last step is always a resume point ------------------------------------------
def test_last_step_is_a_resume_point_below_save_every(tmp_path, monkeypatch, judge_calls):
    """2 steps with --save-every 50: a kill after the last optimiser step, before the checkpoint,
    resumes at step 2 (no step redone) to the uninterrupted weights."""
    whole = rlmt.train(setup(tmp_path, "whole"), small(2), LETTER_E)
    real = Output.finish

    def killed(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(Output, "finish", killed)
    with pytest.raises(KeyboardInterrupt):
        rlmt.train(setup(tmp_path, "cut"), small(2), LETTER_E)
    state = torch.load(tmp_path / "cut" / ".train_state" / "state.pt", weights_only=False)
    assert state["step"] == 2
    monkeypatch.setattr(Output, "finish", real)
    judge_calls["n"] = 0
    cut = rlmt.train(setup(tmp_path, "cut"), small(2), LETTER_E)
    assert judge_calls["n"] == 0  # nothing redone
    assert same_weights(whole.root, cut.root)
    assert deterministic(metrics(whole.root)) == deterministic(metrics(cut.root))


# -- finding 2: a half-written checkpoint is never mistaken for one, and the rerun completes it -----
def test_kill_between_weights_and_metrics_leaves_no_checkpoint(tmp_path, monkeypatch):
    from harness.modelspec import ModelSpecError, resolve_path
    from harness.types import Arm

    whole = rlmt.train(setup(tmp_path, "whole"), small(2), LETTER_E)
    real = Output.write_json

    def dies_before_final_metrics(self, name, obj, *a, **k):
        if name == "metrics.json" and obj.get("complete"):
            raise KeyboardInterrupt
        return real(self, name, obj, *a, **k)

    monkeypatch.setattr(Output, "write_json", dies_before_final_metrics)
    with pytest.raises(KeyboardInterrupt):
        rlmt.train(setup(tmp_path, "cut"), small(2), LETTER_E)
    cut_dir = tmp_path / "cut"
    assert [p.name for p in cut_dir.iterdir()] == [".train_state"]  # weights and tokenizer are staged only
    with pytest.raises(ModelSpecError, match="no config.json"):
        resolve_path(Arm(name="cut", model=str(cut_dir)))  # not usable as --arm before it is finished
    monkeypatch.setattr(Output, "write_json", real)
    cut = rlmt.train(setup(tmp_path, "cut"), small(2), LETTER_E)  # not "exists and is not a training output"
    assert sorted(p.name for p in cut.root.iterdir()) == sorted(p.name for p in whole.root.iterdir())
    assert metrics(cut.root)["complete"] is True and (cut.root / "lineage.json").is_file()
    assert same_weights(whole.root, cut.root)
    assert resolve_path(Arm(name="cut", model=str(cut_dir)))[0] == "dir"


# -- finding 3: a moved output resumes where it lies ----------------------------------------------
def test_moved_unfinished_output_resumes(tmp_path, judge_calls):
    whole = rlmt.train(setup(tmp_path, "whole", save_every=2), small(3), LETTER_E)
    judge_calls.update(n=0, fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        rlmt.train(setup(tmp_path, "cut", save_every=2), small(3), LETTER_E)
    os.rename(tmp_path / "cut", tmp_path / "moved")
    judge_calls.update(n=0, fail_at=None)
    moved = rlmt.train(setup(tmp_path, "moved", save_every=2), small(3), LETTER_E)
    assert judge_calls["n"] == 1  # resumed at step 2 of 3
    assert same_weights(whole.root, moved.root)
    lineage = json.loads((moved.root / "lineage.json").read_text())
    assert lineage["config"]["out"] == str(moved.root)
    assert lineage["config_digest"] == json.loads((whole.root / "lineage.json").read_text())["config_digest"]
    os.rename(tmp_path / "moved", tmp_path / "finished")  # a moved finished output: the same command is a no-op
    judge_calls["n"] = 0
    assert rlmt.train(setup(tmp_path, "finished", save_every=2), small(3), LETTER_E).finished
    assert judge_calls["n"] == 0


# -- changed inputs: data edited between a kill and the resume is refused, naming it --------------
def test_resume_after_the_data_changed_is_refused(tmp_path, judge_calls):
    from harness.errors import BadInput
    from tests.helpers import write_interleaved

    data = write_interleaved(tmp_path / "data.jsonl")
    cut = setup(tmp_path, "cut", save_every=2)
    cut.data = str(data)
    judge_calls.update(n=0, fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        rlmt.train(cut, small(3), LETTER_E)
    data.write_text(data.read_text().replace("river", "canal"))
    judge_calls.update(n=0, fail_at=None)
    with pytest.raises(BadInput, match="data_sha256"):
        rlmt.train(cut, small(3), LETTER_E)


# -- finding 4: half-written state files are removed on the next run ------------------------------
def test_leftover_state_tmp_is_removed_on_the_next_run(tmp_path, monkeypatch, judge_calls):
    real = torch.save
    saves = {"n": 0}

    def dies_while_saving(obj, f, *a, **k):
        saves["n"] += 1
        if saves["n"] == 2:
            Path(f).write_bytes(b"half a state")
            raise KeyboardInterrupt
        return real(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", dies_while_saving)
    with pytest.raises(KeyboardInterrupt):
        rlmt.train(setup(tmp_path, "cut", save_every=1), small(3), LETTER_E)
    state_dir = tmp_path / "cut" / ".train_state"
    assert [p.name for p in state_dir.glob("state.pt.tmp*")] == [f"state.pt.tmp{os.getpid()}"]
    monkeypatch.setattr(torch, "save", real)
    judge_calls.update(n=0, fail_at=1)  # the next run is stopped at its first step
    with pytest.raises(KeyboardInterrupt):
        rlmt.train(setup(tmp_path, "cut", save_every=1), small(3), LETTER_E)
    assert sorted(p.name for p in state_dir.iterdir()) == ["metrics.json", "state.pt"]
    assert torch.load(state_dir / "state.pt", weights_only=False)["step"] == 1


# -- kill -9 at every save point, subprocesses ----------------------------------------------------
KILLER = r"""
import os, signal, sys

import torch

torch.set_num_threads(1)  # as the test process (see one_thread): the same float results
point, out, argv = sys.argv[1], os.path.abspath(sys.argv[2]), sys.argv[3:]


def die():
    os.kill(os.getpid(), signal.SIGKILL)


if point == "state":  # half-way through writing the last resume point (the 2nd of 2)
    real_save, saves = torch.save, []

    def save(obj, f, *a, **k):
        saves.append(f)
        if len(saves) == 2:
            with open(f, "wb") as fh:
                fh.write(b"half a state")
            die()
        return real_save(obj, f, *a, **k)

    torch.save = save
elif point == "weights":  # the model's save_pretrained done, nothing else of the checkpoint
    from transformers import PreTrainedModel

    real_sp = PreTrainedModel.save_pretrained

    def save_pretrained(self, *a, **k):
        real_sp(self, *a, **k)
        die()

    PreTrainedModel.save_pretrained = save_pretrained
elif point in ("metrics", "lineage"):  # right before the final metrics.json / lineage.json
    from training.output import Output

    real_wj = Output.write_json

    def write_json(self, name, obj, *a, **k):
        if name == point + ".json" and (point == "lineage" or obj.get("complete")):
            die()
        return real_wj(self, name, obj, *a, **k)

    Output.write_json = write_json
elif point == "publish":  # the checkpoint complete, its files half moved into OUT
    real_replace = os.replace

    def replace(src, dst, *a, **k):
        if os.path.basename(dst) == "lineage.json" and os.path.dirname(os.path.abspath(dst)) == out:
            die()
        return real_replace(src, dst, *a, **k)

    os.replace = replace
from harness.cli import cli

cli(["train", *argv], prog_name="harness")
"""

POINTS = ("state", "weights", "metrics", "lineage", "publish")
COMMON = ["--arm", TINY, "--steps", "3", "--save-every", "2", "--device", "cpu", "--log-every", "1"]
JUDGE = ["--judge", "keyword", "--judge-option", "words=e", "--judge-option", "match=substring"]


def stage_args(stage, data, out):
    """``harness train`` arguments after ``train``: 3 steps, resume points after steps 2 and 3."""
    if stage == "rlmt":
        return ["rlmt", "--out", str(out), *COMMON, "--samples", "3", "--thought-tokens", "4",
                "--suffix-tokens", "6", "--prefix-tokens", "48", "--lr", "1e-3", *JUDGE]
    return ["sft", "--out", str(out), *COMMON, "--data", str(data), "--batch-rows", "2", "--max-tokens", "128",
            "--lr", "1e-3", "--warmup-steps", "2", "--eval-every", "0", "--rep-samples", "1", "--rep-tokens", "8"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Per stage: runs SIGKILLed at each point (subprocesses, two at a time), then an
    uninterrupted run of the same command (in this process)."""
    from click.testing import CliRunner
    from helpers import write_interleaved

    from harness.cli import cli

    base = tmp_path_factory.mktemp("kill9")
    data = write_interleaved(base / "inter.jsonl", n=8)
    env = dict(os.environ, HARNESS_CACHE=str(base / "cache"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               OMP_NUM_THREADS="1")
    jobs = [(stage, point) for stage in ("rlmt", "sft") for point in POINTS]

    def run(job):
        stage, point = job
        out = base / f"{stage}-{point}"
        cmd = [sys.executable, "-c", KILLER, point, str(out), *stage_args(stage, data, out)]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        return job, (proc.returncode, out, proc.stderr)

    with ThreadPoolExecutor(max_workers=2) as pool:
        done = dict(pool.map(run, jobs))
    for stage in ("rlmt", "sft"):
        out = base / f"{stage}-whole"
        r = CliRunner().invoke(cli, ["train", *stage_args(stage, data, out)])
        done[(stage, "whole")] = (r.exit_code, out, r.output)
    return done, data


@pytest.mark.parametrize("stage", ["rlmt", "sft"])
@pytest.mark.parametrize("point", POINTS)
def test_kill9_at_each_save_point_then_rerun_equals_an_uninterrupted_run(runs, stage, point):
    from click.testing import CliRunner

    from harness.cli import cli
    from harness.modelspec import load_model, resolve_path
    from harness.types import Arm

    done, data = runs
    rc, whole, err = done[(stage, "whole")]
    assert rc == 0, err
    rc, out, err = done[(stage, point)]
    assert rc == -signal.SIGKILL, err  # it died at that point
    assert not (out / "config.json").exists()  # nothing in OUT looks like a checkpoint yet
    assert (out / ".train_state").is_dir()
    if point == "state":
        assert list((out / ".train_state").glob("state.pt.tmp*"))
    r = CliRunner().invoke(cli, ["train", *stage_args(stage, data, out)])
    assert r.exit_code == 0, r.output
    redone = re.findall(r"^step (\d+)/3", r.output, re.M)
    if point == "state":  # the last resume point was half written: step 3 redone from step 2
        assert "resuming" in r.output and redone == ["3"]
    elif point == "publish":  # the checkpoint was committed: the rerun only moves its files
        assert "resuming" not in r.output and redone == []
    else:  # killed inside the final checkpoint: resumed after the last step, nothing redone
        assert f"resuming {stage} at step 3/3" in r.output and redone == []
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in whole.iterdir())
    assert same_weights(whole, out)
    assert deterministic(metrics(whole)) == deterministic(metrics(out))
    a, b = (json.loads((d / "lineage.json").read_text()) for d in (whole, out))
    assert a["config_digest"] == b["config_digest"] and a["config"] == dict(b["config"], out=str(whole))
    assert resolve_path(Arm(name="t", model=str(out)))[0] == "dir"
    model, tok, _ = load_model(Arm(name="t", model=str(out)))
    assert tok.decode(tok("a <think>b</think>").input_ids) == "a <think>b</think>"
