"""Reading run directories for a report: records, manifests and item fingerprints come from the
run store here; whether several runs pair, and how, is decided by :mod:`reports.combine` on that
plain data."""

from __future__ import annotations

import hashlib
import json

from harness.store import ITEMS, RunStore
from reports.combine import RunData, combine


def item_fingerprints(store: RunStore) -> dict[str, str]:
    """item id -> short hash of its prefix and suffix, from the run's items.jsonl."""
    out = {}
    for row in store.read(ITEMS):
        text = json.dumps([row.get("prefix"), row.get("suffix")], ensure_ascii=False)
        out[row["id"]] = hashlib.sha256(text.encode()).hexdigest()[:12]
    return out


def load_run(store: RunStore) -> tuple[list[dict], dict]:
    """A run's records and its manifest, as a report reads them."""
    return store.read(), dict(store.manifest(), runs=[str(store.root)])


def load_runs(run_dirs) -> tuple[list[dict], dict]:
    """Records of all runs and a combined manifest (:func:`reports.combine.combine`): the first
    run's, with every run's arms, ``runs`` (the directories) and ``differences`` (soft config keys
    whose values differ between runs). A single run's items.jsonl is not read."""
    stores = [RunStore(d) for d in run_dirs]
    manifests = [s.manifest() for s in stores]
    several = len(stores) > 1
    return combine([RunData(str(s.root), m, s.read(), item_fingerprints(s) if several else {})
                    for s, m in zip(stores, manifests)])
