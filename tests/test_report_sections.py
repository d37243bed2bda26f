"""A report section (or an eval's summarize) that raises cannot take a run or a report down: its
place in report.md is one FAILED line naming the section, its plugin and the exception, the other
sections and summary.json are written, stderr names it, and the command exits 1 afterwards.
Also: reports.stats.item_ci, the public CI helper for a section's own metric."""

import json
import sys
import types
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from harness import plugins
from harness.cli import cli
from harness.hookspecs import hookimpl
from harness.report import SectionFailed, build_report, console_summary, render_report
from tests.helpers import write_chunks

PLUGIN = "boom_plugin"
RENDER_LINE = (f"FAILED: report section 'boom' (plugin {PLUGIN}) raised in render(): RuntimeError: render went "
               "wrong at https://<redacted>@example.org")


class BoomSection:
    name = "boom"
    description = "raises in render and console"

    def applies(self, manifest):
        return True

    def render(self, records, manifest, summary):
        raise RuntimeError("render went\n  wrong at https://user:secret@example.org")

    def console(self, records, manifest, summary):
        raise ValueError("console broke")


class BadAppliesSection:
    name = "bad-applies"
    description = "raises in applies"

    def applies(self, manifest):
        raise KeyError("record_type")

    def render(self, records, manifest, summary):
        return "## never shown"


class FineSection:
    name = "fine"
    description = "renders after the broken ones"

    def applies(self, manifest):
        return True

    def render(self, records, manifest, summary):
        return "## Fine section\n\nstill here"

    def console(self, records, manifest, summary):
        return "fine console table"


class BoomEval:
    name = "boom-eval"
    description = "an eval whose summarize raises"
    defaults = {"samples": 1}

    def run(self, ctx):
        pass

    def summarize(self, records, manifest):
        return {"metrics": [1 / 0]}


class _EntryPoint:
    def __init__(self, module):
        self.name = self.value = module.__name__
        self.dist = types.SimpleNamespace(name=f"dist-{module.__name__}", version="0")
        self._module = module

    def load(self):
        return self._module


def _install(monkeypatch, sections=(BoomSection, BadAppliesSection, FineSection)):
    """Make the test sections (and BoomEval) an installed plugin, as an entry point would."""
    mod = types.ModuleType(PLUGIN)

    @hookimpl
    def register_report_sections(register):
        for cls in sections:
            register(cls)

    @hookimpl
    def register_evals(register):
        register(BoomEval)

    mod.register_report_sections, mod.register_evals = register_report_sections, register_evals
    monkeypatch.setitem(sys.modules, PLUGIN, mod)
    monkeypatch.setattr(plugins, "_entry_points", lambda: [_EntryPoint(mod)])
    plugins.reset()


def _manifest(eval_name="nothing-registered"):
    return {"record_type": "fake", "item_ids": ["i1", "i2"], "config": {
        "eval": eval_name, "arms": [{"name": "a"}], "samples": 1, "seed": 0, "temperature": 1.0, "top_p": 1.0}}


RECORDS = [{"arm": "a", "condition": "normal", "item_id": f"i{k}", "reward": 1.0, "cluster": None} for k in (1, 2)]


def test_a_section_that_raises_is_one_line_in_its_place(monkeypatch):
    _install(monkeypatch)
    summary, markdown = build_report(RECORDS, _manifest())
    lines = markdown.splitlines()
    console_line = f"FAILED: report section 'boom' (plugin {PLUGIN}) raised in console(): ValueError: console broke"
    applies_line = (f"FAILED: report section 'bad-applies' (plugin {PLUGIN}) raised in applies(): "
                    "KeyError: 'record_type'")
    assert lines.index(RENDER_LINE) + 1 == lines.index(console_line) < lines.index(applies_line) \
        < lines.index("## Fine section")
    assert "secret" not in markdown and "## never shown" not in markdown
    assert [(f["name"], f["method"], f["plugin"]) for f in summary["failures"]] == [
        ("boom", "render", PLUGIN), ("boom", "console", PLUGIN), ("bad-applies", "applies", PLUGIN)]
    assert summary["failures"][1]["error"] == "ValueError: console broke"
    assert console_summary(RECORDS, _manifest(), summary).split("\n\n") == [
        console_line, applies_line, "fine console table"]


