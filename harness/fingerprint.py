"""Fingerprints of a run's inputs, so a resume under changed inputs is refused, naming what changed.

- Items: a hash of every item's id, prefix, suffix, source and metadata (not just the ids: editing
  a data file's text under the same ids changes it).
- Local models (an HF directory or a ``.gguf`` file): files up to ``FULL_HASH_BYTES`` are hashed
  whole (config, tokenizer, small weights); larger files (big weights) by size and modification
  time. The method is recorded with the fingerprint. Hub ids and ``random:`` presets get none: a
  Hub id names a revision the loader resolves, a preset is code.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

FULL_HASH_BYTES = 64 * 1024 * 1024


def items_sha(items) -> str:
    h = hashlib.sha256()
    for i in items:
        h.update(json.dumps([i.id, i.prefix, i.suffix, i.cluster, i.meta], sort_keys=True, ensure_ascii=False,
                            default=str).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def file_sha256(path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_fingerprint(kind: str, location: str) -> dict | None:
    """``{"sha", "method"}`` for a local model (``kind`` "dir" or "gguf" as
    :func:`harness.modelspec.resolve_path` classifies it); None for other kinds."""
    if kind not in ("dir", "gguf"):
        return None
    root = Path(location)
    if root.is_file():
        files = [root]
    else:
        files = sorted(p for p in root.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(root).parts))
    h = hashlib.sha256()
    hashed = by_stat = 0
    for path in files:
        st = path.stat()
        rel = path.name if path == root else str(path.relative_to(root))
        if st.st_size <= FULL_HASH_BYTES:
            entry, hashed = f"{rel}:{file_sha256(path)}", hashed + 1
        else:
            entry, by_stat = f"{rel}:{st.st_size}:{st.st_mtime_ns}", by_stat + 1
        h.update(entry.encode() + b"\n")
    method = f"sha256 of {hashed} file(s) <= {FULL_HASH_BYTES >> 20} MiB"
    if by_stat:
        method += f"; size + mtime of {by_stat} larger file(s)"
    return {"sha": h.hexdigest()[:16], "method": method, "path": os.path.abspath(location)}
