"""Run store: ``RUN_DIR/manifest.json``, append-only JSONL record files, resume.

- A run directory is created by the run or given empty; a directory that holds anything else is
  refused, and a failed new run removes only what it wrote (the directory too if it made it).
- One process at a time: ``RUN_DIR/.lock`` holds an exclusive ``flock`` (released by the kernel
  when the process dies, so a killed run's lock is simply taken over).
- ``items.jsonl`` then ``manifest.json`` are written atomically (temporary file + rename) before
  any work; a resume rewrites a missing or damaged ``items.jsonl``.
- Records are appended one line each and flushed per batch, so a killed run loses at most the
  records in flight; a torn last line is cut off on resume.
- Reading checks each record against the manifest: its key (arm, condition, item, sample) is
  unique and known to the run. An exact repeat is dropped with a warning; a conflicting or foreign
  record is an error naming file:line.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path

import click

from harness.checks import thought_row_problem
from harness.jsonl import jsonl_rows

SAMPLES = "samples.jsonl"
THOUGHTS = "thoughts.jsonl"
ITEMS = "items.jsonl"
MANIFEST = "manifest.json"
LOCK = ".lock"
RECORD_FILES = (SAMPLES, THOUGHTS)


class StoreError(click.ClickException):
    """A run directory that cannot be used as it is: one line, exit 2, nothing changed."""

    exit_code = 2


def config_hash(config: dict) -> str:
    """A short hash of a JSON-like config (keys sorted): run directories and training outputs."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a temporary file beside it (``.NAME.tmp<pid>``),
    flushed to disk, then renamed over ``path``; a reader sees the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    _fsync_write(tmp, text)
    os.replace(tmp, path)


