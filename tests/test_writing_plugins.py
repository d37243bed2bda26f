"""The worked example of docs/writing-plugins.md, built and run for real.

The example package is installed into a temporary folder (no venv, no index, no network), put on
PYTHONPATH so that importlib.metadata sees its ``harness`` entry point, and then driven through
``python -m harness`` in subprocesses exactly as the guide does.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "harness-reversed-thought"
DOC = ROOT / "docs" / "writing-plugins.md"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The example package installed (not editable) into a fresh target folder."""
    base = tmp_path_factory.mktemp("reversed")
    src = base / "src"
    shutil.copytree(EXAMPLE, src)  # building writes build/ and *.egg-info next to the sources
    target = base / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--disable-pip-version-check", "--target", str(target), str(src)],
                   check=True, capture_output=True, text=True, timeout=120)
    assert (target / "harness_reversed_thought.py").is_file()
    return target


def _harness(args, site, tmp_path, **env_overrides):
    env = dict(os.environ)
    env.pop("HARNESS_LOAD_PLUGINS", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    env["HARNESS_CACHE"] = str(tmp_path / "cache")
    env.update(env_overrides)
    return subprocess.run([sys.executable, "-m", "harness", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def _listed(output):
    return {line.split()[0] for line in output.splitlines() if line.strip()}


def test_doc_shows_the_shipped_example():
    """The guide's code blocks are the files the test installs, so the two cannot drift apart."""
    doc = DOC.read_text()
    for name in ("pyproject.toml", "harness_reversed_thought.py"):
        assert (EXAMPLE / name).read_text().strip() in doc, f"{name} differs from the copy in {DOC.name}"


def test_entry_point_registers_reversed(site, tmp_path):
    result = _harness(["list", "interventions"], site, tmp_path)
    assert result.returncode == 0, result.stderr
    assert {"normal", "shuffled", "reversed"} <= _listed(result.stdout)  # shuffled is a built-in

    result = _harness(["plugins"], site, tmp_path)
    assert result.returncode == 0, result.stderr
    row = next(r for r in json.loads(result.stdout) if r["name"] == "reversed")
    assert row["builtin"] is False and row["provides"] == {"interventions": ["reversed"]}

    for allowed in ("harness-reversed-thought", "reversed"):
        result = _harness(["list", "interventions"], site, tmp_path, HARNESS_LOAD_PLUGINS=allowed)
        assert "reversed" in _listed(result.stdout)


def test_load_plugins_empty_hides_reversed(site, tmp_path):
    result = _harness(["list", "interventions"], site, tmp_path, HARNESS_LOAD_PLUGINS="")
    assert result.returncode == 0, result.stderr
    names = _listed(result.stdout)
    assert "normal" in names and "reversed" not in names


def test_run_with_reversed_intervention(site, tmp_path):
    out = tmp_path / "run"
    result = _harness(["run", "--plugin", "thought_probe", "--arm", "tiny-qwen3", "--judge", "lexical",
                       "--intervention", "normal", "--intervention", "reversed", "--limit", "3", "--samples", "2",
                       "--thought-max-tokens", "8", "--suffix-max-tokens", "8", "--quiet", "--out", str(out)],
                      site, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    reversed_samples = [r for r in samples if r["condition"] == "reversed"]
    assert len(reversed_samples) == 3 * 2
    assert all(r["thought_source"] == r["item_id"] for r in reversed_samples)

    thoughts = [json.loads(line) for line in (out / "thoughts.jsonl").read_text().splitlines()]
    normal = {(r["item_id"], r["sample"]): r["token_ids"] for r in thoughts if r["condition"] == "normal"}
    backwards = {(r["item_id"], r["sample"]): r["token_ids"] for r in thoughts if r["condition"] == "reversed"}
    assert len(backwards) == 3 * 2 and backwards.keys() == normal.keys()
    for key, ids in backwards.items():
        assert ids == normal[key][::-1], key  # the same tokens, back to front
    by_key = {(r["item_id"], r["sample"]): r for r in reversed_samples}
    assert all(by_key[k]["thought_tokens"] == len(ids) for k, ids in backwards.items())


QUESTION = ROOT / "docs" / "examples" / "harness-question-thought"


def test_doc_shows_the_generating_example():
    assert (QUESTION / "harness_question_thought.py").read_text().strip() in DOC.read_text()


def test_generating_intervention_samples_its_own_thought(tmp_path):
    """The second worked example, installed and run: its thoughts are sampled after the question
    (so they differ from normal's with the same seeds), and stage 2 sees the plain prompt."""
    src = tmp_path / "src"
    shutil.copytree(QUESTION, src)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--disable-pip-version-check", "--target", str(site), str(src)],
                   check=True, capture_output=True, text=True, timeout=120)
    out = tmp_path / "run"
    result = _harness(["run", "--arm", "tiny-qwen3", "--judge", "lexical", "--intervention", "normal",
                       "--intervention", "question", "--limit", "2", "--samples", "2", "--thought-max-tokens", "6",
                       "--suffix-max-tokens", "4", "--quiet", "--out", str(out)], site, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    thoughts = [json.loads(line) for line in (out / "thoughts.jsonl").read_text().splitlines()]
    asked = [t for t in thoughts if t["condition"] == "question"]
    assert len(asked) == 4 and all(t["token_ids"] for t in asked)
    normal = {(t["item_id"], t["sample"]): t["token_ids"] for t in thoughts if t["condition"] == "normal"}
    assert any(t["token_ids"] != normal[(t["item_id"], t["sample"])] for t in asked)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["plugins"]["interventions"]["question"]["dist"] == "harness-question-thought"
    bad = _harness(["run", "--arm", "tiny-qwen3", "--judge", "lexical", "--intervention", "question",
                    "--option", "questoin=hi", "--out", str(tmp_path / "bad")], site, tmp_path)
    assert bad.returncode == 2 and "question (the text put between" in bad.stderr
