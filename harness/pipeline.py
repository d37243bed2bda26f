"""The probe pipeline every thought eval takes (reward gate, thought-use probe, plugins' evals).

item -> prompt ids = tok(prefix) + tok(open tag) -> thought ids (intervention) -> + close-tag ids
-> suffix ids sampled by the arm -> judge(predicted, true suffix) -> one record per sample.

Everything is token ids: stage 2 is ``prompt_ids + thought_ids + close_ids``, concatenated, never
decoded and re-encoded. Thoughts and records are appended to the run store as they finish, so a
rerun skips finished work and a killed run resumes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from tqdm.auto import tqdm

from harness.checks import check_completions, check_thoughts, check_verdicts
from harness.conditions import create, plugin_name
from harness.protocols import member
from harness.seeding import derive_seed
from harness.store import SAMPLES, THOUGHTS, RunStore
from harness.types import Arm, GenRequest, Item, JudgePair, Thought


@dataclass
class RunContext:
    """What an eval's ``run(ctx)`` gets: resolved config, arms, items, judge, store, plugins."""

    eval_name: str
    config: dict
    arms: list[Arm]
    items: list[Item]
    judge: Any
    store: RunStore
    interventions: dict[str, type]
    make_backend: Callable[[Arm], Any]
    stats: dict = field(default_factory=lambda: {"generated_tokens": 0, "generation_s": 0.0, "new_records": 0})
    quiet: bool = False
    retriever: Any = None  # evals with ``uses_retriever``: the ``--retriever`` plugin instance
    arms_table: dict = field(default_factory=dict)  # every arm name the run knows -> Arm (a teacher arm)


@dataclass
class ArmContext:
    """What an intervention's ``thoughts()`` gets for one arm."""

    arm: Arm
    backend: Any
    config: dict
    all_items: list[Item]
    run: RunContext
    bars: dict = field(default_factory=dict)

    def seed(self, *parts) -> int:
        return derive_seed(self.config["seed"], self.arm.name, *parts)

    def prompt_ids(self, item: Item, between: str = "") -> list[int]:
        """Token ids of the arm's prompt prefix + item prefix, then ``between`` (e.g. an instruction),
        then the open tag; each piece encoded on its own and concatenated."""
        b = self.backend
        extra = b.encode(between) if between else []
        return b.encode(self.arm.prompt_prefix + item.prefix) + extra + b.encode(self.arm.think_open)

    def sample_thoughts(self, items: list[Item], samples: int, condition: str, between: str = "") -> dict:
        """The arm's own thoughts: ``samples`` per item, sampled after :meth:`prompt_ids` (with
        ``between``) at the run's temperature and top_p, each with the seed (item, ``condition``,
        sample), stopping at the close tag (``closed=True``) or ``thought_max_tokens``. The thought
        then goes into the standard stage-2 prompt (prefix, open tag, thought, close tag)."""
        cfg = self.config
        stop = self.arm.think_close.strip()
        requests = [GenRequest(prompt := self.prompt_ids(item, between), n=samples,
                               seeds=[self.seed(item.id, condition, s, "thought") for s in range(samples)],
                               max_new_tokens=cfg["thought_max_tokens"], temperature=cfg["temperature"],
                               top_p=cfg["top_p"], stop_strings=(stop,) if stop else (), affinity=item.id,
                               prefix_len=0 if between else len(prompt))  # the suffix prompts start with it
                    for item in items]
        outs = self.generate(requests, desc=f"{self.arm.name} {condition}: thoughts")
        return {item.id: [Thought(c.token_ids, c.text, closed=c.finish_reason == "stop") for c in out]
                for item, out in zip(items, outs)}

    def arm_thoughts(self, arm_name: str, condition: str) -> dict[str, list[Thought]]:
        """Another arm's stored thoughts of ``condition``, ``{item_id: [Thought] * samples}`` for the
        items that have all their samples. For an intervention with ``requires_arms``, the pipeline
        has made its ``requires`` for every arm before this is called."""
        samples = self.config["samples"]
        stored = _load_thoughts(self.run.store, arm_name, condition)
        return {k: [v[s] for s in range(samples)] for k, v in stored.items() if len(v) == samples}

    def bar(self, desc: str, add: int):
        """The progress bar called ``desc`` (one per stage and condition), its total grown by ``add``."""
        if desc not in self.bars:
            self.bars[desc] = tqdm(total=0, desc=desc, unit="sample", leave=False, disable=self.run.quiet)
        self.bars[desc].total += add
        self.bars[desc].refresh()
        return self.bars[desc]

    def close_bars(self) -> None:
        for b in self.bars.values():
            b.close()
        self.bars.clear()

    def generate(self, requests, desc: str):
        """Generate through the arm's backend with a progress bar, counting generated tokens."""
        bar = self.bar(desc, sum(r.n for r in requests))
        start = time.perf_counter()
        outs = self.backend.generate(requests, progress=bar.update)
        check_completions(self.arm.backend, requests, outs)
        self.run.stats["generation_s"] += time.perf_counter() - start
        self.run.stats["generated_tokens"] += sum(len(c.token_ids) for o in outs for c in o)
        return outs


