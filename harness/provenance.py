"""Where a run's or a checkpoint's code came from: library versions and the git commit."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

from harness import __version__

LIBRARIES = ("torch", "transformers", "tokenizers", "numpy", "scipy", "pluggy", "click", "accelerate")


def versions() -> dict:
    """Python, harness and the installed libraries' versions."""
    out = {"python": platform.python_version(), "harness": __version__}
    for dist in LIBRARIES:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_sha() -> str | None:
    """The harness checkout's commit, or None outside a git checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
