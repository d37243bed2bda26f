"""The JSONL passage corpus format of Search-R1 / FlashRAG, read once for every reader (the
``bm25`` retriever, the QA tasks' gold passages)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from harness.errors import BadInput


def read_corpus(path: Path, who: str = "corpus", hint: str | None = None) -> tuple[list[str], list[str], str]:
    """``(ids, contents, sha256 of the file)`` of a JSONL passage corpus (``{"id", "contents"}`` rows,
    the first line of ``contents`` the title; blank lines skipped; an integer id read as its decimal
    string); a missing file or a malformed row is a BadInput naming ``file:line`` (``who``: what
    reads it, ``hint``: the option that named the file)."""
    if not path.is_file():
        raise BadInput(f"{who}: corpus file {str(path)!r} does not exist", param_hint=hint)
    ids: list[str] = []
    contents: list[str] = []
    seen: dict[str, int] = {}
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            digest.update(raw)
            if not raw.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise BadInput(f"{where}: not JSON ({exc})", param_hint=hint) from None
            if not isinstance(row, dict):
                raise BadInput(f"{where}: a JSON {type(row).__name__}, expected an object with \"id\" and "
                               "\"contents\"", param_hint=hint)
            doc_id = row.get("id")
            if isinstance(doc_id, int) and not isinstance(doc_id, bool):
                doc_id = str(doc_id)
            if not isinstance(doc_id, str) or not doc_id.strip():
                what = "no \"id\"" if "id" not in row else f"id {doc_id!r} (a non-empty string is needed)"
                raise BadInput(f"{where}: {what}", param_hint=hint)
            text = row.get("contents")
            if not isinstance(text, str) or not text.strip():
                what = "no \"contents\"" if "contents" not in row else "empty or non-string \"contents\""
                raise BadInput(f"{where}: {what} (id {doc_id!r})", param_hint=hint)
            if doc_id in seen:
                raise BadInput(f"{where}: duplicate id {doc_id!r} (first at line {seen[doc_id]})", param_hint=hint)
            seen[doc_id] = lineno
            ids.append(doc_id)
            contents.append(text)
    if not ids:
        raise BadInput(f"{who}: corpus file {str(path)!r} holds no passages", param_hint=hint)
    return ids, contents, digest.hexdigest()
