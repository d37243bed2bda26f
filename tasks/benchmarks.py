"""Shared base for the reasoning-benchmark tasks (``gsm8k``, ``math500``, ``gpqa_diamond``,
``olympiadbench``).

A benchmark task reads rows in the benchmark's own schema (the Hub dataset's column names and
value formats) from the Hub, a local JSONL/parquet copy, or the packaged 12-item fixture
(``data=sample``, written for this project under ``tasks/data/reasoning/``), and turns each row
into an :class:`harness.types.Item`: ``prefix`` is the problem as shown to the model, ``suffix``
the gold answer as a string, ``id`` is ``"<task>/<native id>"`` and ``meta`` holds
``benchmark``, ``answer``, ``grader`` (``"math"`` or ``"choice"``) plus per-benchmark fields.

Options (``--task-option KEY=VALUE``): ``data`` (a .jsonl/.parquet path, ``sample``, or a Hub
dataset id; default: the benchmark's Hub id), ``split``, ``config`` (Hub split and config,
ignored for local files), plus what a subclass adds to ``extra_options``.

A benchmark offered in more than one Hub dataset (say the reference study's copy next to the
canonical one) lists them in ``sources`` (name -> :class:`Source`, the first is the default): the
task then takes ``source=NAME``, and the chosen source decides the Hub id, split, config, expected
count and packaged fixture (``split``/``config`` given explicitly still win). ``parse`` sees the
choice as ``self.source_name``; ``select`` may cut or filter the rows before they become items.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources

import click

from harness.options import Option, parse_options
from harness.types import Item
from tasks.loading import DataError, is_local, read_rows, require

SAMPLE = "sample"


def fixture_path(filename: str) -> str:
    return str(resources.files("tasks").joinpath(f"data/reasoning/{filename}"))


def where(row: dict) -> str:
    return f"{row['_source']}:{row['_line']}"


def scalar(value):
    """A plain Python value: numpy scalars (from parquet) unwrapped, NaN read as missing."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)) and not hasattr(value, "__len__"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def as_list(value) -> list | None:
    """A list column as a list (JSON gives lists, parquet gives numpy arrays); None if absent."""
    value = scalar(value) if not hasattr(value, "__len__") else value
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if hasattr(value, "tolist"):
        value = value.tolist()
    return [scalar(v) for v in value] if isinstance(value, (list, tuple)) else None


def text(row: dict, column: str) -> str:
    """A required, non-empty text column, stripped (DataError naming file:line otherwise)."""
    return require(row, column).strip()


def optional_text(row: dict, column: str) -> str | None:
    value = scalar(row.get(column))
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def native_id(row: dict, column: str) -> str:
    """A row's own id as a string (ints stay ints even when parquet made the column float)."""
    value = scalar(row.get(column))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value is None or isinstance(value, bool) or not str(value).strip():
        raise DataError(f"{where(row)}: missing or empty id column {column!r} "
                        f"(columns: {', '.join(k for k in row if not k.startswith('_'))})")
    return str(value).strip()


@dataclass(frozen=True)
class Source:
    """One Hub dataset a benchmark task can read (``--task-option source=NAME``)."""

    hub_id: str
    hub_config: str | None
    hub_split: str
    expected_count: int  # items of the full set (after the source's own selection rule)
    fixture: str  # file name under tasks/data/reasoning/
    note: str = ""  # one line for ``harness list tasks``


