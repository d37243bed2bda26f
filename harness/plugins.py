"""Plugin manager: loads built-in plugins and installed ones from the ``harness`` entry points.

- ``HARNESS_LOAD_PLUGINS`` (comma-separated distribution, entry-point or module names) restricts
  which installed plugins load (an empty string: built-ins only); ``HARNESS_DISABLE_PLUGINS``
  skips the ones it names. Names compare PEP 503-normalised; a name that matches nothing warns.
- A plugin that fails to import, or registers a class that breaks the contract of its kind
  (:mod:`harness.protocols`), is listed as broken by ``harness plugins`` with the reason; the
  other plugins work, and only a command that asks for what it would have provided fails.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import inspect
import os
import re
import traceback

import click
import pluggy

from harness import __version__, hookspecs
from harness.errors import BadInput
from harness.protocols import KINDS as CONTRACT
from harness.protocols import missing_members

DEFAULT_PLUGINS = (
    "plugins.evals.reward_gate",
    "plugins.evals.thought_probe",
    "plugins.evals.reasoning",
    "plugins.evals.nll",
    "plugins.evals.pairwise",
    "plugins.evals.search_r1",
    "plugins.evidence.normal",
    "plugins.evidence.no_results",
    "plugins.evidence.swapped_docs",
    "plugins.evidence.gold_doc",
    "plugins.reports.search_tables",
    "plugins.interventions.normal",
    "plugins.interventions.blank",
    "plugins.interventions.generic",
    "plugins.interventions.swapped",
    "plugins.interventions.cross_arm",
    "plugins.interventions.teacher",
    "plugins.interventions.truncated",
    "plugins.interventions.shuffled",
    "plugins.interventions.filler",
    "plugins.interventions.corrupted",
    "plugins.interventions.paraphrase",
    "plugins.backends.hf",
    "plugins.backends.sglang",
    "plugins.backends.openai",
    "plugins.judges.embedding",
    "plugins.judges.lexical",
    "plugins.judges.llm",
    "plugins.judges.keyword",
    "plugins.retrievers.bm25",
    "plugins.retrievers.http",
    "plugins.reports.probe_tables",
    "plugins.reports.reasoning_tables",
    "plugins.reports.nll_tables",
    "plugins.reports.pairwise_tables",
    "tasks.chunks",
    "tasks.interleaved",
    "tasks.gsm8k",
    "tasks.math500",
    "tasks.gpqa_diamond",
    "tasks.olympiadbench",
    "tasks.flashrag",
    "tasks.lm_eval_bridge",
    "training.data_cli",
    "training.cli",
)
DIST = "thought-harness"  # the distribution of the built-in plugins

KINDS = tuple(CONTRACT)

_pm: pluggy.PluginManager | None = None
_registries: dict[str, "Registry"] | None = None
_broken: list[dict] = []  # plugins that failed to load or register: name, dist, error
_dists: dict[str, tuple[str, str | None]] = {}  # plugin name -> (distribution, version)


class PluginError(click.ClickException):
    """A plugin could not be loaded or registered."""


def normalise(name: str) -> str:
    """PEP 503 normalisation: ``Harness_My.Plugin`` -> ``harness-my-plugin``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _entry_points():
    return importlib.metadata.entry_points(group="harness")


def _env_names(var: str) -> set[str] | None:
    value = os.environ.get(var)
    return None if value is None else {normalise(a.strip()) for a in value.split(",") if a.strip()}