def condition_order(requested: list[str], interventions: dict[str, type]) -> list[str]:
    """Requested conditions plus what they require, requirements first (stable order)."""
    order: list[str] = []

    def visit(name, chain=()):
        if name in order:
            return
        if name in chain:
            raise ValueError(f"intervention requirement cycle: {' -> '.join(chain + (name,))}")
        for req in member(interventions[plugin_name(name)], "interventions", "requires"):
            if req not in interventions:
                raise ValueError(f"intervention {name!r} requires unknown intervention {req!r}")
            visit(req, chain + (name,))
        order.append(name)

    for name in requested:
        visit(name)
    return order


def _thought_row(arm, cond, item_id, s, t: Thought) -> dict:
    return {"arm": arm, "condition": cond, "item_id": item_id, "sample": s, "token_ids": t.token_ids,
            "text": t.text, "closed": t.closed, "source_item": t.source_item, **({"info": t.info} if t.info else {})}


def _load_thoughts(store: RunStore, arm: str, cond: str) -> dict[str, dict[int, Thought]]:
    """Stored thoughts: item id -> sample -> thought (an item cut by a kill has only some samples)."""
    by_item: dict[str, dict[int, Thought]] = {}
    for r in store.read(THOUGHTS):
        if r["arm"] == arm and r["condition"] == cond:
            by_item.setdefault(r["item_id"], {})[r["sample"]] = Thought(
                r["token_ids"], r["text"], r["closed"], r.get("source_item"), r.get("info") or {})
    return by_item


def make_intervention(ctx: RunContext, condition: str):
    """The intervention instance for a recorded condition name (its options parsed from the name)."""
    return create(ctx.interventions[plugin_name(condition)], condition)


def applicable(plugin, items: list[Item]) -> list[Item]:
    """``items`` the intervention applies to (all of them unless it has ``applies``)."""
    applies = member(plugin, "interventions", "applies")
    return [i for i in items if applies(i)] if applies is not None else list(items)


def _make_thoughts(ctx: RunContext, actx: ArmContext, cond: str, thoughts: dict, chunk_items: int) -> dict:
    """The arm's thoughts of ``cond`` for every item it applies to: stored ones, and the missing
    ones made by its intervention and appended to thoughts.jsonl chunk by chunk."""
    samples, arm = ctx.config["samples"], actx.arm
    plugin = make_intervention(ctx, cond)
    stored = _load_thoughts(ctx.store, arm.name, cond)
    have = {k: [v[s] for s in range(samples)] for k, v in stored.items() if len(v) == samples}
    missing = [i for i in applicable(plugin, ctx.items) if i.id not in have]
    needed = {r: thoughts[r] for r in member(plugin, "interventions", "requires")}
    try:
        for start in range(0, len(missing), chunk_items * 4):
            part = missing[start:start + chunk_items * 4]
            new = plugin.thoughts(actx, part, samples, needed)
            check_thoughts(cond, new, part, samples)  # nothing of a bad return is written
            # samples already stored (a write cut by a kill) are kept as stored, not written twice
            ctx.store.append([_thought_row(arm.name, cond, i.id, s, t) for i in part
                              for s, t in enumerate(new[i.id]) if s not in stored.get(i.id, {})], THOUGHTS)
            have.update({i.id: [stored.get(i.id, {}).get(s, t) for s, t in enumerate(new[i.id])] for i in part})
    finally:
        if missing and member(plugin, "interventions", "close") is not None:
            plugin.close()
    return have