def test_sections_that_work_report_no_failures(monkeypatch):
    _install(monkeypatch, sections=(FineSection,))
    summary, markdown = build_report(RECORDS, _manifest())
    assert "failures" not in summary and "FAILED" not in markdown and "## Fine section" in markdown


def test_a_failing_summarize_is_named_and_no_section_renders(monkeypatch):
    _install(monkeypatch)
    summary, markdown = build_report(RECORDS, _manifest("boom-eval"))
    assert (f"FAILED: eval 'boom-eval' (plugin {PLUGIN}) raised in summarize(): ZeroDivisionError: division by zero"
            in markdown.splitlines())
    assert "## Fine section" not in markdown and [f["part"] for f in summary["failures"]] == ["eval"]
    assert summary["eval"] == "boom-eval" and summary["n_records"] == 2 and "metrics" not in summary


class _Store:
    root = Path("RUN")

    def __init__(self):
        self.files = {}

    def write_json(self, name, obj):
        self.files[name] = json.loads(json.dumps(obj))

    def write_text(self, name, text):
        self.files[name] = text


def test_render_report_writes_everything_then_raises(monkeypatch):
    _install(monkeypatch)
    store = _Store()
    with pytest.raises(SectionFailed) as err:
        render_report(store, RECORDS, _manifest())
    exc = err.value
    assert exc.exit_code == 1 and isinstance(exc, click.ClickException)
    assert RENDER_LINE in store.files["report.md"] and "## Fine section" in store.files["report.md"]
    assert len(store.files["summary.json"]["failures"]) == 3 and exc.markdown == store.files["report.md"]
    assert exc.message.splitlines() == [
        "3 parts of the report raised; the rest of the report was written to RUN/report.md and summary.json:",
        *(f"  {f['message']}" for f in store.files["summary.json"]["failures"])]
    assert exc.message.splitlines()[1] == "  " + RENDER_LINE.removeprefix("FAILED: ")
    _install(monkeypatch, sections=(BoomSection,))
    one = SectionFailed(build_report(RECORDS, _manifest())[0]["failures"][:1], "see RUN")
    assert one.message == RENDER_LINE.removeprefix("FAILED: ") + "; see RUN"
    assert "fine console table" in exc.console


# --- harness run and harness report, end to end --------------------------------------------------


@pytest.fixture(scope="module")
def failing_run(tmp_path_factory):
    """``harness run`` with the failing sections installed: (result, run directory)."""
    pytest.importorskip("torch")
    tmp = tmp_path_factory.mktemp("boom")
    out = tmp / "run"
    with pytest.MonkeyPatch.context() as mp:
        _install(mp)
        try:
            result = CliRunner().invoke(cli, [
                "run", "--arm", "tiny-qwen3", "--judge", "lexical", "--quiet", "--samples", "1", "--limit", "2",
                "--thought-max-tokens", "3", "--suffix-max-tokens", "3", "--intervention", "blank",
                "--data-file", str(write_chunks(tmp / "d.jsonl")), "--out", str(out)])
        finally:
            plugins.reset()
    return result, out


def test_harness_run_writes_the_report_then_exits_1(failing_run):
    result, out = failing_run
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a ClickException, not a traceback
    assert len((out / "samples.jsonl").read_text().splitlines()) == 2  # the run's work is kept
    report = (out / "report.md").read_text()
    assert RENDER_LINE in report.splitlines() and "## Main metrics" in report and "## Fine section" in report
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"] and [f["name"] for f in summary["failures"]] == ["boom", "boom", "bad-applies"]
    assert f"report section 'boom' (plugin {PLUGIN}) raised in render(): RuntimeError" in result.stderr
    assert str(out / "report.md") in result.stderr
    assert "Reward [95% CI]" in result.stdout and "fine console table" in result.stdout  # the tables that worked


