"""Formatting of estimates with intervals (the statistics themselves live in paired_stats/compare)."""

from __future__ import annotations


def fmt_ci(stat: dict, digits: int = 3, signed: bool = False) -> str:
    """``0.125 [0.063, 0.188]`` (or ``-`` when there is no estimate)."""
    if stat.get("estimate") is None:
        return "-"
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    if stat.get("ci_low") is None:
        return f.format(stat["estimate"])
    return f"{f.format(stat['estimate'])} [{f.format(stat['ci_low'])}, {f.format(stat['ci_high'])}]"
