"""The mistakes plugin authors make, each a clear early error naming the plugin (or a documented
rule the harness applies itself); and the contract's documentation kept equal to its code."""

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import plugins
from harness.cli import cli
from harness.hookspecs import hookimpl
from harness.types import Item, Thought, Verdict
from tests.helpers import write_chunks

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]


class _EP:
    def __init__(self, name, module=None, error=None):
        self.name, self.value = name, f"{name}_module"
        self.dist = types.SimpleNamespace(name=f"harness-{name}", version="0.3")
        self._module, self._error = module, error

    def load(self):
        if self._error:
            raise self._error
        return self._module


def _plugin(monkeypatch, name, **hooks):
    """An installed plugin ``name`` (distribution ``harness-NAME``) implementing ``hooks``."""
    mod = types.ModuleType(f"{name}_module")
    for hook, classes in hooks.items():
        def impl(register, _classes=classes):
            for cls in _classes:
                register(cls)
        impl.__name__ = hook
        setattr(mod, hook, hookimpl(impl))
    sys.modules[mod.__name__] = mod
    eps = getattr(_plugin, "eps", [])
    monkeypatch.setattr(plugins, "_entry_points", lambda: eps)
    eps.append(_EP(name, mod))
    _plugin.eps = eps
    plugins.reset()
    return mod


@pytest.fixture(autouse=True)
def _no_plugins():
    _plugin.eps = []
    yield
    _plugin.eps = []


def _intervention(name, thoughts, **extra):
    return type(name.title(), (), {"name": name, "description": f"{name} test thought", "requires": (),
                                   "thoughts": thoughts, **extra})


def _run(tmp_path, *args, out="run"):
    data = tmp_path / "d.jsonl"
    if not data.exists():
        write_chunks(data, n=3)
    return CliRunner().invoke(cli, ["run", "--arm", "tiny-qwen3", "--quiet", "--samples", "2",
                                    "--thought-max-tokens", "3", "--suffix-max-tokens", "3", "--data-file",
                                    str(data), "--out", str(tmp_path / out), *args])


def _one_line(res):
    lines = [line for line in res.output.splitlines() if line.strip() and not line.startswith(("new run", "resuming"))]
    assert len(lines) == 1, res.output
    return lines[0]


# -- thoughts ---------------------------------------------------------------------------------

def _fixed(ids, count=2, skip=None, text=None):
    def thoughts(self, ctx, items, samples, needed):
        return {i.id: [Thought(ids, text if text is not None else ctx.backend.decode(ids or []))
                       for _ in range(count)] for i in items if i.id != skip}
    return thoughts


@pytest.mark.parametrize("thoughts,needle", [
    (_fixed([65], count=1), "returned 1 thought(s) for item 'c0', expected 2"),
    (_fixed([65], skip="c1"), "returned no thoughts for item 'c1'"),
    (_fixed(None, text="x"), "token_ids that are not a list of ints (NoneType)"),
    (_fixed([], text="a real thought"), "but no token_ids"),
])
def test_bad_intervention_returns_are_one_line_and_write_nothing(tmp_path, monkeypatch, thoughts, needle):
    _plugin(monkeypatch, "badthought", register_interventions=[_intervention("bad", thoughts)])
    res = _run(tmp_path, "--judge", "lexical", "--intervention", "bad")
    line = _one_line(res)
    assert res.exit_code == 1 and needle in line, res.output
    assert "intervention 'bad' (plugin badthought, dist harness-badthought)" in line
    assert not (tmp_path / "run" / "thoughts.jsonl").exists() and not (tmp_path / "run").exists()


def test_unusable_stored_thoughts_are_dropped_and_made_again(tmp_path, monkeypatch):
    _plugin(monkeypatch, "good", register_interventions=[_intervention("fixed", _fixed([65, 66]))])
    assert _run(tmp_path, "--judge", "lexical", "--intervention", "fixed").exit_code == 0
    path = tmp_path / "run" / "thoughts.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["token_ids"] = None  # as an older harness let a plugin write it
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    samples = tmp_path / "run" / "samples.jsonl"
    samples.write_text("".join(line + "\n" for line in samples.read_text().splitlines()[1:]))
    res = _run(tmp_path, "--judge", "lexical", "--intervention", "fixed")
    assert res.exit_code == 0 and "unusable thought row(s) dropped and made again" in res.output, res.output
    assert len(samples.read_text().splitlines()) == 6


def test_unknown_requires_is_refused_at_load_and_listed(monkeypatch):
    _plugin(monkeypatch, "typo", register_interventions=[_intervention("mine", _fixed([65]), requires=("normall",))])
    res = CliRunner().invoke(cli, ["list", "interventions"])
    assert res.exit_code == 0 and "BROKEN" in res.output and "'normall'" in res.output
    assert "mine" not in plugins.registry("interventions").names()
    with pytest.raises(Exception, match="requires unknown intervention"):
        plugins.registry("interventions").get("mine")


