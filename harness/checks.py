"""Boundary checks: what a plugin hands back is checked where it comes back, before anything of
it is written. A failure is one line naming the plugin (kind, name, plugin, distribution) and
the item, exit status 1; the run's finished records are kept and a rerun resumes."""

from __future__ import annotations

import json
import math
import numbers

import click

from harness.types import Completion, Item, Thought, Verdict


class PluginReturnError(click.ClickException):
    """A plugin returned something that breaks its kind's contract (harness.protocols)."""

    exit_code = 1


def label(kind: str, name: str) -> str:
    from harness.plugins import registry

    reg = registry(kind)
    return reg.label(name) if name in reg.sources else f"{reg.singular} {name!r}"


def _fail(who: str, what: str):
    raise PluginReturnError(f"{who} {what}")


def is_ids(value) -> bool:
    return isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def thought_problem(t) -> str | None:
    """Why ``t`` is not a valid thought (None when it is)."""
    if not isinstance(t, Thought):
        return f"a {type(t).__name__}, not a harness.types.Thought"
    if not is_ids(t.token_ids):
        return f"token_ids that are not a list of ints ({type(t.token_ids).__name__})"
    if not isinstance(t.text, str):
        return f"text that is not a string ({type(t.text).__name__})"
    if t.text.strip() and not t.token_ids:
        return f"text {t.text[:30]!r} but no token_ids (the model would see a blank thought)"
    if t.closed not in (True, False, None):
        return f"closed={t.closed!r} (True, False or None)"
    if t.source_item is not None and not isinstance(t.source_item, str):
        return f"source_item={t.source_item!r} (an item id or None)"
    info = getattr(t, "info", {})
    if not isinstance(info, dict):
        return f"info that is not a dict ({type(info).__name__})"
    try:
        json.dumps(info, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return f"info that is not JSON-able ({exc})"
    return None


def thought_row_problem(row: dict) -> str | None:
    """Why a stored ``thoughts.jsonl`` row cannot be used (None when it can)."""
    try:
        t = Thought(row["token_ids"], row["text"], row.get("closed"), row.get("source_item"), row.get("info", {}))
    except KeyError as exc:
        return f"no {exc.args[0]!r}"
    return thought_problem(t)


def check_thoughts(name: str, out, items: list[Item], samples: int) -> None:
    """An intervention's ``thoughts()`` return: exactly ``samples`` valid thoughts per item."""
    who = label("interventions", name)
    if not isinstance(out, dict):
        _fail(who, f"returned a {type(out).__name__}, expected a dict item_id -> list of {samples} thoughts")
    for item in items:
        if item.id not in out:
            _fail(who, f"returned no thoughts for item {item.id!r}")
        got = out[item.id]
        if not isinstance(got, (list, tuple)) or len(got) != samples:
            n = len(got) if isinstance(got, (list, tuple)) else type(got).__name__
            _fail(who, f"returned {n} thought(s) for item {item.id!r}, expected {samples}")
        for s, t in enumerate(got):
            problem = thought_problem(t)
            if problem:
                _fail(who, f"returned for item {item.id!r}, sample {s}, {problem}")
    extra = set(out) - {i.id for i in items}
    if extra:
        _fail(who, f"returned thoughts for items it was not asked for: {', '.join(map(repr, sorted(extra)[:3]))}")


def check_verdicts(name: str, verdicts, n: int) -> None:
    """A judge's ``judge()``/``compare()`` return: one verdict per pair, reward in {0, 1, None}."""
    who = label("judges", name)
    if not isinstance(verdicts, (list, tuple)) or len(verdicts) != n:
        got = len(verdicts) if isinstance(verdicts, (list, tuple)) else type(verdicts).__name__
        _fail(who, f"returned {got} verdict(s) for {n} pair(s)")
    for i, v in enumerate(verdicts):
        if not isinstance(v, Verdict):
            _fail(who, f"returned a {type(v).__name__} for pair {i}, not a harness.types.Verdict")
        if v.reward not in (0, 1, None):
            _fail(who, f"returned reward={v.reward!r} for pair {i} (1, 0, or None with invalid=True)")
        if v.reward is None and not v.invalid:
            _fail(who, f"returned reward=None without invalid=True for pair {i}")


def check_items(name: str, items) -> None:
    """A task's ``items()`` return: Items with unique non-empty string ids and non-empty prefixes."""
    who = label("tasks", name.partition(":")[0])
    if not isinstance(items, (list, tuple)):
        _fail(who, f"items() returned a {type(items).__name__}, expected a list of harness.types.Item")
    seen = set()
    for n, item in enumerate(items):
        if not isinstance(item, Item):
            _fail(who, f"items() returned a {type(item).__name__} at position {n}, not a harness.types.Item")
        if not isinstance(item.id, str) or not item.id:
            _fail(who, f"items() returned an item with id {item.id!r} at position {n} (ids are non-empty strings)")
        if item.id in seen:
            _fail(who, f"items() returned the id {item.id!r} twice (ids must be unique)")
        seen.add(item.id)
        if not isinstance(item.prefix, str) or not item.prefix.strip():
            _fail(who, f"items() returned item {item.id!r} with an empty prefix")
        if not isinstance(item.suffix, str):
            _fail(who, f"items() returned item {item.id!r} whose suffix is not a string")


def checked_config(kind: str, name: str, config) -> dict:
    """A task's or judge's ``config()``: a JSON-able dict; the harness sets ``name`` itself."""
    who = label(kind, name.partition(":")[0])
    if not isinstance(config, dict):
        _fail(who, f"config() returned a {type(config).__name__}, expected a dict")
    try:
        json.dumps(config, allow_nan=False)
    except (TypeError, ValueError) as exc:
        _fail(who, f"config() is not JSON-able: {exc}")
    return dict(config, name=name.partition(":")[0])


def check_completions(backend: str, requests, outs) -> None:
    """A backend's ``generate()`` return: per request ``n`` Completions with int ids, and
    ``score_logprobs`` answering ``score_ids``."""
    who = label("backends", backend)
    if not isinstance(outs, (list, tuple)) or len(outs) != len(requests):
        got = len(outs) if isinstance(outs, (list, tuple)) else type(outs).__name__
        _fail(who, f"generate() returned {got} result(s) for {len(requests)} request(s)")
    for i, (r, out) in enumerate(zip(requests, outs)):
        where = f"request {i}" + (f" (item {r.affinity!r})" if r.affinity else "")
        if not isinstance(out, (list, tuple)) or len(out) != r.n:
            got = len(out) if isinstance(out, (list, tuple)) else type(out).__name__
            _fail(who, f"generate() returned {got} completion(s) for {where}, expected n={r.n}")
        for c in out:
            if not isinstance(c, Completion) or not is_ids(c.token_ids) or not isinstance(c.text, str):
                _fail(who, f"generate() returned a malformed completion for {where} (a Completion with "
                           "token_ids as a list of ints and text as a string)")
            if r.score_ids is not None and (c.score_logprobs is None or len(c.score_logprobs) != len(r.score_ids)):
                n = None if c.score_logprobs is None else len(c.score_logprobs)
                _fail(who, f"generate() returned {n} score log-probs for {where}, expected {len(r.score_ids)}")


def checked_docs(name: str, queries, result, topk: int) -> list[list[dict]]:
    """A retriever's ``retrieve(queries, topk)`` return: one list per query, each of at most ``topk``
    docs, each a dict with a non-empty string ``id``, a string ``contents`` and a ``score`` that is a
    finite number or None. Returns new lists of ``{"id", "contents", "score"}`` (score a float or None)."""
    who = label("retrievers", name)
    n = len(queries)
    if not isinstance(result, (list, tuple)) or len(result) != n:
        got = len(result) if isinstance(result, (list, tuple)) else f"a {type(result).__name__}"
        _fail(who, f"retrieve() returned {got} result list(s) for {n} quer{'y' if n == 1 else 'ies'}")
    out = []
    for q, docs in enumerate(result):
        where = f"query {q} ({str(queries[q])[:40]!r})"
        if not isinstance(docs, (list, tuple)):
            _fail(who, f"retrieve() returned a {type(docs).__name__} for {where}, expected a list of docs")
        if len(docs) > topk:
            _fail(who, f"retrieve() returned {len(docs)} docs for {where}, more than topk={topk}")
        rows = []
        for d, doc in enumerate(docs):
            at = f"doc {d} of {where}"
            if not isinstance(doc, dict):
                _fail(who, f"retrieve() returned a {type(doc).__name__} as {at}, expected a dict with id, "
                           "contents and score")
            doc_id, contents, score = doc.get("id"), doc.get("contents"), doc.get("score")
            if not isinstance(doc_id, str) or not doc_id:
                _fail(who, f"retrieve() returned {at} with id {doc_id!r} (a non-empty string)")
            if not isinstance(contents, str):
                _fail(who, f"retrieve() returned {at} (id {doc_id!r}) whose contents is a "
                           f"{type(contents).__name__}, not a string")
            if score is not None and (isinstance(score, bool) or not isinstance(score, numbers.Real)
                                      or not math.isfinite(score)):
                _fail(who, f"retrieve() returned {at} (id {doc_id!r}) with score {score!r} (a finite number or None)")
            rows.append({"id": doc_id, "contents": contents, "score": None if score is None else float(score)})
        out.append(rows)
    return out


def check_comparisons(name: str, verdicts, n: int) -> None:
    """A judge's ``compare()`` return: one Verdict per comparison, each invalid or with ``score``
    1, 0.5 or 0 (the first shown's win share)."""
    who = label("judges", name)
    if not isinstance(verdicts, (list, tuple)) or len(verdicts) != n:
        got = len(verdicts) if isinstance(verdicts, (list, tuple)) else type(verdicts).__name__
        raise PluginReturnError(f"{who} compare() returned {got} verdict(s) for {n} comparison(s)")
    for i, v in enumerate(verdicts):
        if not isinstance(v, Verdict):
            raise PluginReturnError(f"{who} compare() returned a {type(v).__name__} for comparison {i}, "
                                    "not a harness.types.Verdict")
        if not v.invalid and v.score not in (0, 0.5, 1):
            raise PluginReturnError(f"{who} compare() returned score={v.score!r} for comparison {i} (1, 0.5 or 0, "
                                    "or invalid=True)")
