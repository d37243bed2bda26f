"""Records in pandas: samples_df and runs_df over run directories written by hand."""

import json
import subprocess
import sys

import pytest

from harness.analysis import runs_df, samples_df
from reports.analysis import RUN_COLUMNS, RUNS_COLUMNS
from tests.viewer_runs import other_run, probe_run, reasoning_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    return probe_run(tmp / "probe"), reasoning_run(tmp / "reasoning"), other_run(tmp / "other")


def test_samples_df_has_one_row_per_record_with_the_run_joined(runs):
    probe, reasoning, other = runs
    df = samples_df([probe, reasoning, other])
    assert len(df) == 36 + 12 + 2
    assert list(df.columns[-len(RUN_COLUMNS):]) == list(RUN_COLUMNS)
    p = df[df.run == str(probe)]
    assert set(p["eval"]) == {"thought_probe"} and set(p.record_type) == {"probe"} and set(p.judge) == {"embedding"}
    assert set(p.model) == {"random:arm-a"} and set(p.backend) == {"hf"} and set(p.samples) == {2}
    assert set(p.run_seed) == {7} and set(p.seed) == {1000, 1001}  # the run's seed beside each sample's own
    assert set(p.thought_max_tokens) == {4} and p.max_new_tokens.isna().all()
    recs = [json.loads(line) for line in open(probe / "samples.jsonl")]
    assert p.suffix_logprob.tolist() == [r["suffix_logprob"] for r in recs]
    means = p.groupby("condition").suffix_logprob.mean()
    assert means["normal"] == pytest.approx(sum(r["suffix_logprob"] for r in recs if r["condition"] == "normal") / 12)
    r = df[df.record_type == "reasoning"]
    assert r.judge.isna().all() and set(r.temperature) == {0.6} and set(r.model) == {"random:arm-a", "random:arm-b"}
    assert r.groupby("arm").correct.sum().to_dict() == {"arm-a": 3, "arm-b": 3}
    assert samples_df(str(other)).nested.iloc[0] == {"a": [1, 2, {"b": None}]}  # one directory works too


def test_a_record_field_named_like_a_run_column_is_kept_aside(tmp_path):
    from harness.analysis import read_runs
    from reports.analysis import samples_frame

    run = read_runs([other_run(tmp_path / "o")])[0]
    run.records[0]["model"] = "from the record"
    df = samples_frame([run])
    assert df.record_model.iloc[0] == "from the record" and df.model.iloc[0] == "random:arm-a"
    assert "record_eval" not in df.columns


def test_runs_df_has_one_row_per_run(runs):
    probe, reasoning, _ = runs
    df = runs_df([probe, reasoning])
    assert list(df.columns) == list(RUNS_COLUMNS) and len(df) == 2
    row = df.set_index("run").loc[str(reasoning)]
    assert row.arms == "arm-a,arm-b" and row.models == "random:arm-a,random:arm-b" and row.n_records == 12
    assert row.n_items == 3 and row.wall_s == 3.5 and row.generated_tokens == 42 and row.invocations == 2
    assert df.set_index("run").loc[str(probe)].conditions == "normal,blank,swapped"


def test_empty_and_bad_input(tmp_path):
    from click import ClickException

    from reports.analysis import runs_frame, samples_frame

    assert list(samples_frame([]).columns) == list(RUN_COLUMNS) and runs_frame([]).empty
    with pytest.raises(ClickException, match="not a run directory"):
        samples_df([tmp_path])


def test_the_command_line_does_not_import_pandas():
    code = ("import sys; from click.testing import CliRunner; from harness.cli import cli; "
            "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0, r.output; "
            "r = CliRunner().invoke(cli, ['view', '--help']); assert r.exit_code == 0, r.output; "
            "assert 'pandas' not in sys.modules, 'pandas imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
