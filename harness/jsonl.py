"""Reading JSONL files line by line with errors that name file:line (run records and data files)."""

from __future__ import annotations

import json
from pathlib import Path

import click


def jsonl_rows(path: Path, error: type[click.ClickException], skip_torn_tail: bool = False) -> list[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of ``path``. Bytes that are not UTF-8, a
    malformed line or a line that is not a JSON object raise ``error`` naming file:line. With
    ``skip_torn_tail`` a last line without its newline (cut by a killed writer) is ignored."""
    rows = []
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            if skip_torn_tail and not raw.endswith(b"\n"):
                break
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise error(f"{path}:{n}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start} "
                            "of the line); save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(f"{path}:{n}: malformed JSON: {exc.msg}") from None
            if not isinstance(row, dict):
                raise error(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
            rows.append((n, row))
    return rows
