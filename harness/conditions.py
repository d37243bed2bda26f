"""Conditions as the command line names them: ``NAME`` or ``NAME:KEY=VALUE[,KEY=VALUE...]``.

A condition is one registered intervention with its options. The options an intervention takes
are its declared ``options`` (``harness.options.Option``); they are checked and typed here, and
the condition's recorded name is the spec normalised: the options the user gave, keys sorted,
values as parsed (``truncated:fraction=.25`` -> ``truncated:fraction=0.25``). A condition given
without options keeps its bare name, so runs without options record exactly what they did
before. The pipeline re-parses the recorded name, so the name is the whole description of the
condition.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.errors import BadInput
from harness.options import parse_options


@dataclass(frozen=True)
class Condition:
    """``name``: as recorded (normalised); ``plugin``: the registered name; ``options``: every
    declared option, parsed, defaults filled in (empty for a class that declares none);
    ``given``: the keys the user wrote."""

    name: str
    plugin: str
    options: dict = field(default_factory=dict, compare=False, hash=False)
    given: tuple[str, ...] = ()


def split_spec(spec: str, param_hint: str = "--intervention") -> tuple[str, dict[str, str]]:
    """``"truncated:fraction=0.5"`` -> ``("truncated", {"fraction": "0.5"})``."""
    name, colon, rest = spec.partition(":")
    name = name.strip()
    if not name:
        raise BadInput(f"{spec!r}: no condition name before ':'", param_hint=param_hint)
    given: dict[str, str] = {}
    if colon:
        for part in rest.split(","):
            key, eq, value = part.partition("=")
            if not eq or not key.strip():
                raise BadInput(f"{spec!r}: expected NAME:KEY=VALUE[,KEY=VALUE...], got {part!r}",
                               param_hint=param_hint)
            if key.strip() in given:
                raise BadInput(f"{spec!r}: option {key.strip()!r} given twice", param_hint=param_hint)
            given[key.strip()] = value.strip()
        if not given:
            raise BadInput(f"{spec!r}: no options after ':'", param_hint=param_hint)
    return name, given


def _shown(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def declared_options(cls) -> tuple:
    declared = getattr(cls, "options", ())
    return declared if isinstance(declared, tuple) else ()


def parse_condition(spec: str, classes: dict[str, type], singular: str = "intervention",
                    param_hint: str = "--intervention") -> Condition:
    """The condition ``spec`` names, its options checked against the class in ``classes``
    (registered name -> class; an unknown name is a KeyError for the caller to word)."""
    plugin, given = split_spec(spec, param_hint)
    cls = classes[plugin]
    declared = declared_options(cls)
    if given and not declared:
        raise BadInput(f"{singular} {plugin!r} takes no options (got {spec!r})", param_hint=param_hint)
    if not declared:
        return Condition(plugin, plugin)
    missing = [o.key for o in declared if o.required and not given.get(o.key)]
    if missing:
        raise BadInput(f"the {plugin} {singular} needs an option: {param_hint} {plugin}:{missing[0]}=...",
                       param_hint=param_hint)
    options = parse_options(declared, given, f"{plugin} {singular}", param_hint)
    keys = tuple(sorted(given))
    name = plugin + (":" + ",".join(f"{k}={_shown(options[k])}" for k in keys) if keys else "")
    return Condition(name, plugin, options, keys)


def plugin_name(condition: str) -> str:
    """The registered name inside a recorded condition name."""
    return condition.partition(":")[0]


def create(cls, condition: str):
    """An instance for the recorded ``condition`` name: ``cls(options)`` for a class that declares
    options (every key, defaults filled in), else ``cls()``."""
    if not declared_options(cls):
        return cls()
    return cls(parse_condition(condition, {plugin_name(condition): cls}).options)
