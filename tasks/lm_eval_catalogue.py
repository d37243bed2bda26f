"""Finding one lm-evaluation-harness task by name, without building lm-eval's whole index.

Only the requested task is indexed: with ``include_path`` a TaskManager over that directory
alone (``include_defaults=False``); for lm-eval's own catalogue a text scan of its task YAMLs
finds the file that defines ``task: <name>`` (the first in sorted path order, the same file
lm-eval's index picks), which is loaded by path through a TaskManager with an empty index. Only
when the scan finds nothing (an unknown name, a group or a tag) is lm-eval's full index built
(about 4 s), to say which it is and suggest close names.

lm-eval is imported only inside functions: importing this module stays cheap.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from pathlib import Path

from harness.errors import BadInput

TASK_KINDS = ("TASK", "PY_TASK")
# A top-level ``task: <name>`` line of a task YAML (key and value optionally quoted).
_TASK_LINE = re.compile(r"""^["']?task["']?[ \t]*:[ \t]*["']?([^\s"'#]+)["']?[ \t]*(?:#.*)?$""", re.M)
_IGNORE_DIRS = {"__pycache__", ".ipynb_checkpoints"}  # as lm-eval's index skips them


def builtin_tasks_dir() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).parent / "tasks"


def scan_task_yamls(root: Path, name: str) -> list[Path]:
    """Task YAMLs under ``root`` with a top-level ``task: <name>`` line, in lm-eval's index order
    (sorted POSIX paths; lm-eval keeps the first file that defines a name)."""
    needle = name.encode()
    hits = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _IGNORE_DIRS]
        for filename in filenames:
            if not filename.endswith(".yaml"):
                continue
            path = os.path.join(dirpath, filename)
            with open(path, "rb") as fh:
                data = fh.read()
            if needle in data and any(m.group(1) == name for m in _TASK_LINE.finditer(data.decode("utf-8", "replace"))):
                hits.append(Path(path))
    return sorted(hits, key=lambda p: p.as_posix())


def full_task_manager(include_path: str | None = None):
    """lm-eval's full index (its catalogue plus ``include_path``), built once per process: only
    names the fast paths cannot place (unknown names, groups, tags) need it."""
    return _full_task_manager(include_path or None)


@functools.lru_cache(maxsize=4)
def _full_task_manager(include_path: str | None):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path) if include_path else TaskManager()


def _members(entry) -> list[str]:
    if entry.kind.name == "TAG":
        return sorted(entry.tags)
    listed = (entry.cfg or {}).get("task") or []
    names = []
    for member in listed if isinstance(listed, list) else [listed]:
        if isinstance(member, dict):
            member = member.get("task") or member.get("group")
        if isinstance(member, str):
            names.append(member)
    return names


def _not_a_task(name: str, entry) -> BadInput:
    kind = "group" if entry.kind.name == "GROUP" else "tag"
    members = _members(entry)
    shown = ", ".join(members[:12]) + (f", ... ({len(members)} in all)" if len(members) > 12 else "")
    return BadInput(f"lm-eval {kind} {name!r} holds several tasks; name one task"
                    + (f" ({shown})" if shown else ""), param_hint="--task")


def resolve_task(name: str, include_path: str | None):
    """(TaskManager, spec for ``TaskManager.load``, raw YAML config, where the task was found).

    Raises :class:`BadInput` for an unknown name (with close matches), a group or a tag."""
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml

    if include_path:
        manager = TaskManager(include_path=include_path, include_defaults=False)
        entry = manager.task_index.get(name)
        if entry is not None:
            if entry.kind.name not in TASK_KINDS:
                raise _not_a_task(name, entry)
            return manager, name, dict(entry.cfg or {}), str(entry.yaml_path)
    root = builtin_tasks_dir()
    hits = scan_task_yamls(root, name)
    if hits:
        try:
            cfg = load_yaml(hits[0], resolve_func=False)
        except Exception:  # lm-eval's index skips YAMLs it cannot read: let the full index decide
            cfg = None
        if isinstance(cfg, dict) and cfg.get("task") == name:
            return TaskManager(include_defaults=False), str(hits[0]), cfg, hits[0].relative_to(root).as_posix()
    manager = full_task_manager(include_path)
    entry = manager.task_index.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, manager.all_tasks, n=6, cutoff=0.6)
        raise BadInput(f"unknown lm-eval task {name!r}"
                       + (f"; close matches: {', '.join(close)}" if close else "; see `lm_eval ls tasks`"),
                       param_hint="--task")
    if entry.kind.name not in TASK_KINDS:
        raise _not_a_task(name, entry)
    where = entry.yaml_path
    try:
        where = Path(where).relative_to(root).as_posix()
    except (TypeError, ValueError):
        where = str(where)
    return manager, name, dict(entry.cfg or {}), where