@pytest.mark.parametrize("cls,needle", [
    (type("NoThoughts", (), {"name": "nt", "description": "x"}), "has no 'thoughts'"),
    (type("NoDescription", (), {"name": "nd", "thoughts": lambda *a: {}}), "has no 'description'"),
    (type("EmptyDescription", (), {"name": "ed", "description": " ", "thoughts": lambda *a: {}}), "is empty"),
    (type("BadRequires", (), {"name": "br", "description": "x", "thoughts": lambda *a: {}, "requires": "normal"}),
     "'requires' is str, not tuple"),
])
def test_registration_refuses_classes_that_break_the_contract(monkeypatch, cls, needle):
    _plugin(monkeypatch, "broken", register_interventions=[cls])
    refused = plugins.registry("interventions").refused
    assert any(needle in why and "dist harness-broken" in why for why in refused.values()), refused


# -- judges, tasks ----------------------------------------------------------------------------

class ShortJudge:
    name = "short"
    description = "returns one verdict too few"

    def __init__(self, options=None, arms=None):
        pass

    def judge(self, pairs):
        return [Verdict(1, 1.0) for _ in pairs[1:]]

    def config(self):
        return {"threshold": 1}  # no "name": the harness adds it


def test_judge_returning_too_few_verdicts_writes_nothing(tmp_path, monkeypatch):
    _plugin(monkeypatch, "shortjudge", register_judges=[ShortJudge])
    res = _run(tmp_path, "--judge", "short", "--intervention", "blank")
    line = _one_line(res)
    assert res.exit_code == 1 and "judge 'short' (plugin shortjudge, dist harness-shortjudge)" in line
    assert "returned 5 verdict(s) for 6 pair(s)" in line
    assert not (tmp_path / "run" / "samples.jsonl").exists()


class DupTask:
    name = "dups"
    description = "two items with one id"

    def __init__(self, options):
        pass

    def items(self):
        return [Item("a", "first prefix", "s"), Item("a", "second prefix", "s")]

    def config(self):
        return {}


class NamelessTask(DupTask):
    name = "nameless"

    def items(self):
        return [Item("a", "first prefix", "s"), Item("b", "second prefix", "t")]


def test_task_with_duplicate_ids_is_refused(tmp_path, monkeypatch):
    _plugin(monkeypatch, "duptask", register_tasks=[DupTask])
    res = CliRunner().invoke(cli, ["run", "--arm", "tiny-qwen3", "--judge", "lexical", "--task", "dups",
                                   "--out", str(tmp_path / "run")])
    assert res.exit_code == 1 and "returned the id 'a' twice" in _one_line(res) and not (tmp_path / "run").exists()


