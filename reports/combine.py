"""The pairing rules for one report over several runs, on plain data (``harness.runs`` reads it).

Runs pair only when they hold the same items (same ids with the same prefix and suffix) and were
judged by the same judge: arms run at different times can then be compared item by item. Anything
else is refused with a message that names the runs and what differs. Sampling settings that differ
are allowed but listed, so the report can say so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import click

# Config keys that may differ between combined runs without breaking the pairing; shown in the report.
SOFT_KEYS = ("samples", "temperature", "top_p", "thought_max_tokens", "suffix_max_tokens", "max_new_tokens", "seed",
             "options", "interventions")


class CombineError(click.ClickException):
    """The runs cannot be reported together."""

    exit_code = 2


@dataclass
class RunData:
    """One run as the pairing rules see it."""

    name: str  # how messages and the report name the run (its directory)
    manifest: dict
    records: list[dict]
    item_fingerprints: dict[str, str] = field(default_factory=dict)  # item id -> hash of its prefix and suffix


def _describe(ids, limit=5) -> str:
    ids = sorted(ids)
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def check_pairable(first: RunData, run: RunData) -> None:
    """Raise :class:`CombineError` unless ``run`` pairs with ``first``: same record type, same
    items (ids and fingerprints), same judge."""
    base, manifest = first.manifest, run.manifest
    if manifest.get("record_type") != base.get("record_type"):
        raise CombineError(f"{run.name} holds {manifest.get('record_type')} records but {first.name} holds "
                           f"{base.get('record_type')} records; report them separately")
    items, base_items = run.item_fingerprints, first.item_fingerprints
    if items != base_items:
        only_a, only_b = set(base_items) - set(items), set(items) - set(base_items)
        changed = {i for i in set(items) & set(base_items) if items[i] != base_items[i]}
        parts = [f"only in {first.name}: {_describe(only_a)}" if only_a else "",
                 f"only in {run.name}: {_describe(only_b)}" if only_b else "",
                 f"different text: {_describe(changed)}" if changed else ""]
        raise CombineError(f"cannot pair {first.name} and {run.name}: their items differ ("
                           + "; ".join(p for p in parts if p) + ")")
    if manifest["config"].get("judge") != base["config"].get("judge"):
        raise CombineError(f"cannot pair {first.name} and {run.name}: judged differently "
                           f"({base['config'].get('judge')} vs {manifest['config'].get('judge')})")


def soft_differences(runs: list[RunData]) -> dict[str, dict]:
    """Each :data:`SOFT_KEYS` config key whose value differs between runs: key -> run -> value."""
    differences = {}
    for key in SOFT_KEYS:
        values = {run.name: run.manifest["config"].get(key) for run in runs}
        if len({json.dumps(v, sort_keys=True) for v in values.values()}) > 1:
            differences[key] = values
    return differences


def combine(runs: list[RunData]) -> tuple[list[dict], dict]:
    """Records of all runs and a combined manifest (the first run's, with every run's arms), or
    :class:`CombineError` when they do not pair (:func:`check_pairable`) or an (arm, condition)
    appears in two runs.

    The combined manifest adds ``runs`` (the runs' names) and ``differences``
    (:func:`soft_differences`). One run comes back as it is, with those two keys added."""
    first = runs[0]
    seen: dict[tuple, str] = {}
    records = []
    for run in runs:
        check_pairable(first, run)
        for r in run.records:
            key = (r["arm"], r["condition"])
            if seen.setdefault(key, run.name) != run.name:
                raise CombineError(f"arm {r['arm']!r}, condition {r['condition']!r} appears in both "
                                   f"{seen[key]} and {run.name}; give each arm's run once")
            records.append(r)
    arms = []
    for run in runs:
        arms += [a for a in run.manifest["config"]["arms"] if a["name"] not in {x["name"] for x in arms}]
    base = first.manifest
    combined = dict(base, config=dict(base["config"], arms=arms), runs=[run.name for run in runs],
                    differences=soft_differences(runs))
    return records, combined