def _where(exc: BaseException) -> str:
    """file:line of the innermost frame of ``exc``'s traceback outside importlib."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "importlib" not in f.filename]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def get_plugin_manager() -> pluggy.PluginManager:
    """Return the process-wide plugin manager, loading plugins on first use."""
    global _pm
    if _pm is not None:
        return _pm
    pm = pluggy.PluginManager("harness")
    pm.add_hookspecs(hookspecs)
    _broken.clear()
    _dists.clear()
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name)
        _dists[name] = (DIST, __version__)
    allow, deny = _env_names("HARNESS_LOAD_PLUGINS"), _env_names("HARNESS_DISABLE_PLUGINS") or set()
    matched: set[str] = set()
    for ep in _entry_points():
        dist = ep.dist.name if ep.dist is not None else ep.name
        version = getattr(ep.dist, "version", None) if ep.dist is not None else None
        names = {normalise(n) for n in (dist, ep.name, ep.value)}
        matched |= names
        if (allow is not None and not names & allow) or names & deny:
            continue
        try:
            module = ep.load()
        except Exception as exc:  # a broken third-party plugin is listed, not fatal
            _broken.append({"name": ep.name, "dist": dist, "version": version, "module": ep.value,
                            "error": f"import failed at {_where(exc)}: {type(exc).__name__}: {exc}"})
            continue
        if pm.is_registered(module) or pm.has_plugin(ep.name):
            continue
        pm.register(module, ep.name)
        _dists[ep.name] = (dist, version)
    for var, names in (("HARNESS_LOAD_PLUGINS", allow or set()), ("HARNESS_DISABLE_PLUGINS", deny)):
        for name in sorted(names - matched):
            click.echo(f"warning: {var} names {name!r}, which matches no installed plugin", err=True)
    _pm = pm
    return pm


def reset() -> None:
    """Forget loaded plugins (tests use this after changing entry points or the environment)."""
    global _pm, _registries
    _pm = None
    _registries = None


def _source_sha(*objs) -> str | None:
    """A hash of the source files that define ``objs`` (a plugin's module, a class)."""
    paths = set()
    for obj in objs:
        path = getattr(obj, "__file__", None)
        if path is None:
            try:
                path = inspect.getsourcefile(obj)
            except TypeError:
                path = None
        if path and os.path.isfile(path):
            paths.add(path)
    if not paths:
        return None
    h = hashlib.sha256()
    for path in sorted(paths):
        with open(path, "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()[:16]


class Registry:
    """Named classes of one kind, with their sources, built from one hook and checked against
    the kind's contract (:mod:`harness.protocols`)."""

    def __init__(self, kind: str):
        self.kind = kind
        self.singular = CONTRACT[kind].singular
        self.classes: dict[str, type] = {}
        self.sources: dict[str, str] = {}
        self.refused: dict[str, str] = {}  # name -> why (a class that broke the contract)

    def label(self, name: str) -> str:
        """``intervention 'x' (plugin x, dist harness-x)``: how errors name a plugin's class."""
        source = self.sources.get(name, "?")
        dist = _dists.get(source, (source, None))[0]
        return f"{self.singular} {name!r} (plugin {source}, dist {dist})"

    def add(self, cls: type, source: str) -> None:
        name = getattr(cls, "name", None)
        dist = _dists.get(source, (source, None))[0]
        if not isinstance(name, str) or not name:
            return self._refuse(f"<unnamed {getattr(cls, '__name__', cls)!r}>", source, "has no 'name'")
        if name in self.classes:
            raise PluginError(f"duplicate {self.singular} name {name!r}: registered by {self.sources[name]} "
                              f"and by {source}")
        problems = missing_members(cls, self.kind)
        if problems:
            if source in DEFAULT_PLUGINS:  # a built-in that breaks the contract is a bug here
                raise PluginError(f"built-in {self.singular} {name!r} ({source}): {'; '.join(problems)}")
            return self._refuse(name, source, "; ".join(problems), dist)
        self.classes[name] = cls
        self.sources[name] = source

    def _refuse(self, name: str, source: str, why: str, dist: str | None = None) -> None:
        dist = dist or _dists.get(source, (source, None))[0]
        self.refused[name] = f"{self.singular} {name!r} from plugin {source} (dist {dist}) was refused: {why}"
        _broken.append({"name": source, "dist": dist, "error": self.refused[name]})

    def check_requires(self) -> None:
        """Refuse interventions whose ``requires`` name an intervention nobody registered."""
        for name in list(self.classes):
            unknown = [r for r in getattr(self.classes[name], "requires", ()) if r not in self.classes]
            if unknown:
                source = self.sources.pop(name)
                del self.classes[name]
                self._refuse(name, source, f"requires unknown intervention(s) {', '.join(map(repr, unknown))} "
                             f"(known: {', '.join(sorted(self.classes))})")

    def names(self) -> list[str]:
        return sorted(self.classes)

    def get(self, name: str, param_hint: str | None = None) -> type:
        """Return the class called ``name`` or fail listing the valid names (exit code 2)."""
        if name in self.classes:
            return self.classes[name]
        hint = param_hint or f"--{self.singular.replace(' ', '-')}"
        if name in self.refused:
            raise BadInput(self.refused[name], param_hint=hint)
        extra = "".join(f"; plugin {b['name']} failed to load ({b['error']})" for b in _broken
                        if b["error"].startswith("import failed"))
        for var in ("HARNESS_LOAD_PLUGINS", "HARNESS_DISABLE_PLUGINS"):
            if os.environ.get(var) is not None:
                extra += f"; {var}={os.environ[var]!r} is set"
        valid = ", ".join(self.names()) or "(none)"
        raise BadInput(f"unknown {self.singular} {name!r}; valid: {valid}{extra}", param_hint=hint)

    def create(self, name: str, options: dict, *args, param_hint: str | None = None):
        """An instance of the class called ``name``, made with ``options`` checked and typed against
        its declared ``options`` (``harness.options.Option``: unknown keys, bad values and missing
        required ones are one-line errors; defaults filled in), then ``*args``. A class that
        declares no options gets ``options`` as given."""
        from harness.options import parse_options

        cls = self.get(name, param_hint)
        declared = getattr(cls, "options", ())
        if isinstance(declared, tuple) and declared:
            hint = param_hint or f"--{self.singular.replace(' ', '-')}"
            options = parse_options(declared, options, f"{name} {self.singular}", f"{hint}-option")
        return cls(options, *args)

    def provenance(self, name: str) -> dict:
        """Where the class called ``name`` comes from, for the manifest and the config hash:
        plugin, distribution and version, and for third-party plugins a hash of its module's source."""
        source = self.sources[name]
        dist, version = _dists.get(source, (source, None))
        out = {"plugin": source, "dist": dist, "version": version}
        if dist != DIST:
            out["source_sha"] = _source_sha(get_plugin_manager().get_plugin(source), self.classes[name])
        return out


def registries() -> dict[str, Registry]:
    """Build (once) the registry of every kind by calling each ``register_*`` hook."""
    global _registries
    if _registries is not None:
        return _registries
    pm = get_plugin_manager()
    regs = {}
    for kind in KINDS:
        reg = Registry(kind)
        hook = getattr(pm.hook, CONTRACT[kind].hook)
        for impl in hook.get_hookimpls():
            source = impl.plugin_name
            try:
                impl.function(lambda cls, _s=source, _r=reg: _r.add(cls, _s))
            except PluginError:
                raise
            except Exception as exc:  # the hook itself raised: that plugin is broken, the rest work
                _broken.append({"name": source, "dist": _dists.get(source, (source,))[0],
                                "error": f"{CONTRACT[kind].hook} failed at {_where(exc)}: {type(exc).__name__}: {exc}"})
        regs[kind] = reg
    regs["interventions"].check_requires()
    _registries = regs
    return regs


def registry(kind: str) -> Registry:
    return registries()[kind]


def broken_plugins() -> list[dict]:
    """Plugins that failed to import or register, with why."""
    registries()
    return list(_broken)


def plugin_summary() -> list[dict]:
    """One row per loaded plugin (what it registers) and per broken one, for ``harness plugins``."""
    regs = registries()
    pm = get_plugin_manager()
    rows = []
    for name, plugin in pm.list_name_plugin():
        provides = {k: sorted(n for n, s in r.sources.items() if s == name) for k, r in regs.items()}
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        dist, version = _dists.get(name, (name, None))
        rows.append({
            "name": name,
            "builtin": name in DEFAULT_PLUGINS,
            "dist": dist,
            "version": version,
            "hooks": hooks,
            "provides": {k: v for k, v in provides.items() if v},
        })
    rows += [dict(b, broken=True) for b in _broken]
    return rows
