"""Task ``interleaved``: one item per interleaved-thinking row, the row's text whole.

The ``chunks`` task cuts a row into a prefix and a true suffix for the probe; evals that score a
row as it is (the ``nll`` eval) need the row itself. Here an item is one row: ``prefix`` is the
row's text exactly as given (thoughts and tags in place), ``suffix`` is empty, ``cluster`` its
``source`` column, and ``meta`` holds the tags the text was parsed with and its number of thoughts.
Rows are read and parsed as ``harness data validate`` and ``harness train sft`` read them: the
shared parser (:func:`tasks.thought_spans.parse_thoughts`) refuses unbalanced or nested tags and
empty thoughts, naming file and line. A row without any thought is kept (``meta["thoughts"]`` 0):
an eval says what is undefined for it.

``rows=validation`` keeps only the rows ``harness train sft`` holds out for its evals with the same
``val_fraction`` (:func:`split_rows`: a ``split`` column when rows have one, else the rows whose id
hashes lowest), so an eval of a checkpoint scores the trainer's held-out rows; ``rows=train`` the
others; ``rows=all`` (default) every row.

Options (``--task-option KEY=VALUE``): ``data`` (a JSONL/parquet file, a Hub dataset id, or
``sample``: the packaged 32-row sample, also the default, the one ``harness train sft`` trains on
by default), ``split``, ``config``, ``id_column``, ``text_column``, ``cluster_column``,
``think_open``, ``think_close``, ``rows``, ``val_fraction``.
"""

from __future__ import annotations

import hashlib
import math
from importlib import resources

from harness.errors import BadInput
from harness.hookspecs import hookimpl
from harness.options import Option, parse_options
from harness.types import Item
from tasks.loading import DataError, read_rows, require
from tasks.thought_spans import CLOSE, OPEN, MalformedThoughts, parse_thoughts

HELD_OUT = ("validation", "val", "test", "eval")
OPTIONS = (
    Option("data", str, None, "JSONL/parquet file, Hub dataset id, or 'sample' (default: the packaged 32 "
                              "interleaved rows, harness train sft's default data)"),
    Option("split", str, "train", "Hub split"),
    Option("config", str, None, "Hub config"),
    Option("id_column", str, "id", "column with the row id (default: row number)"),
    Option("text_column", str, "text", "column with the interleaved text"),
    Option("cluster_column", str, "source", "column naming the row's source (cluster-aware statistics)"),
    Option("think_open", str, OPEN, "open tag of the thoughts in the text"),
    Option("think_close", str, CLOSE, "close tag of the thoughts in the text"),
    Option("rows", str, "all", "all rows, or only those harness train sft holds out (validation) or trains on "
                               "(train)", choices=("all", "validation", "train")),
    Option("val_fraction", float, 0.0625, "with rows=validation/train and no 'split' column: held-out share "
                                          "(harness train sft's --val-fraction)", low=0.0, high=1.0),
)


@hookimpl
def register_tasks(register):
    register(InterleavedTask)


def sample_path() -> str:
    """The packaged interleaved sample (``tasks/data/sample_interleaved.jsonl``)."""
    return str(resources.files("tasks").joinpath("data", "sample_interleaved.jsonl"))


def split_rows(rows: list[dict], frac: float, id_of) -> tuple[list[dict], list[dict]]:
    """(train, held out). Rows with a ``split`` column go by it (validation/val/test/eval held out);
    otherwise the ``ceil(frac * n)`` rows whose id (``id_of(row)``) hashes lowest are held out
    (independent of row order; at least one row is kept for training)."""
    if any("split" in r for r in rows):
        held = [r for r in rows if str(r.get("split", "train")).lower() in HELD_OUT]
        return [r for r in rows if r not in held], held
    if frac <= 0 or len(rows) < 2:
        return rows, []
    k = min(len(rows) - 1, max(1, math.ceil(frac * len(rows))))
    order = sorted(rows, key=lambda r: hashlib.sha256(str(id_of(r)).encode()).hexdigest())
    held_ids = {id_of(r) for r in order[:k]}
    return [r for r in rows if id_of(r) not in held_ids], [r for r in rows if id_of(r) in held_ids]


class InterleavedTask:
    name = "interleaved"
    description = "interleaved-thinking rows whole, one item per row (default: the packaged 32-row sample)"

    options = OPTIONS

    def __init__(self, options=None):
        self.options = parse_options(self.options, options or {}, "interleaved task", "--task-option")
        for key in ("think_open", "think_close"):
            if not self.options[key]:
                raise BadInput(f"interleaved task: {key} is empty (give the tag text)", param_hint="--task-option")

    def _source(self) -> str:
        data = self.options["data"]
        return sample_path() if data in (None, "", "sample") else data

    def config(self) -> dict:
        data = self.options["data"]
        return {"name": self.name, **self.options,
                "data": "package:sample_interleaved" if data in (None, "", "sample") else data}

    def items(self) -> list[Item]:
        o = self.options
        rows = read_rows(self._source(), split=o["split"], config=o["config"])
        seen = {}
        for n, row in enumerate(rows):
            row["_id"] = str(row.get(o["id_column"]) or f"row{n:05d}")
            if row["_id"] in seen:
                raise DataError(f"{row['_source']}:{row['_line']}: duplicate id {row['_id']!r} "
                                f"(first at line {seen[row['_id']]})")
            seen[row["_id"]] = row["_line"]
        if o["rows"] != "all":
            train, held = split_rows(rows, o["val_fraction"], lambda r: r["_id"])
            rows = held if o["rows"] == "validation" else train
        items = []
        for row in rows:
            text = require(row, o["text_column"])
            try:
                parsed = parse_thoughts(text, o["think_open"], o["think_close"])
            except MalformedThoughts as exc:
                raise DataError(f"{row['_source']}:{row['_line']}: {exc.reason}") from exc
            cluster = row.get(o["cluster_column"])
            items.append(Item(row["_id"], text, "", None if cluster is None else str(cluster),
                              {"think_open": o["think_open"], "think_close": o["think_close"],
                               "thoughts": len(parsed.thoughts)}))
        if not items:
            what = "" if o["rows"] == "all" else f" with rows={o['rows']}"
            raise DataError(f"no rows{what} in {o['data'] or 'the packaged sample'}")
        return items
