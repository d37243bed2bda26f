"""Built-in judges. ``number_option`` and ``flag_option`` parse a judge's ``--judge-option``
values at construction, so a bad value is one line before any work."""

from __future__ import annotations

import math

from harness.errors import BadInput


def number_option(options: dict, key: str, default, judge: str, *, kind=float, low=None, high=None):
    """Pop ``key`` from ``options`` as a finite ``kind`` (float or int) within [low, high]."""
    value = options.pop(key, default)
    what = "an integer" if kind is int else "a number"
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool) or (kind is int and isinstance(value, float)) \
            or not math.isfinite(number):
        raise BadInput(f"{judge} judge: {key}={value!r} is not {what if kind is int else 'a finite number'}",
                       param_hint="--judge-option")
    if (low is not None and number < low) or (high is not None and number > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise BadInput(f"{judge} judge: {key}={value!r} must be {bounds}", param_hint="--judge-option")
    return number


def flag_option(options: dict, key: str, default: bool, judge: str) -> bool:
    """Pop ``key`` from ``options`` as a boolean (true/false, yes/no, on/off, 1/0)."""
    value = options.pop(key, default)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise BadInput(f"{judge} judge: {key}={value!r} is not true or false", param_hint="--judge-option")