def test_config_without_name_gets_the_registered_name(tmp_path, monkeypatch):
    _plugin(monkeypatch, "nameless", register_tasks=[NamelessTask])
    res = CliRunner().invoke(cli, ["run", "--arm", "tiny-qwen3", "--judge", "lexical", "--task", "nameless",
                                   "--quiet", "--samples", "1", "--thought-max-tokens", "2", "--suffix-max-tokens",
                                   "2", "--intervention", "blank", "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["config"]["tasks"][0]["name"] == "nameless"
    assert manifest["config"]["plugins"]["tasks"]["nameless"]["dist"] == "harness-nameless"


# -- loading ----------------------------------------------------------------------------------

def test_a_plugin_that_fails_to_import_blocks_nothing_else(tmp_path, monkeypatch):
    monkeypatch.setattr(plugins, "_entry_points", lambda: [_EP("crashy", error=ImportError("no module named zzz"))])
    plugins.reset()
    assert CliRunner().invoke(cli, ["--help"]).exit_code == 0
    rows = json.loads(CliRunner().invoke(cli, ["plugins"]).output)
    broken = [r for r in rows if r.get("broken")]
    assert broken and broken[0]["dist"] == "harness-crashy" and "no module named zzz" in broken[0]["error"]
    assert "test_contract.py:" in broken[0]["error"]  # file:line of the failure
    res = _run(tmp_path, "--judge", "nope")
    assert res.exit_code == 2 and "plugin crashy failed to load" in res.output
    assert _run(tmp_path, "--judge", "lexical", "--intervention", "blank", "--limit", "2").exit_code == 0


def test_disable_and_load_lists_are_normalised_and_warn_on_no_match(monkeypatch):
    _plugin(monkeypatch, "Fancy_Thing", register_interventions=[_intervention("fancy", _fixed([65]))])
    monkeypatch.setenv("HARNESS_DISABLE_PLUGINS", "harness-fancy-thing,harness_nothing")
    plugins.reset()
    res = CliRunner().invoke(cli, ["list", "interventions"])
    assert "fancy" not in res.output and "'harness-nothing', which matches no installed plugin" in res.output
    with pytest.raises(Exception, match="HARNESS_DISABLE_PLUGINS"):
        plugins.registry("interventions").get("fancy")
    monkeypatch.delenv("HARNESS_DISABLE_PLUGINS")
    monkeypatch.setenv("HARNESS_LOAD_PLUGINS", "HARNESS.Fancy.Thing")
    plugins.reset()
    assert "fancy" in plugins.registry("interventions").names()


def test_changed_plugin_code_refuses_to_resume(tmp_path, monkeypatch):
    src = tmp_path / "myplug.py"
    code = ("from harness.hookspecs import hookimpl\nfrom harness.types import Thought\n\n"
            "@hookimpl\ndef register_interventions(register):\n    register(Mine)\n\n"
            "class Mine:\n    name = 'mine'\n    description = 'a fixed thought'\n\n"
            "    def thoughts(self, ctx, items, samples, needed):\n"
            "        return {i.id: [Thought([65], 'A')] * samples for i in items}\n")
    src.write_text(code)

    def load():
        spec = importlib.util.spec_from_file_location("myplug", src)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        monkeypatch.setattr(plugins, "_entry_points", lambda: [_EP("myplug", mod)])
        plugins.reset()

    load()
    assert _run(tmp_path, "--judge", "lexical", "--intervention", "mine").exit_code == 0
    src.write_text(code.replace("[65], 'A'", "[66], 'B'"))
    load()
    res = _run(tmp_path, "--judge", "lexical", "--intervention", "mine")
    assert res.exit_code == 2 and "its code changed" in res.output and "source_sha" in res.output, res.output


# -- the documentation is the contract's ------------------------------------------------------

def test_docs_carry_the_contract_tables():
    from harness.protocols import END as end
    from harness.protocols import START as start
    from harness.protocols import markdown

    doc = (ROOT / "docs" / "writing-plugins.md").read_text()
    assert start in doc and end in doc, "docs/writing-plugins.md lacks the contract markers"
    block = doc.split(start, 1)[1].split(end, 1)[0]
    assert block == markdown(), ("docs/writing-plugins.md's contract tables are out of date: "
                                 "regenerate them with `python -m harness.protocols --write docs/writing-plugins.md`")


def test_hook_docstrings_point_to_the_contract():
    from harness import hookspecs
    from harness.protocols import KINDS

    for kind in KINDS.values():
        assert "harness.protocols" in getattr(hookspecs, kind.hook).__doc__, kind.hook


class TypedJudge:
    name = "typed"
    description = "records the options it was given"
    seen = []

    from harness.options import Option
    options = (Option("ratio", float, 1.0, "words ratio", low=0),)

    def __init__(self, options, arms):
        TypedJudge.seen.append(options)

    def judge(self, pairs):
        return [Verdict(0, 0.0) for _ in pairs]

    def config(self):
        return {}


@pytest.mark.parametrize("given,needle", [("ratoi=1", "unknown typed judge option 'ratoi'; valid: ratio"),
                                          ("ratio=abc", "ratio='abc' is not a finite number"),
                                          ("ratio=-1", "must be >= 0")])
def test_declared_judge_options_are_checked_by_the_harness(tmp_path, monkeypatch, given, needle):
    _plugin(monkeypatch, "typedjudge", register_judges=[TypedJudge])
    res = _run(tmp_path, "--judge", "typed", "--judge-option", given, "--intervention", "blank")
    assert res.exit_code == 2 and needle in _one_line(res) and not (tmp_path / "run").exists()


def test_declared_judge_options_arrive_typed_with_defaults(tmp_path, monkeypatch):
    _plugin(monkeypatch, "typedjudge", register_judges=[TypedJudge])
    TypedJudge.seen.clear()
    assert _run(tmp_path, "--judge", "typed", "--intervention", "blank", "--limit", "2").exit_code == 0
    assert _run(tmp_path, "--judge", "typed", "--judge-option", "ratio=0.5", "--intervention", "blank",
                "--limit", "2", out="run2").exit_code == 0
    assert TypedJudge.seen == [{"ratio": 1.0}, {"ratio": 0.5}]


def test_option_of_an_unselected_intervention_says_which_reads_it(tmp_path):
    res = _run(tmp_path, "--judge", "lexical", "--intervention", "blank", "--option", "generic_thought=x")
    assert res.exit_code == 2 and "generic_thought is read by intervention generic" in res.output
