"""Plugin manager: loads built-in plugins and installed ones from the ``harness`` entry points.

``HARNESS_LOAD_PLUGINS`` (comma-separated distribution or module names) restricts which
installed plugins load; set it to an empty string to load only the built-ins.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os

import click

from harness.errors import BadInput
import pluggy

from harness import hookspecs

DEFAULT_PLUGINS = (
    "plugins.evals.reward_gate",
    "plugins.evals.thought_probe",
    "plugins.evals.reasoning",
    "plugins.interventions.normal",
    "plugins.interventions.blank",
    "plugins.interventions.generic",
    "plugins.interventions.swapped",
    "plugins.backends.hf",
    "plugins.backends.sglang",
    "plugins.backends.openai",
    "plugins.judges.embedding",
    "plugins.judges.lexical",
    "plugins.judges.llm",
    "plugins.judges.keyword",
    "plugins.reports.probe_tables",
    "plugins.reports.reasoning_tables",
    "tasks.chunks",
    "tasks.gsm8k",
    "tasks.math500",
    "tasks.gpqa_diamond",
    "tasks.olympiadbench",
    "tasks.lm_eval_bridge",
    "training.data_cli",
    "training.cli",
)

KINDS = ("evals", "interventions", "backends", "judges", "tasks", "report_sections")

_pm: pluggy.PluginManager | None = None
_registries: dict[str, "Registry"] | None = None


class PluginError(click.ClickException):
    """A plugin could not be loaded or registered."""


def _entry_points():
    return importlib.metadata.entry_points(group="harness")


def get_plugin_manager() -> pluggy.PluginManager:
    """Return the process-wide plugin manager, loading plugins on first use."""
    global _pm
    if _pm is not None:
        return _pm
    pm = pluggy.PluginManager("harness")
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name)
    allowed = os.environ.get("HARNESS_LOAD_PLUGINS")
    allow = None if allowed is None else {a.strip() for a in allowed.split(",") if a.strip()}
    for ep in _entry_points():
        dist = ep.dist.name if ep.dist is not None else ep.name
        if allow is not None and not ({dist, ep.name, ep.value} & allow):
            continue
        try:
            module = ep.load()
        except Exception as exc:  # a broken third-party plugin should say who it is
            raise PluginError(f"could not load plugin {ep.name!r} from {dist}: {exc}") from exc
        if pm.is_registered(module) or pm.has_plugin(ep.name):
            continue
        pm.register(module, ep.name)
    _pm = pm
    return pm


def reset() -> None:
    """Forget loaded plugins (tests use this after changing entry points or the environment)."""
    global _pm, _registries
    _pm = None
    _registries = None


class Registry:
    """Named classes of one kind, with their sources, built from one hook."""

    def __init__(self, kind: str):
        self.kind = kind
        self.classes: dict[str, type] = {}
        self.sources: dict[str, str] = {}

    def add(self, cls: type, source: str) -> None:
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"{source} registered a {self.kind[:-1]} class without a name: {cls!r}")
        if name in self.classes:
            raise PluginError(
                f"duplicate {self.kind[:-1]} name {name!r}: registered by {self.sources[name]} "
                f"and by {source}"
            )
        self.classes[name] = cls
        self.sources[name] = source

    def names(self) -> list[str]:
        return sorted(self.classes)

    def get(self, name: str, param_hint: str | None = None) -> type:
        """Return the class called ``name`` or fail listing the valid names (exit code 2)."""
        if name not in self.classes:
            valid = ", ".join(self.names()) or "(none)"
            raise BadInput(
                f"unknown {self.kind[:-1]} {name!r}; valid: {valid}",
                param_hint=param_hint or f"--{self.kind[:-1]}",
            )
        return self.classes[name]


def registries() -> dict[str, Registry]:
    """Build (once) the registry of every kind by calling each ``register_*`` hook."""
    global _registries
    if _registries is not None:
        return _registries
    pm = get_plugin_manager()
    regs = {}
    for kind in KINDS:
        reg = Registry(kind)
        hook = getattr(pm.hook, f"register_{kind}")
        for impl in hook.get_hookimpls():
            source = impl.plugin_name
            impl.function(lambda cls, _s=source, _r=reg: _r.add(cls, _s))
        regs[kind] = reg
    _registries = regs
    return regs


def registry(kind: str) -> Registry:
    return registries()[kind]


def plugin_summary() -> list[dict]:
    """One row per loaded plugin: its name and what it registers, for ``harness plugins``."""
    regs = registries()
    pm = get_plugin_manager()
    rows = []
    for name, plugin in pm.list_name_plugin():
        provides = {k: sorted(n for n, s in r.sources.items() if s == name) for k, r in regs.items()}
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        rows.append({
            "name": name,
            "builtin": name in DEFAULT_PLUGINS,
            "hooks": hooks,
            "provides": {k: v for k, v in provides.items() if v},
        })
    return rows
