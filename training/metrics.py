"""The numbers a stage reports and how it prints them: means that skip missing values, peak
memory, text statistics of samples (repetition, letters, artifacts) and log lines."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from plugins.evals.nll_scoring import repetition_rate  # noqa: F401  (one definition, shared with the nll eval)

if TYPE_CHECKING:
    from training.policy import Policy


def mean(xs) -> float | None:
    """The mean of the values that are not None (None when there are none)."""
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def peak_memory_gib(device) -> float:
    """Peak accelerator memory allocated, or the process's peak resident memory on CPU."""
    import torch

    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**30 if sys.platform == "darwin" else 2**20)


# -- text statistics of samples -----------------------------------------------------------------
def alpha_ratio(text: str) -> float:
    """Letters over non-space characters (1.0 for empty text)."""
    chars = [c for c in text if not c.isspace()]
    return 1.0 if not chars else sum(c.isalpha() for c in chars) / len(chars)


def is_artifact(text: str, max_repetition: float = 0.3, min_alpha: float = 0.6) -> bool:
    """A degenerate sample: heavy 4-gram repetition or mostly non-letters."""
    return repetition_rate(text) > max_repetition or alpha_ratio(text) < min_alpha


# -- log lines ----------------------------------------------------------------------------------
def log_line(step: int, total: int, row: dict, keys: list[str]) -> str:
    parts = [f"step {step}/{total}"]
    for k in keys:
        v = row.get(k)
        if v is None:
            continue
        parts.append(f"{k} {fmt(v)}")
    return "  ".join(parts)


def fmt(v) -> str:
    """Floats to 4 significant digits, large ones as whole numbers."""
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def echo(policy: Policy, text: str) -> None:
    """Print ``text`` to stderr from the main process only."""
    if policy.is_main:
        click.echo(text, err=True)