def finite_json(obj):
    """``obj`` with non-finite floats (NaN, inf: undefined statistics) as None, so files are strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def read_jsonl(path: Path, with_lines: bool = False) -> list:
    """Rows of a JSONL file (``(line, row)`` pairs with ``with_lines``). A malformed line, bytes that
    are not UTF-8, or a line that is not a JSON object is an error naming file:line. A torn final
    line without a newline (left by a killed writer) is ignored."""
    if not path.exists():
        return []
    rows = jsonl_rows(path, StoreError, skip_torn_tail=True)
    return rows if with_lines else [row for _, row in rows]


def _drop_torn_tail(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as fh:
        data = fh.read()
        if data.endswith(b"\n"):
            return
        fh.truncate(data.rfind(b"\n") + 1)


def _fsync_write(path: Path, data: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _ours(name: str) -> bool:
    """Files a run may leave in a directory before its manifest exists (a run killed in its first
    moment): the lock, temporary files and ``items.jsonl``. Such a directory counts as empty."""
    return name in (LOCK, ITEMS) or (name.startswith(".") and ".tmp" in name)


def record_key(row: dict) -> tuple:
    return row.get("arm"), row.get("condition"), row.get("item_id"), row.get("sample")


class RunStore:
    """One run directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.created = False  # this invocation made the directory
        self._written: set[str] = set()  # files this invocation created in a directory it did not make
        self._lock_fh = None
        self._warned: set[str] = set()
        self._manifest_cache = None

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def manifest(self) -> dict:
        if not self.manifest_path.exists():
            raise StoreError(f"{self.root} is not a run directory (no {MANIFEST})")
        try:
            text = self.manifest_path.read_text(encoding="utf-8")
            m = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            what = "empty" if not self.manifest_path.stat().st_size else f"not valid JSON ({exc})"
            raise StoreError(f"{self.manifest_path} is {what}; the run's records are kept, but without a "
                             "readable manifest they cannot be resumed or reported") from exc
        if not isinstance(m, dict) or not isinstance(m.get("config"), dict):
            raise StoreError(f"{self.manifest_path} is not a run manifest (no config)")
        return m

    # -- opening ------------------------------------------------------------------------------

    def check_target(self) -> None:
        """Refuse, before any work, an ``--out`` that is a file, or a directory that is neither
        empty nor a run directory (records without a manifest are never adopted)."""
        root = self.root
        if root.exists() and not root.is_dir():
            raise StoreError(f"--out: {root} is a file, not a run directory")
        if not root.is_dir() or self.manifest_path.exists():
            return
        names = sorted(p.name for p in root.iterdir() if not _ours(p.name))
        records = [n for n in names if n in RECORD_FILES or n.startswith(SAMPLES)]
        if records:
            raise StoreError(f"--out: {root} holds {', '.join(records)} but no {MANIFEST}: records without their "
                             "manifest cannot be resumed (their config is unknown); restore the manifest or use "
                             "another --out")
        if names:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            raise StoreError(f"--out: {root} exists and is not a run directory (it holds {shown}); "
                             "give a new or empty directory")

    def lock(self) -> None:
        """Take the run directory's exclusive lock, or stop naming the process that holds it."""
        fh = open(self.root / LOCK, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise StoreError(f"{self.root} is in use by {holder}; wait for it to finish or use another --out")
        fh.seek(0)
        fh.truncate()
        fh.write(f"harness process {os.getpid()} (since {time.strftime('%Y-%m-%dT%H:%M:%S%z')})\n")
        fh.flush()
        self._lock_fh = fh

    def unlock(self) -> None:
        if self._lock_fh is not None:
            self._lock_fh.seek(0)
            self._lock_fh.truncate()  # an empty lock file: nobody holds it
            self._lock_fh.close()
            self._lock_fh = None

    def open(self, manifest: dict, items: list[dict]) -> bool:
        """Create the run (``items`` then the manifest) or check that it resumes the same config;
        True when resuming. Takes the lock (see :meth:`unlock`, :meth:`discard`)."""
        self.check_target()
        self.created = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.created and not (self.root / LOCK).exists():
            self._written.add(LOCK)
        self.lock()
        self.check_target()  # again, under the lock
        for stale in self.root.glob(".*.tmp*"):  # half-written by a killed run
            stale.unlink(missing_ok=True)
        manifest = dict(manifest, config_hash=config_hash(manifest["config"]))
        items_text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in items)
        if self.manifest_path.exists():
            old = self.manifest()
            if old.get("config_hash") != manifest["config_hash"]:
                raise StoreError(f"{self.root} holds a run with a different config ("
                                 f"{describe_difference(old['config'], manifest['config'])}); "
                                 "use another --out to start a new run")
            for name in RECORD_FILES:
                _drop_torn_tail(self.root / name)
            path = self.root / ITEMS
            if not path.exists() or path.read_text(encoding="utf-8", errors="replace") != items_text:
                self.write_text(ITEMS, items_text)  # missing, torn or damaged: the config proves the items
            self._manifest_cache = old
            return True
        if not self.manifest_path.exists() and not (self.root / ITEMS).exists():
            self._written.add(ITEMS)
        self.write_text(ITEMS, items_text)
        self._written.add(MANIFEST)
        self.write_json(MANIFEST, manifest)
        return False

    def discard(self) -> None:
        """Undo a new run that did no work: remove the directory if this invocation made it, else
        only the files it wrote there."""
        self.unlock()
        if self.created:
            shutil.rmtree(self.root, ignore_errors=True)
            return
        for name in self._written:
            (self.root / name).unlink(missing_ok=True)
            for tmp in self.root.glob(f".{name}.tmp*"):
                tmp.unlink(missing_ok=True)

    # -- writing ------------------------------------------------------------------------------

    def update_manifest(self, **fields) -> None:
        self.write_json(MANIFEST, dict(self.manifest(), **fields))

    def write_json(self, name: str, obj) -> None:
        """Strict JSON (a NaN in a manifest is a bug upstream and raises); atomic."""
        self.write_text(name, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")
        if name == MANIFEST:
            self._manifest_cache = obj

    def write_text(self, name: str, text: str) -> None:
        atomic_write(self.root / name, text)

    def append(self, rows: list[dict], name: str = SAMPLES) -> None:
        if not rows:
            return
        data = "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in finite_json(rows))
        with open(self.root / name, "a", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    def rewrite(self, rows: list[dict], name: str = SAMPLES) -> str:
        """Replace a record file with ``rows`` atomically; the old file is kept beside it as
        ``NAME.bak-<time>``, whose file name is returned."""
        backup = f"{name}.bak-{time.strftime('%Y%m%d-%H%M%S')}"
        shutil.copy2(self.root / name, self.root / backup)
        self.write_text(name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in finite_json(rows)))
        return backup

    # -- reading ------------------------------------------------------------------------------

    def read(self, name: str = SAMPLES) -> list[dict]:
        """Rows of a file of the run; record files are checked against the manifest."""
        path = self.root / name
        if name not in RECORD_FILES:
            return read_jsonl(path)
        if self._manifest_cache is None:
            self._manifest_cache = self.manifest()
        return self._checked(path, read_jsonl(path, with_lines=True), self._manifest_cache)

    def _checked(self, path: Path, rows: list[tuple[int, dict]], manifest: dict) -> list[dict]:
        cfg = manifest["config"]
        arms = [a["name"] for a in cfg.get("arms", [])]
        items = set(manifest.get("item_ids") or [])
        conditions = set(cfg.get("interventions") or [])
        samples = cfg.get("samples")
        seen: dict[tuple, tuple[int, dict]] = {}
        out, repeats, unusable = [], [], []
        for n, row in rows:
            problem = thought_row_problem(row) if path.name == THOUGHTS else None
            if problem:
                unusable.append((n, problem))  # dropped: that thought is made again
                continue
            arm, cond, item, s = record_key(row)
            problem = None
            if arm not in arms:
                problem = f"arm {arm!r} is not one of the run's arms ({', '.join(arms)})"
            elif items and item not in items:
                problem = f"item {item!r} is not one of the run's items"
            elif not isinstance(s, int) or isinstance(s, bool) or not 0 <= s < (samples or s + 1):
                problem = f"sample {s!r} is outside the run's {samples} samples per item"
            elif conditions and path.name == SAMPLES and cond not in conditions:
                problem = f"condition {cond!r} is not one of the run's ({', '.join(sorted(conditions))})"
            if problem:
                raise StoreError(f"{path}:{n}: a record that does not belong to this run: {problem}")
            key = (arm, cond, item, s)
            if key in seen:
                if seen[key][1] != row:
                    raise StoreError(f"{path}:{n}: conflicts with line {seen[key][0]} (same arm, condition, item "
                                     f"and sample {key}, different values); remove one of them")
                repeats.append(n)
                continue
            seen[key] = (n, row)
            out.append(row)
        if (repeats or unusable) and str(path) not in self._warned:
            self._warned.add(str(path))
            if repeats:
                click.echo(f"warning: {path}: {len(repeats)} exact repeat(s) of earlier records (first at line "
                           f"{repeats[0]}) counted once", err=True)
            if unusable:
                click.echo(f"warning: {path}: {len(unusable)} unusable thought row(s) dropped and made again "
                           f"(line {unusable[0][0]}: {unusable[0][1]})", err=True)
        return out


def describe_difference(old: dict, new: dict) -> str:
    """What differs between two run configs, in words a user can act on."""
    parts = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if key == "plugins" and isinstance(a, dict) and isinstance(b, dict):
            parts += _plugin_changes(a, b)
        elif key == "items_sha":
            parts.append("the items' content changed (the task data was edited or is another version)")
        elif key == "arms" and isinstance(a, list) and isinstance(b, list):
            olds = {x.get("name"): x for x in a}
            for arm in b:
                before = olds.get(arm.get("name"))
                if before is None:
                    parts.append(f"arm {arm.get('name')!r} is new")
                    continue
                for field in sorted(set(before) | set(arm)):
                    if before.get(field) != arm.get(field):
                        parts.append(f"arm {arm['name']!r}: model files changed since the run started "
                                     f"({before.get(field)} -> {arm.get(field)})" if field == "fingerprint"
                                     else f"arm {arm['name']!r}: {field}")
            parts += [f"arm {name!r} is gone" for name in olds if name not in {x.get("name") for x in b}]
        else:
            parts.append(f"{key}: {json.dumps(a, default=str)[:60]} -> {json.dumps(b, default=str)[:60]}")
    return "differs in: " + "; ".join(parts)


def _plugin_changes(old: dict, new: dict) -> list[str]:
    """Which plugins' distribution, version or code differ between two configs' ``plugins``."""
    def flat(d):
        out = {}
        for role, entry in d.items():
            entries = {role: entry} if "dist" in entry else {f"{role[:-1] if role.endswith('s') else role} "
                                                              f"{name!r}": e for name, e in entry.items()}
            out.update(entries)
        return out

    a, b = flat(old), flat(new)
    parts = []
    for who in sorted(set(a) | set(b)):
        x, y = a.get(who) or {}, b.get(who) or {}
        if x == y:
            continue
        if x.get("source_sha") != y.get("source_sha") and x.get("dist") == y.get("dist"):
            parts.append(f"{who} (dist {y.get('dist')}): its code changed since this run started (source_sha "
                         f"{x.get('source_sha')} -> {y.get('source_sha')}), so new records would mix with the old "
                         "code's; restore that code to resume")
        else:
            parts.append(f"{who}: {x.get('dist')} {x.get('version')} -> {y.get('dist')} {y.get('version')}")
    return parts