def _record_skipped(ctx: RunContext, order: list[str]) -> dict[str, set]:
    """Per condition, the ids of the items its intervention does not apply to; recorded in the
    manifest as ``skipped_items`` (only when there are any, so other runs' manifests stay as they were)."""
    skipped = {}
    for cond in order:
        plugin = make_intervention(ctx, cond)
        if member(plugin, "interventions", "applies") is not None:
            ids = {i.id for i in ctx.items} - {i.id for i in applicable(plugin, ctx.items)}
            if ids:
                skipped[cond] = ids
    if skipped or ctx.store.manifest().get("skipped_items"):
        shown = {c: sorted(v) for c, v in skipped.items()}
        if ctx.store.manifest().get("skipped_items") != shown:
            ctx.store.update_manifest(skipped_items=shown)
    return skipped


def _other_arms_first(ctx: RunContext, order: list[str], chunk_items: int) -> None:
    """For conditions with ``requires_arms``: their requirements for every arm, before any arm's
    other work (one model at a time; the last arm made stays loaded for the main pass, which
    starts with the first arm). Arms whose requirements are all stored load nothing."""
    first = [c for c in order if member(ctx.interventions[plugin_name(c)], "interventions", "requires_arms")]
    needs = condition_order([r for c in first for r in member(ctx.interventions[plugin_name(c)],
                                                              "interventions", "requires")], ctx.interventions)
    samples = ctx.config["samples"]
    for arm in reversed(ctx.arms):
        def complete(cond):
            stored = _load_thoughts(ctx.store, arm.name, cond)
            want = applicable(make_intervention(ctx, cond), ctx.items)
            return all(len(stored.get(i.id, {})) == samples for i in want)

        if all(complete(c) for c in needs):
            continue
        actx = ArmContext(arm, ctx.make_backend(arm), ctx.config, ctx.items, ctx)
        thoughts: dict = {}
        for cond in needs:
            thoughts[cond] = _make_thoughts(ctx, actx, cond, thoughts, chunk_items)
        actx.close_bars()


