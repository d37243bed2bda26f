"""Command-line ``KEY=VALUE`` options, and the one declarative parser for plugin options."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness.errors import BadInput


def parse_kv(values, param_hint: str) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; a value without ``=`` is a one-line error."""
    out = {}
    for v in values:
        if "=" not in v:
            raise BadInput(f"expected KEY=VALUE, got {v!r}", param_hint=param_hint)
        k, _, val = v.partition("=")
        out[k.strip()] = val
    return out


@dataclass(frozen=True)
class Option:
    """One declared plugin option: its type (str, int, float or bool), default, allowed choices or
    range, and a one-line help. A plugin declares a tuple of them and parses what the user gave
    with :func:`parse_options`; ``harness list`` shows them with :meth:`describe`."""

    key: str
    type: type = str
    default: Any = None
    help: str = ""
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    required: bool = False

    def describe(self) -> str:
        what = " | ".join(map(str, self.choices)) if self.choices else _TYPE_NAMES[self.type]
        if self.low is not None and self.high is not None:
            what += f" in [{self.low}, {self.high}]"
        elif self.low is not None or self.high is not None:
            what += f" >= {self.low}" if self.high is None else f" <= {self.high}"
        default = "required" if self.required else f"default {self.default!r}"
        return f"{self.key}: {what}, {default}" + (f" - {self.help}" if self.help else "")

    def parse(self, value, owner: str, param_hint: str):
        """``value`` (a string from the command line, or already typed) as this option's type."""
        if value is None:
            return None
        bad = f"{owner}: {self.key}={value!r}"
        if self.type is bool:
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise BadInput(f"{bad} is not true or false", param_hint=param_hint)
        if self.type in (int, float):
            try:
                number = self.type(value)
            except (TypeError, ValueError):
                number = None
            if number is None or isinstance(value, bool) or (self.type is int and isinstance(value, float)) \
                    or not math.isfinite(number):
                raise BadInput(f"{bad} is not {'an integer' if self.type is int else 'a finite number'}",
                               param_hint=param_hint)
            if (self.low is not None and number < self.low) or (self.high is not None and number > self.high):
                bounds = f">= {self.low}" if self.high is None else f"in [{self.low}, {self.high}]"
                raise BadInput(f"{bad} must be {bounds}", param_hint=param_hint)
            value = number
        else:
            value = str(value)
        if self.choices and value not in self.choices:
            raise BadInput(f"{bad}; valid: {', '.join(map(str, self.choices))}", param_hint=param_hint)
        return value


_TYPE_NAMES = {str: "text", int: "integer", float: "number", bool: "true/false"}


def parse_options(spec, given: dict, owner: str, param_hint: str) -> dict:
    """``given`` (KEY -> value) checked against the declared ``spec`` (a tuple of :class:`Option`):
    every key known, every value of its type and range; missing keys take their defaults."""
    known = {o.key: o for o in spec}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise BadInput(f"unknown {owner} option {unknown[0]!r}; valid: {', '.join(known) or 'none'}",
                       param_hint=param_hint)
    out = {}
    for key, opt in known.items():
        if opt.required and given.get(key) in (None, ""):
            raise BadInput(f"the {owner} needs {param_hint} {key}=...", param_hint=param_hint)
        out[key] = opt.parse(given[key], owner, param_hint) if key in given else opt.default
    return out