def test_harness_report_writes_everything_then_exits_1(failing_run, monkeypatch, tmp_path):
    _, out = failing_run
    (out / "report.md").unlink()
    _install(monkeypatch)
    result = CliRunner().invoke(cli, ["report", str(out)])
    assert result.exit_code == 1, result.output
    assert RENDER_LINE in result.stdout.splitlines() and "## Main metrics" in result.stdout
    assert (out / "report.md").read_text().strip() == result.stdout.strip()
    assert "raised in render()" in result.stderr and str(out / "report.md") in result.stderr
    # a report that is only printed (not the run's own: other options) says so, in JSON too
    page = tmp_path / "r.json"
    result = CliRunner().invoke(cli, ["report", str(out), "--format", "json", "--resamples", "200", "--out", str(page)])
    assert result.exit_code == 1 and f"written to {page}" in result.stderr
    rep = json.loads(page.read_text())
    assert rep["metrics"] and [f["method"] for f in rep["failures"]] == ["render", "console", "applies"]
    monkeypatch.setattr(plugins, "_entry_points", lambda: [])
    plugins.reset()
    result = CliRunner().invoke(cli, ["report", str(out)])  # the broken plugin gone: exit 0 again
    assert result.exit_code == 0 and "FAILED" not in (out / "report.md").read_text()
    assert "failures" not in json.loads((out / "summary.json").read_text())


# --- reports.stats.item_ci ------------------------------------------------------------------------


def _records(values_by_item, clusters=None):
    return [{"arm": "a", "condition": "c", "item_id": i, "cluster": (clusters or {}).get(i), "v": v}
            for i, vs in values_by_item.items() for v in vs]


def test_item_ci_averages_items_first_then_bootstraps_like_the_report():
    from reports.paired_stats import bootstrap_ci
    from reports.stats import fmt_cell, item_ci

    rng = np.random.default_rng(3)
    values = {f"i{k:02d}": list(rng.normal(k % 5, 1, size=1 + k % 3)) for k in range(30)}
    recs = _records(values) + [{"arm": "a", "condition": "c", "item_id": "i00", "cluster": None, "v": None}]
    manifest = {"config": {"seed": 4}, "report": {"B": 2000, "method": "bca"}}
    row = item_ci(recs, lambda r: r["v"], manifest)
    ids = sorted(values)
    want = bootstrap_ci([np.mean(values[i]) for i in ids], B=2000, seed=4, method="bca", keys=ids)
    assert (row["estimate"], row["ci_low"], row["ci_high"]) == pytest.approx(
        (want["estimate"], want["ci_low"], want["ci_high"]), abs=1e-12)
    assert row["n_items"] == 30 and row["n_samples"] == sum(map(len, values.values())) and row["ci_method"] == "bca"
    assert not row["clustered"] and fmt_cell(row, 2).startswith(f"{want['estimate']:.2f} [")


def test_item_ci_resamples_whole_sources_and_bounds_constant_binary_cells():
    from reports.paired_stats import bootstrap_ci
    from reports.stats import item_ci

    values = {f"i{k}": [float(k % 2), float(k % 3 == 0)] for k in range(12)}
    clusters = {i: f"s{int(i[1:]) // 3}" for i in values}  # 4 sources of 3 items
    row = item_ci(_records(values, clusters), lambda r: r["v"], {"config": {"seed": 0}})
    ids = sorted(values)
    want = bootstrap_ci([np.mean(values[i]) for i in ids], seed=0, clusters=[clusters[i] for i in ids], keys=ids)
    assert row["clustered"] and (row["ci_low"], row["ci_high"]) == pytest.approx((want["ci_low"], want["ci_high"]))
    zeros = item_ci(_records({f"i{k}": [0.0] for k in range(20)}), lambda r: r["v"], {"config": {}}, binary=True)
    assert zeros["estimate"] == 0 and zeros["ci_low"] == 0 and 0.1 < zeros["ci_high"] < 0.2
    assert "wilson" in zeros["ci_method"]
    empty = item_ci([], lambda r: r["v"], {"config": {}})
    assert empty["estimate"] is None and empty["n_items"] == 0
