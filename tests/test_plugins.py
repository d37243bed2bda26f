import sys
import types

import pytest
from click.testing import CliRunner

from harness import plugins
from harness.cli import cli
from harness.hookspecs import hookimpl


def test_builtins_register_every_kind():
    regs = plugins.registries()
    assert {"normal", "blank", "generic", "swapped"} <= set(regs["interventions"].names())
    assert {"reward_gate", "thought_probe"} <= set(regs["evals"].names())
    assert {"embedding", "lexical", "llm"} <= set(regs["judges"].names())
    assert "hf" in regs["backends"].names() and "chunks" in regs["tasks"].names()


class _FakeEP:
    def __init__(self, name, module):
        self.name, self.value, self._module = name, module.__name__, module
        self.dist = types.SimpleNamespace(name=f"dist-{name}")

    def load(self):
        return self._module


def _module(name, interventions):
    mod = types.ModuleType(name)

    @hookimpl
    def register_interventions(register):
        for cls in interventions:
            register(cls)

    mod.register_interventions = register_interventions
    sys.modules[name] = mod
    return mod


def _cls(name, **members):
    def thoughts(self, ctx, items, samples, needed):
        return {}

    return type(name.title(), (), {"name": name, "description": f"{name} thought", "requires": (),
                                   "thoughts": thoughts, **members})


def test_entry_point_plugin_loads(monkeypatch):
    mod = _module("fake_mine", [_cls("mine")])
    monkeypatch.setattr(plugins, "_entry_points", lambda: [_FakeEP("mine", mod)])
    reg = plugins.registry("interventions")
    assert "mine" in reg.names() and reg.sources["mine"] == "mine"
    result = CliRunner().invoke(cli, ["list", "interventions"])
    assert "mine" in result.output


def test_duplicate_name_names_both_sources(monkeypatch):
    mod = _module("fake_dup", [_cls("blank")])
    monkeypatch.setattr(plugins, "_entry_points", lambda: [_FakeEP("dupplug", mod)])
    with pytest.raises(plugins.PluginError) as err:
        plugins.registries()
    assert "plugins.interventions.blank" in str(err.value) and "dupplug" in str(err.value)


def test_load_plugins_env_restricts(monkeypatch):
    mod = _module("fake_restricted", [_cls("other")])
    monkeypatch.setattr(plugins, "_entry_points", lambda: [_FakeEP("other", mod)])
    monkeypatch.setenv("HARNESS_LOAD_PLUGINS", "")
    assert "other" not in plugins.registry("interventions").names()
    plugins.reset()
    monkeypatch.setenv("HARNESS_LOAD_PLUGINS", "dist-other")
    assert "other" in plugins.registry("interventions").names()


def test_unknown_name_lists_valid_choices():
    reg = plugins.registry("judges")
    with pytest.raises(Exception) as err:
        reg.get("nope", "--judge")
    assert "embedding" in str(err.value) and "lexical" in str(err.value)


def test_help_does_not_import_torch():
    import subprocess

    code = ("import sys, click, harness.cli as c; c.cli.list_commands(click.Context(c.cli)); "
            "assert 'rescore' in c.cli.commands; assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'scipy' not in sys.modules, 'scipy imported'; assert 'sympy' not in sys.modules, 'sympy imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