def run_probe(ctx: RunContext, conditions: list[str], chunk_rows: int = 64) -> None:
    """Run ``conditions`` for every arm and item, appending one record per judged sample.

    Work goes in chunks of about ``chunk_rows`` samples (items x samples); each chunk's records
    are appended when it finishes, so a kill loses at most the chunk in flight."""
    cfg = ctx.config
    samples = cfg["samples"]
    chunk_items = max(1, chunk_rows // samples)
    order = condition_order(conditions, ctx.interventions)
    done = {(r["arm"], r["condition"], r["item_id"], r["sample"]) for r in ctx.store.read(SAMPLES)}
    skipped = _record_skipped(ctx, order)
    todo = {arm.name: {c: [i for i in ctx.items if i.id not in skipped.get(c, ()) and any(
        (arm.name, c, i.id, s) not in done for s in range(samples))] for c in conditions} for arm in ctx.arms}
    if any(p for arm_todo in todo.values() for p in arm_todo.values()):
        _other_arms_first(ctx, order, chunk_items)
    for arm in ctx.arms:
        pending = todo[arm.name]
        if not any(pending.values()):
            continue
        actx = ArmContext(arm, ctx.make_backend(arm), cfg, ctx.items, ctx)
        thoughts: dict[str, dict[str, list[Thought]]] = {}
        for cond in order:
            thoughts[cond] = _make_thoughts(ctx, actx, cond, thoughts, chunk_items)
        close_ids = actx.backend.encode(arm.think_close)
        for cond in conditions:
            for start in range(0, len(pending[cond]), chunk_items):
                part = pending[cond][start:start + chunk_items]
                rows = _run_chunk(actx, cond, part, thoughts[cond], close_ids, done)
                ctx.store.append(rows)
                ctx.stats["new_records"] += len(rows)
        actx.close_bars()


def _run_chunk(actx: ArmContext, cond: str, items: list[Item], thoughts, close_ids, done) -> list[dict]:
    cfg, arm, backend, run = actx.config, actx.arm, actx.backend, actx.run
    work = [(i, s) for i in items for s in range(cfg["samples"]) if (arm.name, cond, i.id, s) not in done]
    # Stage 2 prompts: an item's identical ones (blank, generic) share one prefill with n samples.
    groups: dict[tuple, list] = {}
    opened = {i.id: actx.prompt_ids(i) for i in items}  # the prefix every stage-2 prompt of the item starts with
    for item, s in work:
        prompt = opened[item.id] + thoughts[item.id][s].token_ids + close_ids
        groups.setdefault((item.id, tuple(prompt)), []).append((item, s))
    keys = list(groups)
    true_ids = {i.id: backend.encode(i.suffix) for i in items}
    requests = [GenRequest(list(k[1]), n=len(groups[k]),
                           seeds=[actx.seed(i.id, cond, s, "suffix") for i, s in groups[k]],
                           max_new_tokens=cfg["suffix_max_tokens"], temperature=cfg["temperature"],
                           top_p=cfg["top_p"], score_ids=true_ids[groups[k][0][0].id],
                           affinity=groups[k][0][0].id, prefix_len=len(opened[groups[k][0][0].id]))
                for k in keys]
    outs = actx.generate(requests, desc=f"{arm.name} {cond}: suffixes")
    scores = [out[0].score_logprobs for out in outs]
    flat = [(k, (item, s), comp, lp) for k, out, lp in zip(keys, outs, scores)
            for (item, s), comp in zip(groups[k], out)]
    judge_bar = actx.bar(f"{arm.name} {cond}: judging", len(flat))
    verdicts = run.judge.judge([JudgePair(comp.text, item.suffix, item.prefix) for _, (item, _s), comp, _ in flat])
    check_verdicts(cfg["judge"]["name"], verdicts, len(flat))
    judge_bar.update(len(flat))
    rows = []
    for (k, (item, s), comp, lp), v in zip(flat, verdicts):
        t = thoughts[item.id][s]
        rows.append({
            "eval": run.eval_name, "arm": arm.name, "condition": cond, "item_id": item.id, "sample": s,
            "cluster": item.cluster, "thought": t.text, "thought_tokens": len(t.token_ids),
            "thought_closed": t.closed, "thought_source": t.source_item,
            **({"thought_info": t.info} if t.info else {}),  # only where set: older records stay as they were
            "suffix": comp.text, "suffix_tokens": len(comp.token_ids), "finish_reason": comp.finish_reason,
            **verdict_fields(v),
            "suffix_logprob": (sum(lp) / len(lp)) if lp else None, "true_suffix_tokens": len(lp),
            "seed": actx.seed(item.id, cond, s, "suffix"), "cached_tokens": comp.cached_tokens,
        })
    rows.sort(key=lambda r: (r["item_id"], r["sample"]))
    return rows


def verdict_fields(v) -> dict:
    """A probe record's judge fields from a :class:`harness.types.Verdict`."""
    return {"reward": v.reward, "judge_score": v.score, "judge_invalid": bool(v.invalid), "judge_raw": v.raw}


def rejudge_probe(records: list[dict], items: dict[str, Item], judge) -> list[dict]:
    """``records`` (probe records) judged again by ``judge``: each record's stored predicted suffix
    against its item's true suffix, as :func:`run_probe` judges; only the judge fields change."""
    verdicts = judge.judge([JudgePair(r["suffix"], items[r["item_id"]].suffix, items[r["item_id"]].prefix)
                            for r in records])
    check_verdicts(judge.name, verdicts, len(records))
    return [dict(r, **verdict_fields(v)) for r, v in zip(records, verdicts)]


class ProbeEval:
    """Base for evals built on :func:`run_probe`; subclasses set ``name``, ``description``, ``defaults``."""

    record_type = "probe"
    defaults: dict = {}

    def run(self, ctx: RunContext) -> None:
        run_probe(ctx, list(ctx.config["interventions"]))

    def rejudge(self, records, items, judge) -> list[dict]:
        return rejudge_probe(records, items, judge)

    def summarize(self, records, manifest) -> dict:
        from reports.probe import summarize

        return summarize(records, manifest)
