"""Runs' records in pandas: ``samples_df(runs)`` and ``runs_df(runs)`` over run directories.

``runs`` is a run directory or a list of them. The records are read and checked by the run store
(as ``harness report`` reads them), and the frames are built by :mod:`reports.analysis`, whose
docstring lists the columns::

    from harness.analysis import samples_df
    df = samples_df(["runs/a", "runs/b"])
    df.groupby(["arm", "condition"])["suffix_logprob"].mean()
"""

from __future__ import annotations

import os

from harness.store import ITEMS, RunStore
from reports.view import RunRecords


def read_runs(runs) -> list[RunRecords]:
    """Each run directory's manifest, items and records (checked against the manifest)."""
    if isinstance(runs, (str, os.PathLike)):
        runs = [runs]
    out = []
    for d in runs:
        store = RunStore(d)
        manifest = store.manifest()
        out.append(RunRecords(str(store.root), manifest, store.read(), store.read(ITEMS)))
    return out


def samples_df(runs):
    """One row per record of ``runs``, with its run's settings joined (:func:`reports.analysis.samples_frame`)."""
    from reports.analysis import samples_frame

    return samples_frame(read_runs(runs))


def runs_df(runs):
    """One row per run (:func:`reports.analysis.runs_frame`)."""
    from reports.analysis import runs_frame

    return runs_frame(read_runs(runs))
