import json

import pytest
from click.testing import CliRunner

from harness.cli import cli
from tests.helpers import write_chunks


def _invoke(args):
    return CliRunner().invoke(cli, args)


@pytest.mark.parametrize("flag,value,valid", [
    ("--plugin", "nope", "thought_probe"),
    ("--arm", "nope", "smollm2-135m"),
    ("--intervention", "nope", "swapped"),
    ("--judge", "nope", "embedding"),
    ("--task", "nope", "chunks"),
])
def test_unknown_names_exit_2_listing_valid(tmp_path, flag, value, valid):
    out = tmp_path / "run"
    args = ["run", "--arm", "tiny-qwen3", "--judge", "lexical", "--out", str(out), flag, value]
    res = _invoke(args)
    assert res.exit_code == 2, res.output
    lines = [l for l in res.output.splitlines() if l.strip()]
    assert len(lines) == 1 and value in lines[0] and valid in lines[0]
    assert not out.exists()


def test_malformed_jsonl_names_file_and_line(tmp_path):
    data = write_chunks(tmp_path / "d.jsonl", n=3)
    with open(data, "a") as fh:
        fh.write('{"id": "bad", "text": \n')
    out = tmp_path / "run"
    res = _invoke(["run", "--arm", "tiny-qwen3", "--judge", "lexical", "--data-file", str(data), "--out", str(out)])
    assert res.exit_code != 0 and f"{data}:4" in res.output
    assert not out.exists()


def test_missing_model_path_names_arm_and_path(tmp_path):
    arms = tmp_path / "arms.toml"
    arms.write_text('[arms.mine]\nmodel = "./no/such/model"\n')
    out = tmp_path / "run"
    res = _invoke(["run", "--arms-file", str(arms), "--arm", "mine", "--judge", "lexical", "--out", str(out)])
    assert res.exit_code != 0 and "'mine'" in res.output and "./no/such/model" in res.output
    assert not out.exists()


def test_bad_judge_option(tmp_path):
    res = _invoke(["run", "--arm", "tiny-qwen3", "--judge", "lexical", "--judge-option", "thresh=1",
                   "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "threshold" in res.output


def test_list_and_plugins_commands():
    res = _invoke(["list", "arms"])
    assert "smollm2-135m" in res.output and "tiny-qwen3" in res.output
    rows = json.loads(_invoke(["plugins"]).output)
    assert any(r["name"] == "plugins.interventions.swapped" and r["provides"] == {"interventions": ["swapped"]}
               for r in rows)


def test_model_that_fails_to_load_leaves_no_run_dir(tmp_path):
    model = tmp_path / "broken-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    out = tmp_path / "run"
    res = _invoke(["run", "--arm", str(model), "--judge", "lexical", "--out", str(out)])
    assert res.exit_code == 1 and str(model) in res.output and "could not load" in res.output
    assert not out.exists()
