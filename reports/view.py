"""``harness view``: one self-contained HTML page over the records of one or more runs.

The page (``view_template.html``, package data) needs no server and no network: its script and
style are inline, and the records are embedded once, compactly, as JSON in a
``<script type="application/json">`` block that the page renders on demand, a page of items at a
time. The data is grouped into *views*, one per record type: ``probe`` runs are shown by item (the
prefix once, then each condition's samples side by side), ``reasoning`` runs by problem (the k
samples with their extracted answers and grades), and any other record type as a plain table of
records, so no run breaks the page. Runs of one type share a view; their items are joined by id
(the first run's text of an item is shown).

Embedded data, per view (``payload``): ``items`` and ``records`` are column-oriented: each column
is ``{"t": "s", "v": [...]}`` (indices into the page's one string table ``strings``, ``null`` for
no value) or ``{"t": "j", "v": [...]}`` (the values themselves: numbers, booleans, nested JSON).
Text reaches the page only as JSON with ``<``, ``>``, ``&`` and the line separators escaped, and
the page writes it with ``textContent``, never as markup.

The page's sort by a sensitivity delta is :func:`item_deltas` / :func:`delta_order` (the tests
check the page against them).
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

TEMPLATE = "view_template.html"
DATA_MARK = "__VIEW_DATA__"
TITLE_MARK = "__VIEW_TITLE__"
# Record types with their own layout in the page; every other type gets the table of records.
KINDS = {"probe": "probe", "reasoning": "reasoning"}
# Numeric record fields offered for the delta sort, by view kind (the page adds any other numeric column).
DELTA_METRICS = {"probe": ("suffix_logprob", "judge_score", "reward"), "reasoning": ("correct", "completion_tokens")}
# Run settings shown in the page's header, when a run has them.
SETTINGS = ("samples", "seed", "temperature", "top_p", "thought_max_tokens", "suffix_max_tokens", "max_new_tokens")


@dataclass
class RunRecords:
    """One run as plain data: its name (directory), manifest, items (``items.jsonl`` rows) and records."""

    name: str
    manifest: dict
    records: list[dict]
    items: list[dict] = field(default_factory=list)


class StringTable:
    """Each distinct string once; columns hold indices into it."""

    def __init__(self):
        self.index: dict[str, int] = {}
        self.strings: list[str] = []

    def add(self, s: str) -> int:
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.strings)
            self.strings.append(s)
        return i


def _finite(value):
    """``value`` with non-finite floats as None (the page's JSON must be strict), at any depth."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def columns(rows: list[dict], table: StringTable, order=()) -> dict:
    """Rows as ``{"n": len(rows), "cols": {key: column}}`` (see the module docstring); keys in
    ``order`` first, then the others as they first appear."""
    keys = list(order)
    for row in rows:
        keys += [k for k in row if k not in keys]
    cols = {}
    for key in keys:
        values = [_finite(row.get(key)) for row in rows]
        if all(v is None or isinstance(v, str) for v in values):
            cols[key] = {"t": "s", "v": [None if v is None else table.add(v) for v in values]}
        else:
            cols[key] = {"t": "j", "v": values}
    return {"n": len(rows), "cols": cols}


def _arm_models(manifest: dict) -> dict[str, str]:
    return {a.get("name"): str(a.get("model")) for a in manifest.get("config", {}).get("arms", [])}


def run_summary(run: RunRecords) -> dict:
    """What the page's header says about a run."""
    cfg = run.manifest.get("config", {})
    judge = cfg.get("judge")
    return {"name": run.name, "eval": cfg.get("eval"), "record_type": run.manifest.get("record_type"),
            "arms": _arm_models(run.manifest), "conditions": list(cfg.get("interventions") or []),
            "tasks": [t.get("name") for t in cfg.get("tasks") or [] if isinstance(t, dict)],
            "judge": judge.get("name") if isinstance(judge, dict) else judge,
            "settings": {k: cfg[k] for k in SETTINGS if cfg.get(k) is not None},
            "n_records": len(run.records), "n_items": len(run.items), "created": run.manifest.get("created")}


def _condition_order(runs: list[RunRecords], records: list[dict]) -> list[str]:
    order = []
    for run in runs:
        order += [c for c in run.manifest.get("config", {}).get("interventions") or [] if c not in order]
    order += [r.get("condition") for r in records if r.get("condition") not in order]
    return [str(c) for c in dict.fromkeys(order) if c is not None]


def views(runs: list[RunRecords]) -> list[tuple[str, list[int]]]:
    """``(record type, indices of its runs)`` in the order the types first appear."""
    out: dict[str, list[int]] = {}
    for i, run in enumerate(runs):
        out.setdefault(str(run.manifest.get("record_type") or "unknown"), []).append(i)
    return list(out.items())


def payload(runs: list[RunRecords], title: str) -> dict:
    """Everything the page shows, as one JSON-able object (see the module docstring)."""
    table = StringTable()
    out_views = []
    for record_type, idx in views(runs):
        kind = KINDS.get(record_type, "table")
        records, items, seen = [], [], set()
        for i in idx:
            records += [dict(r, run=i) for r in runs[i].records]
            for item in runs[i].items:
                if item.get("id") not in seen:
                    seen.add(item.get("id"))
                    meta = item.get("meta")
                    items.append({"id": item.get("id"), "prefix": item.get("prefix"), "suffix": item.get("suffix"),
                                  "cluster": item.get("cluster"),
                                  "meta": json.dumps(meta, ensure_ascii=False, default=str) if meta else None})
        order = ("run", "arm", "condition", "item_id", "sample")
        out_views.append({"record_type": record_type, "kind": kind, "runs": idx,
                          "conditions": _condition_order([runs[i] for i in idx], records),
                          "arms": list(dict.fromkeys(str(r.get("arm")) for r in records if r.get("arm") is not None)),
                          "metrics": list(DELTA_METRICS.get(kind, ())),
                          "items": columns(items, table, ("id", "prefix", "suffix", "cluster", "meta")),
                          "records": columns(records, table, order)})
    summaries = [run_summary(r) for r in runs]
    short = [Path(r.name).name or r.name for r in runs]
    for summary, label in zip(summaries, short):  # how the page names a run where space is short
        summary["label"] = label if short.count(label) == 1 else summary["name"]
    return {"title": title, "runs": summaries, "views": out_views, "strings": table.strings}


_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def embed_json(obj) -> str:
    """``obj`` as JSON that is safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` (so no
    ``</script>`` or ``<!--``), line separators and lone surrogates escaped, strict (no NaN)."""
    text = json.dumps(_finite(obj), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    text = re.sub("[<>&\u2028\u2029]", lambda m: _UNSAFE[m.group()], text)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def build_page(runs: list[RunRecords], title: str | None = None) -> str:
    """The page's HTML: the template with the runs' data embedded."""
    if not runs:
        raise ValueError("no runs to view")
    title = title or "harness view: " + ", ".join(r.name for r in runs)
    template = resources.files("reports").joinpath(TEMPLATE).read_text(encoding="utf-8")
    head, rest = template.split(TITLE_MARK, 1)
    middle, tail = rest.split(DATA_MARK, 1)
    return head + html.escape(title) + middle + embed_json(payload(runs, title)) + tail


def _number(value) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def item_deltas(records: list[dict], metric: str, a: str, b: str, by: str = "condition",
                where: dict | None = None) -> dict[str, float | None]:
    """Per item: the mean of ``metric`` over its records whose ``by`` field is ``a``, minus the
    mean over those whose ``by`` is ``b`` (None when either side has no value), over the records
    that match every ``where`` field. The page's delta sort computes the same, with ``where`` the
    run, arm (``by="condition"``) or condition (``by="arm"``) filter chosen in the page."""
    sums: dict[str, dict[str, list[float]]] = {}
    for r in records:
        if any(r.get(k) != v for k, v in (where or {}).items()):
            continue
        side = r.get(by)
        value = _number(r.get(metric))
        item = r.get("item_id")
        cell = sums.setdefault(item, {"a": [0.0, 0], "b": [0.0, 0]})
        if value is None or side not in (a, b) or a == b:
            continue
        acc = cell["a" if side == a else "b"]
        acc[0] += value
        acc[1] += 1
    return {item: (c["a"][0] / c["a"][1] - c["b"][0] / c["b"][1]) if c["a"][1] and c["b"][1] else None
            for item, c in sums.items()}


def delta_order(deltas: dict[str, float | None], item_order: list[str], direction: str = "desc") -> list[str]:
    """Items sorted as the page sorts them by delta: ``desc`` (largest first), ``asc`` or ``abs``
    (largest magnitude first); ties keep ``item_order``; items without a delta come last."""
    position = {item: i for i, item in enumerate(item_order)}
    have = [i for i in item_order if deltas.get(i) is not None]
    missing = [i for i in item_order if deltas.get(i) is None]
    sign = {"desc": lambda d: -d, "asc": lambda d: d, "abs": lambda d: -abs(d)}[direction]
    return sorted(have, key=lambda i: (sign(deltas[i]), position[i])) + missing