class BenchmarkTask:
    """Base class: subclasses set the class attributes and implement :meth:`parse`."""

    name = ""
    description = ""
    hub_id = ""
    hub_config: str | None = None
    hub_split = "test"
    expected_count = 0  # rows in the full Hub split: config() shows it next to n_loaded
    grader = "math"
    fixture = ""  # file name under tasks/data/reasoning/
    extra_options: tuple = ()  # a subclass's own --task-options (harness.options.Option)
    options: tuple = ()  # set per subclass from the Hub settings: data, split, config, then extra_options
    # Alternative Hub datasets (name -> Source, the first the default); {} for one dataset, the
    # class attributes above. With sources, those attributes are the default source's.
    sources: dict = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        choice = ()
        if cls.sources:
            default = next(iter(cls.sources.values()))
            cls.hub_id, cls.hub_config, cls.hub_split = default.hub_id, default.hub_config, default.hub_split
            cls.expected_count, cls.fixture = default.expected_count, default.fixture
            notes = "; ".join(f"{k}: {s.hub_id}" + (f" ({s.note})" if s.note else "") for k, s in cls.sources.items())
            choice = (Option("source", str, next(iter(cls.sources)), f"which Hub dataset ({notes})",
                             choices=tuple(cls.sources)),)
        # With sources, split and config default to None: the chosen source's (resolved in __init__)
        split, config = (None, None) if cls.sources else (cls.hub_split, cls.hub_config)
        per_source = " (default: the source's)" if cls.sources else ""
        schema = "the source's" if cls.sources else f"the {cls.hub_id or 'Hub'}"
        cls.options = (Option("data", str, None, f"a local file in {schema} schema, 'sample' "
                              "(the packaged fixture) or a Hub dataset id (default: the Hub id)"),
                       Option("split", str, split, "Hub split" + per_source),
                       Option("config", str, config, "Hub config ('none' for none)" + per_source),
                       *choice,
                       *cls.extra_options)

    def __init__(self, options=None):
        self.options = parse_options(self.options, options or {}, f"{self.name} task", "--task-option")
        self.source_name = self.options.get("source")
        if self.sources:
            src = self.sources[self.source_name]
            self.hub_id, self.expected_count, self.fixture = src.hub_id, src.expected_count, src.fixture
            self.hub_config, self.hub_split = src.hub_config, src.hub_split
            if self.options["split"] is None:
                self.options["split"] = src.hub_split
            if self.options["config"] is None:
                self.options["config"] = src.hub_config
        if isinstance(self.options["config"], str) and self.options["config"].strip().lower() in ("", "none"):
            self.options["config"] = None
        self.n_loaded: int | None = None

    # -- data -----------------------------------------------------------------------------

    def source(self) -> str:
        data = self.options["data"] or self.hub_id
        return fixture_path(self.fixture) if data == SAMPLE else str(data)

    def is_hub(self) -> bool:
        return not is_local(self.source())

    def hub_hint(self) -> str:
        """What to do when a Hub dataset cannot be loaded (offline, gated, missing)."""
        return (f"To run without the Hub, pass a local copy in the {self.hub_id} schema with "
                f"--task-option data=PATH (.jsonl or .parquet), or data=sample for the packaged "
                f"{self.name} fixture (12 items)")

    def rows(self) -> list[dict]:
        source = self.source()
        try:
            return read_rows(source, split=self.options["split"], config=self.options["config"])
        except DataError as exc:
            if not self.is_hub():
                raise
            raise DataError(f"{exc.message.rstrip('.')}. {self.hub_hint()}") from exc

    # -- items ----------------------------------------------------------------------------

    def parse(self, row: dict, n: int) -> tuple[str, str, str, dict]:
        """(native id, prefix, gold answer, extra meta) for row number ``n`` (0-based)."""
        raise NotImplementedError

    def select(self, rows: list[tuple[int, dict]]) -> list[tuple[int, dict]]:
        """The (row number, row) pairs that become items, in order (default: all of them)."""
        return rows

    def source_config(self) -> dict:
        """What a subclass adds to :meth:`config` (e.g. a source's selection rule)."""
        return {}

    def items(self) -> list[Item]:
        source = self.source()
        items, seen = [], {}
        for n, row in self.select(list(enumerate(self.rows()))):
            native, prefix, answer, extra = self.parse(row, n)
            item_id = f"{self.name}/{native}"
            if item_id in seen:
                raise DataError(f"{where(row)}: duplicate id {item_id!r} (first at line {seen[item_id]})")
            seen[item_id] = row["_line"]
            meta = {"benchmark": self.name, "answer": answer, "grader": self.grader, **extra}
            items.append(Item(item_id, prefix, answer, None, meta))
        if not items:
            raise DataError(f"no items in {source}")
        self.n_loaded = len(items)
        if self.is_hub() and self.n_loaded != self.expected_count:
            click.echo(f"warning: {self.name}: loaded {self.n_loaded} rows from {source}, "
                       f"expected {self.expected_count} for the full set", err=True)
        return items

    def config(self) -> dict:
        data = self.options["data"] or self.hub_id
        if data == SAMPLE:
            data = f"package:reasoning/{self.fixture}"
        return {"name": self.name, **self.options, "data": data, "hub_id": self.hub_id,
                "expected_count": self.expected_count, "n_loaded": self.n_loaded, **self.source_config()}
