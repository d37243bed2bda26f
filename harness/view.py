"""``harness view RUN... --out DIR``: the runs' records as one self-contained HTML page
(``DIR/index.html``), built by :mod:`reports.view`."""

from __future__ import annotations

from pathlib import Path

from harness.analysis import read_runs
from harness.errors import BadInput
from harness.store import atomic_write
from reports.view import build_page

PAGE = "index.html"


def default_out(run_dirs) -> Path:
    """Where the page goes without ``--out``: ``RUN/view`` for one run; several runs need ``--out``."""
    if len(run_dirs) != 1:
        raise BadInput("several runs need --out DIR (where index.html goes)", param_hint="--out")
    return Path(run_dirs[0]) / "view"


def write_view(run_dirs, out=None, title=None) -> Path:
    """Build the page over ``run_dirs`` and write it to ``out/index.html``; its path."""
    out = Path(out) if out else default_out(run_dirs)
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out} is a file, not a directory", param_hint="--out")
    page = build_page(read_runs(run_dirs), title)
    path = out / PAGE
    atomic_write(path, page)
    return path
