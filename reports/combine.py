"""The pairing rules for one report over several runs, on plain data (``harness.runs`` reads it).

Runs pair only when they hold the same items (same ids with the same prefix and suffix) and were
judged by the same judge: arms run at different times can then be compared item by item. Anything
else is refused with a message that names the runs and what differs. Sampling settings that differ
are allowed but listed, so the report can say so.

Runs judged by different judges pair only when they differ in nothing else (a run and its
``harness rejudge``, or two runs of one config with two judges): the same generations, judged
twice. Each run's arms are then labelled with its judge, ``arm [judge]`` (with the judge options
that tell two configs of one judge apart: ``arm [lexical threshold=0.3]``), so a judge comparison is
an arm comparison, paired over items like any other: ``A [lexical] - A [embedding]``.
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


def check_pairable(first: RunData, run: RunData, across_judges: bool = False) -> None:
    """Raise :class:`CombineError` unless ``run`` pairs with ``first``: same record type, same
    items (ids and fingerprints), same judge (``across_judges``: :func:`judge_labels` allowed
    different ones)."""
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
    if manifest["config"].get("judge") != base["config"].get("judge") and not across_judges:
        raise CombineError(f"cannot pair {first.name} and {run.name}: judged differently "
                           f"({base['config'].get('judge')} vs {manifest['config'].get('judge')})")


def _without_judge(config: dict) -> dict:
    """A run config less what a rejudge changes: the judge, its plugin, ``rejudged_from``."""
    out = {k: v for k, v in config.items() if k not in ("judge", "rejudged_from")}
    if isinstance(out.get("plugins"), dict):
        out["plugins"] = {k: v for k, v in out["plugins"].items() if k != "judge"}
    return out


def _judge_label(judge: dict | None, judges: list) -> str:
    """The judge's name, with the options where another judge of that name differs."""
    judge = judge or {}
    name = judge.get("name", "no judge")
    twins = [j for j in judges if (j or {}).get("name") == name and j != judge]
    keys = sorted({k for j in twins for k in set(j) | set(judge) if k != "name" and j.get(k) != judge.get(k)})
    return " ".join([name] + [f"{k}={judge.get(k)}" for k in keys])


def judge_labels(runs: list[RunData]) -> dict[str, str] | None:
    """Run name -> its judge's label when the runs were judged differently (None when one judge
    judged them all). Runs with different judges must differ in nothing else (:func:`_without_judge`)."""
    judges = [run.manifest["config"].get("judge") for run in runs]
    if all(j == judges[0] for j in judges):
        return None
    first, base = runs[0], _without_judge(runs[0].manifest["config"])
    for run in runs[1:]:
        other = _without_judge(run.manifest["config"])
        if other != base:
            keys = sorted(k for k in set(base) | set(other) if base.get(k) != other.get(k))
            raise CombineError(f"cannot pair {first.name} and {run.name}: judged differently "
                               f"({judges[0]} vs {run.manifest['config'].get('judge')}) and they differ in "
                               f"{', '.join(keys)} too; runs with different judges pair only when nothing else "
                               "differs (the same generations, e.g. a run and its harness rejudge)")
    return {run.name: _judge_label(j, judges) for run, j in zip(runs, judges)}


def _relabel(records: list[dict], arms: set, label: str) -> list[dict]:
    """Records with each of the run's arm names (``arm``, and a pair record's ``arm_a``, ``arm_b``
    and its ``condition`` when that is ``arm_b``) written ``arm [label]``."""
    out = []
    for r in records:
        r = dict(r)
        named_b = "arm_b" in r and r.get("condition") == r["arm_b"]
        for key in ("arm", "arm_a", "arm_b"):
            if r.get(key) in arms:
                r[key] = f"{r[key]} [{label}]"
        if named_b:
            r["condition"] = r["arm_b"]
        out.append(r)
    return out


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
    (:func:`soft_differences`). One run comes back as it is, with those two keys added. Runs
    judged differently (:func:`judge_labels`) have their arms labelled ``arm [judge]``; the
    manifest then adds ``judges`` (run -> judge config) and ``notes`` (how to read the labels)."""
    first = runs[0]
    labels = judge_labels(runs)
    seen: dict[tuple, str] = {}
    records = []
    for run in runs:
        check_pairable(first, run, across_judges=labels is not None)
        own = run.records
        if labels is not None:
            own = _relabel(own, {a["name"] for a in run.manifest["config"]["arms"]}, labels[run.name])
        for r in own:
            key = (r["arm"], r["condition"])
            if seen.setdefault(key, run.name) != run.name:
                raise CombineError(f"arm {r['arm']!r}, condition {r['condition']!r} appears in both "
                                   f"{seen[key]} and {run.name}; give each arm's run once")
            records.append(r)
    arms = []
    for run in runs:
        own = run.manifest["config"]["arms"]
        if labels is not None:
            own = [dict(a, name=f"{a['name']} [{labels[run.name]}]", judge=labels[run.name]) for a in own]
        arms += [a for a in own if a["name"] not in {x["name"] for x in arms}]
    base = first.manifest
    combined = dict(base, config=dict(base["config"], arms=arms), runs=[run.name for run in runs],
                    differences=soft_differences(runs))
    if labels is not None:
        combined["judges"] = {run.name: run.manifest["config"].get("judge") for run in runs}
        combined["differences"]["judge"] = combined["judges"]
        combined["notes"] = list(base.get("notes") or []) + [
            "Judges compared: these runs hold the same generations judged by different judges, so each arm is "
            "shown once per judge as `arm [judge]` ("
            + "; ".join(f"{labels[run.name]}: {run.name}" for run in runs)
            + "). An arm comparison between two labels of one arm is a judge difference, paired over items "
            "(each item's samples averaged first; later label minus earlier, or minus --baseline); judge-free "
            "columns (a probe's true-suffix log-likelihood, token counts) are equal by construction."]
    return records, combined
