"""Arms: named model checkpoints, from the packaged arms file, the user's, or a bare spec."""

from __future__ import annotations

import os
import tomllib
import typing
from dataclasses import fields
from importlib import resources
from pathlib import Path

from harness.errors import BadInput

from harness.types import Arm

_ARM_FIELDS = {f.name for f in fields(Arm)}
# Each arm-file key's Python type (str, bool, dict), from the Arm dataclass's annotations.
_ARM_TYPES = {k: typing.get_origin(t) or t for k, t in typing.get_type_hints(Arm).items() if k != "name"}
_TOML_NAMES = {str: "a string", bool: "true or false", dict: "a table"}


def _read_arms_toml(text: str, source: str) -> dict[str, Arm]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{source}: {exc}", param_hint="--arms-file") from exc
    table = data.get("arms") or {}
    if not isinstance(table, dict):
        raise BadInput(f"{source}: 'arms' must be a table of arms ([arms.NAME] sections), got {type(table).__name__}",
                       param_hint="--arms-file")
    arms = {}
    for name, spec in table.items():
        if not isinstance(spec, dict):
            raise BadInput(f"{source}: arm {name!r} must be a table ([arms.{name}]), got {spec!r}",
                           param_hint="--arms-file")
        if "model" not in spec:
            raise BadInput(f"{source}: arm {name!r} needs a 'model' key", param_hint="--arms-file")
        unknown = set(spec) - set(_ARM_TYPES)
        if unknown:
            raise BadInput(
                f"{source}: arm {name!r} has unknown keys {sorted(unknown)}; valid: {sorted(_ARM_TYPES)}",
                param_hint="--arms-file",
            )
        for key, value in spec.items():
            want = _ARM_TYPES[key]
            if not isinstance(value, want):
                raise BadInput(f"{source}: arm {name!r}: {key} must be {_TOML_NAMES.get(want, want.__name__)}, "
                               f"got {value!r}", param_hint="--arms-file")
        if not spec["model"].strip():
            raise BadInput(f"{source}: arm {name!r}: model is empty", param_hint="--arms-file")
        arms[name] = Arm(name=name, **spec)
    return arms


def load_arms(arms_file: str | os.PathLike | None = None) -> dict[str, Arm]:
    """The packaged arms, overridden and extended by ``arms_file`` if given."""
    text = resources.files("harness").joinpath("arms.toml").read_text()
    arms = _read_arms_toml(text, "packaged arms.toml")
    if arms_file is not None:
        path = Path(arms_file)
        if not path.is_file():
            raise BadInput(f"arms file not found: {path}", param_hint="--arms-file")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise BadInput(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})", param_hint="--arms-file") from None
        arms.update(_read_arms_toml(text, str(path)))
    return arms


def looks_like_spec(value: str) -> bool:
    """A bare ``--arm`` value that names a model rather than an arm: a path, a Hub id
    (``org/name``), or a ``package:``/``random:`` spec."""
    return (
        value.startswith(("package:", "random:", "/", "./", "../", "~"))
        or value.endswith(".gguf")
        or "/" in value
        or os.path.exists(value)
    )


def trained_settings(path: str) -> dict:
    """Arm settings (think tags, prompt prefix, options) a checkpoint written by ``harness train``
    inherited from its parent arm, read from its ``lineage.json``; {} for other paths."""
    import json

    lineage = Path(path).expanduser() / "lineage.json"
    if not lineage.is_file():
        return {}
    try:
        settings = json.loads(lineage.read_text()).get("arm_settings") or {}
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in settings.items() if k in _ARM_FIELDS - {"name", "model", "device", "dtype"}}


def resolve_arm(value: str, arms: dict[str, Arm]) -> Arm:
    """Resolve ``--arm VALUE``: an arm name, else a model spec used with default settings."""
    if value in arms:
        return arms[value]
    if looks_like_spec(value):
        return Arm(name=value, model=value, **trained_settings(value))
    raise BadInput(
        f"unknown arm {value!r}; valid: {', '.join(sorted(arms))} "
        "(or a Hub id, a local path, or a .gguf file)",
        param_hint="--arm",
    )
