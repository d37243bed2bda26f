"""Command-line ``KEY=VALUE`` options."""

from __future__ import annotations

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
