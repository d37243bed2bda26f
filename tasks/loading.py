"""Read rows from a local JSONL/parquet file or a Hugging Face dataset id.

Every row comes back with ``_line`` (1-based line or row number) and ``_source`` so that errors
about a row can name the file and line.
"""

from __future__ import annotations

from pathlib import Path

import click

from harness.jsonl import jsonl_rows


class DataError(click.ClickException):
    """Input data is missing or malformed; the message names the file and line."""


def is_local(source: str) -> bool:
    """Whether ``source`` names a local file (existing, or path-like) rather than a Hub dataset id."""
    return (Path(source).expanduser().exists() or source.startswith(("/", "./", "../", "~"))
            or source.endswith((".jsonl", ".parquet", ".json")))


def read_rows(source: str, *, split: str = "train", config: str | None = None) -> list[dict]:
    path = Path(source).expanduser()
    if path.exists():
        if path.suffix == ".jsonl" or path.suffix == ".json":
            return _read_jsonl(path)
        if path.suffix == ".parquet":
            import pandas as pd

            frame = pd.read_parquet(path)
            return [dict(r, _line=n, _source=str(path)) for n, r in enumerate(frame.to_dict("records"), 1)]
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .jsonl or .parquet")
    if is_local(source):
        raise DataError(f"data file not found: {source}")
    return _read_hf(source, split=split, config=config)


def _read_jsonl(path: Path) -> list[dict]:
    return [dict(row, _line=n, _source=str(path)) for n, row in jsonl_rows(path, DataError)]


def _read_hf(dataset_id: str, *, split: str, config: str | None) -> list[dict]:
    try:
        import datasets
    except ImportError as exc:
        raise DataError("loading a Hub dataset needs the 'datasets' package: pip install 'thought-harness[data]'") from exc
    try:
        ds = datasets.load_dataset(dataset_id, config, split=split)
    except Exception as exc:  # offline, gated, missing: say which dataset and why
        raise DataError(f"could not load dataset {dataset_id!r} (config={config}, split={split}): {exc}") from exc
    return [dict(r, _line=n, _source=f"{dataset_id}:{split}") for n, r in enumerate(ds, 1)]


def require(row: dict, column: str) -> str:
    value = row.get(column)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{row['_source']}:{row['_line']}: missing or empty text column {column!r} "
                        f"(columns: {', '.join(k for k in row if not k.startswith('_'))})")
    return value
