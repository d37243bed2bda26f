"""Eval ``pairwise``: arms' continuations of the same held-out prefixes, judged head to head.

Items are prefix / true-suffix chunks (the ``chunks`` task by default; any task whose items have a
prefix and a suffix). Each arm samples ``samples`` continuations of every prefix (defaults as the
reference study: at most 128 tokens, temperature 1.0, top_p 0.95), from the prefix's token ids,
or with ``--option thought=true`` after its own thought (two stages: prefix + open tag -> thought,
then prefix + open tag + thought + close tag -> continuation, all token ids). With
``--option original=true`` the true suffix is one more candidate ("original"), so "does the
policy's rollout beat the data suffix" (the study's rollout-chosen rate) is a pair of the run.

Every pair of candidates (A before B in ``--arm`` order, ``original`` last) is compared per item
and sample (A's sample s against B's sample s) by the judge's ``compare()`` in BOTH orders, and
both verdicts are kept on the record. Both orders for A: A wins; both for B: B wins; orders that
disagree: a tie. An invalid verdict in either order leaves the comparison out (it is counted);
a judge call that raises is tried again (``RETRIES`` times), then its comparisons are invalid,
never a vote.

Records (``samples.jsonl``), two kinds, keys unique per (arm, condition, item_id, sample):

- ``kind = "continuation"``: ``arm``, ``condition = "continuation"``, the arm's ``suffix`` (its
  continuation), ``suffix_tokens``, ``finish_reason``, ``seed``, ``thought`` fields (None without
  a thought). Thoughts themselves go to ``thoughts.jsonl`` (condition ``normal``, the probe's seeds).
- ``kind = "pair"``: ``arm`` = A, ``condition`` = B (an arm or ``original``), ``arm_a``, ``arm_b``,
  ``suffix_a``, ``suffix_b``; ``score_ab``/``invalid_ab``/``raw_ab``/``error_ab`` for A shown first
  (``score``: the first shown's win share, 1, 0.5 or 0), ``..._ba`` for B shown first; ``a_score``
  (A's share: 1, 0.5, 0, or None when invalid), ``outcome`` (``win``, ``tie``, ``loss`` for A, or
  ``invalid``), ``consistent`` (the two orders agreed).

A rerun skips finished records: continuations first (an arm's model is loaded only when some of
its continuations are missing), then the judging, in chunks appended as they finish.
"""

from __future__ import annotations

import click

from harness.checks import check_comparisons
from harness.errors import BadInput
from harness.hookspecs import hookimpl
from harness.options import Option, parse_options
from harness.types import Comparison, GenRequest, Thought, Verdict

ORIGINAL = "original"  # the true suffix as a candidate
CONTINUATION = "continuation"  # the condition of continuation records
THOUGHT_CONDITION = "normal"  # thoughts are the arm's own, seeded as the probe's ``normal`` condition
RETRIES = 2  # a judge call that raises is tried this many more times, then its comparisons are invalid
CHUNK_ROWS = 64  # continuations (or pair records) per chunk appended to the store

RUN_OPTIONS = (
    Option("thought", bool, False, "each arm writes its own thought first (two-stage: thought, close tag, "
                                   "continuation)"),
    Option("original", bool, False, "the true suffix is a third candidate ('original') against every arm"),
)


@hookimpl
def register_evals(register):
    register(Pairwise)


def parse_run_options(options: dict) -> dict:
    """This eval's ``--option`` values, typed (``thought``, ``original``: booleans)."""
    return parse_options(RUN_OPTIONS, dict(options), "pairwise eval", "--option")


def comparable_judges() -> list[str]:
    from harness.plugins import registry

    reg = registry("judges")
    return [n for n in reg.names() if callable(getattr(reg.classes[n], "compare", None))]


class Pairwise:
    name = "pairwise"
    description = "arms' continuations of held-out prefixes judged head to head in both orders (wins, ties, sign test)"
    record_type = "pairwise"
    defaults = {"samples": 1, "limit": 128, "thought_max_tokens": 48, "suffix_max_tokens": 128,
                "temperature": 1.0, "top_p": 0.95}
    run_options = {o.key: o.help for o in RUN_OPTIONS}

    @classmethod
    def check_options(cls, options: dict) -> None:
        parse_run_options(options)

    @classmethod
    def check_setup(cls, arms, judge, config: dict, items=()) -> None:
        """Refuse what cannot be compared: fewer than two candidates, a judge without
        ``compare()``, ``--intervention``, an arm named like a reserved condition, an item without
        a true suffix when it is a candidate. Called first thing in :meth:`run` (before any work,
        so a new run leaves nothing behind); a runner that calls it before opening the store
        refuses such a run before the directory exists."""
        opts = parse_run_options(config.get("options") or {})
        names = [a.name for a in arms]
        if len(names) + opts["original"] < 2:
            raise BadInput(f"the pairwise eval compares at least two candidates; got {len(names)} arm(s) "
                           f"({', '.join(names)}): give another --arm, or --option original=true to compare "
                           "with the true suffix", param_hint="--arm")
        if judge is None or not callable(getattr(judge, "compare", None)):
            name = (config.get("judge") or {}).get("name", getattr(judge, "name", None))
            raise BadInput(f"judge {name!r} cannot compare two continuations; judges that can: "
                           f"{', '.join(comparable_judges())}", param_hint="--judge")
        if config.get("interventions"):
            raise BadInput("the pairwise eval takes no --intervention (for the arm's own thought: "
                           "--option thought=true)", param_hint="--intervention")
        reserved = [CONTINUATION] + ([ORIGINAL] if opts["original"] else [])
        clash = [n for n in names if n in reserved]
        if clash:
            raise BadInput(f"arm name {clash[0]!r} is reserved by the pairwise eval for "
                           f"{'the true suffix' if clash[0] == ORIGINAL else 'continuation records'}; "
                           "rename the arm in an arms file", param_hint="--arm")
        empty = [i.id for i in items if not i.suffix.strip()]
        if opts["original"] and empty:
            raise BadInput(f"item {empty[0]!r} has no true suffix to compare with (--option original=true needs "
                           "items with a suffix: the chunks task, or a task whose items have one)", param_hint="--task")

    def run(self, ctx) -> None:
        self.check_setup(ctx.arms, ctx.judge, ctx.config, ctx.items)
        opts = parse_run_options(ctx.config["options"])
        conts = generate_continuations(ctx, opts["thought"])
        judge_pairs(ctx, conts, opts["original"])

    def rejudge(self, records, items, judge) -> list[dict]:
        """Pair records compared again by ``judge`` in both orders (as :func:`judge_pairs` does, from
        the stored ``suffix_a`` / ``suffix_b``); continuation records come back unchanged."""
        pairs = [r for r in records if r.get("kind") == "pair"]
        comparisons = []
        for r in pairs:
            item = items[r["item_id"]]
            comparisons += [Comparison(item.prefix, r["suffix_a"], r["suffix_b"], item.suffix),
                            Comparison(item.prefix, r["suffix_b"], r["suffix_a"], item.suffix)]
        verdicts = compare_with_retries(judge, judge.name, comparisons) if comparisons else []
        new = {id(r): pair_row(r["arm_a"], r["arm_b"], items[r["item_id"]], r["sample"], r["suffix_a"],
                               r["suffix_b"], verdicts[2 * n], verdicts[2 * n + 1]) for n, r in enumerate(pairs)}
        return [new.get(id(r), r) for r in records]

    def summarize(self, records, manifest) -> dict:
        from reports.pairwise import summarize

        return summarize(records, manifest)


# -- continuations ----------------------------------------------------------------------------

def generate_continuations(ctx, thought: bool) -> dict:
    """Every arm's continuation records, generated where missing; ``(arm, item, sample) -> record``."""
    from harness.pipeline import ArmContext
    from harness.store import SAMPLES

    k = ctx.config["samples"]
    have = {(r["arm"], r["item_id"], r["sample"]): r for r in ctx.store.read(SAMPLES)
            if r.get("kind") == CONTINUATION}
    chunk = max(1, CHUNK_ROWS // k)
    for arm in ctx.arms:
        todo = [i for i in ctx.items if any((arm.name, i.id, s) not in have for s in range(k))]
        if not todo:
            continue
        actx = ArmContext(arm, ctx.make_backend(arm), ctx.config, ctx.items, ctx)
        stored = stored_thoughts(ctx.store, arm.name) if thought else {}
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            thoughts = arm_thoughts(actx, part, stored) if thought else None
            rows = continuation_chunk(actx, part, thoughts, have)
            ctx.store.append(rows)
            ctx.stats["new_records"] += len(rows)
            have.update({(r["arm"], r["item_id"], r["sample"]): r for r in rows})
        actx.close_bars()
    return have


def stored_thoughts(store, arm: str) -> dict[str, dict[int, Thought]]:
    """This arm's thoughts already in ``thoughts.jsonl``: item id -> sample -> thought."""
    from harness.store import THOUGHTS

    out: dict[str, dict[int, Thought]] = {}
    for r in store.read(THOUGHTS):
        if r["arm"] == arm and r["condition"] == THOUGHT_CONDITION:
            out.setdefault(r["item_id"], {})[r["sample"]] = Thought(r["token_ids"], r["text"], r["closed"],
                                                                    r.get("source_item"))
    return out


def arm_thoughts(actx, items, stored) -> dict[str, list[Thought]]:
    """``samples`` thoughts per item: stored ones kept as stored, the others sampled (seeded per
    item and sample, as the probe's ``normal`` condition) and appended to ``thoughts.jsonl``."""
    from harness.store import THOUGHTS

    k = actx.config["samples"]
    need = [i for i in items if len(stored.get(i.id, {})) < k]
    new = actx.sample_thoughts(need, k, THOUGHT_CONDITION) if need else {}
    rows = [{"arm": actx.arm.name, "condition": THOUGHT_CONDITION, "item_id": i.id, "sample": s,
             "token_ids": t.token_ids, "text": t.text, "closed": t.closed, "source_item": None}
            for i in need for s, t in enumerate(new[i.id]) if s not in stored.get(i.id, {})]
    actx.run.store.append(rows, THOUGHTS)
    for r in rows:
        stored.setdefault(r["item_id"], {})[r["sample"]] = new[r["item_id"]][r["sample"]]
    return {i.id: [stored[i.id][s] for s in range(k)] for i in items}


def continuation_chunk(actx, items, thoughts, have) -> list[dict]:
    """The missing continuations of ``items``: prompt ids (prefix, or prefix + open tag + thought
    + close tag), then ``samples`` draws; samples of one prompt share one request."""
    cfg, arm, backend = actx.config, actx.arm, actx.backend
    close_ids = backend.encode(arm.think_close) if thoughts is not None else []
    cond = THOUGHT_CONDITION if thoughts is not None else "plain"
    groups: dict[tuple, list] = {}
    for item in items:
        for s in range(cfg["samples"]):
            if (arm.name, item.id, s) in have:
                continue
            if thoughts is None:
                prompt = backend.encode(arm.prompt_prefix + item.prefix)
            else:
                prompt = actx.prompt_ids(item) + thoughts[item.id][s].token_ids + close_ids
            groups.setdefault((item.id, tuple(prompt)), []).append((item, s))
    keys = list(groups)
    requests = [GenRequest(list(key[1]), n=len(groups[key]),
                           seeds=[actx.seed(i.id, cond, s, "suffix") for i, s in groups[key]],
                           max_new_tokens=cfg["suffix_max_tokens"], temperature=cfg["temperature"],
                           top_p=cfg["top_p"], affinity=key[0]) for key in keys]
    outs = actx.generate(requests, desc=f"{arm.name}: continuations")
    rows = []
    for key, out in zip(keys, outs):
        for (item, s), comp in zip(groups[key], out):
            t = thoughts[item.id][s] if thoughts is not None else None
            rows.append({
                "eval": "pairwise", "kind": CONTINUATION, "arm": arm.name, "condition": CONTINUATION,
                "item_id": item.id, "sample": s, "cluster": item.cluster,
                "thought": None if t is None else t.text, "thought_tokens": None if t is None else len(t.token_ids),
                "thought_closed": None if t is None else t.closed,
                "suffix": comp.text, "suffix_tokens": len(comp.token_ids), "finish_reason": comp.finish_reason,
                "seed": actx.seed(item.id, cond, s, "suffix"), "cached_tokens": comp.cached_tokens,
            })
    rows.sort(key=lambda r: (r["item_id"], r["sample"]))
    return rows


# -- judging ----------------------------------------------------------------------------------

def candidate_pairs(arms, original: bool) -> list[tuple[str, str]]:
    """(A, B) for every pair of candidates: arms in ``--arm`` order, then ``original``."""
    names = [a.name for a in arms] + ([ORIGINAL] if original else [])
    return [(names[i], names[j]) for i in range(len(names)) for j in range(i + 1, len(names))]


def judge_pairs(ctx, conts: dict, original: bool) -> None:
    """Pair records for every (A, B) x item x sample not yet stored, judged in chunks."""
    from tqdm.auto import tqdm

    from harness.store import SAMPLES

    k = ctx.config["samples"]
    done = {(r["arm"], r["condition"], r["item_id"], r["sample"]) for r in ctx.store.read(SAMPLES)
            if r.get("kind") == "pair"}
    work = [(a, b, item, s) for a, b in candidate_pairs(ctx.arms, original) for item in ctx.items
            for s in range(k) if (a, b, item.id, s) not in done]
    if not work:
        return

    def text(c, item, s):
        return item.suffix if original and c == ORIGINAL else conts[(c, item.id, s)]["suffix"]

    judge_name = ctx.config["judge"]["name"]
    bar = tqdm(total=len(work), desc="pairwise: judging", unit="pair", leave=False, disable=ctx.quiet)
    for start in range(0, len(work), CHUNK_ROWS):
        part = work[start:start + CHUNK_ROWS]
        comparisons = []
        for a, b, item, s in part:
            ta, tb = text(a, item, s), text(b, item, s)
            comparisons += [Comparison(item.prefix, ta, tb, item.suffix), Comparison(item.prefix, tb, ta, item.suffix)]
        verdicts = compare_with_retries(ctx.judge, judge_name, comparisons)
        rows = [pair_row(a, b, item, s, text(a, item, s), text(b, item, s), verdicts[2 * n], verdicts[2 * n + 1])
                for n, (a, b, item, s) in enumerate(part)]
        ctx.store.append(rows)
        ctx.stats["new_records"] += len(rows)
        bar.update(len(rows))
    bar.close()


def compare_with_retries(judge, name: str, comparisons) -> list[tuple[Verdict | None, str | None]]:
    """``(verdict, None)`` per comparison, or ``(None, error)`` for each when the call raised
    ``1 + RETRIES`` times (a user-facing error, ``click.ClickException``, is not retried)."""
    error = None
    for attempt in range(1 + RETRIES):
        try:
            verdicts = judge.compare(comparisons)
        except click.ClickException:
            raise
        except Exception as exc:  # a failed call: tried again, then invalid, never a vote
            error = f"{type(exc).__name__}: {exc}"[:300]
            continue
        check_comparisons(name, verdicts, len(comparisons))
        return [(v, None) for v in verdicts]
    click.echo(f"warning: judge {name!r} failed {1 + RETRIES} times on {len(comparisons)} comparison(s) "
               f"({error}); they are recorded as invalid", err=True)
    return [(None, error)] * len(comparisons)


def _side(result) -> dict:
    verdict, error = result
    if verdict is None:
        return {"score": None, "invalid": True, "raw": None, "error": error}
    invalid = bool(verdict.invalid)
    return {"score": None if invalid else float(verdict.score), "invalid": invalid, "raw": verdict.raw,
            "error": None}


def pair_row(a, b, item, s, text_a, text_b, ab, ba) -> dict:
    """The record of A's and B's continuation of one item (sample ``s``), judged in both orders:
    ``ab`` with A shown first, ``ba`` with B shown first."""
    x, y = _side(ab), _side(ba)
    if x["invalid"] or y["invalid"]:
        a_score, outcome, consistent = None, "invalid", None
    else:
        first, second = x["score"], 1.0 - y["score"]  # A's share when shown first, and when shown second
        consistent = first == second
        a_score = first if consistent else 0.5
        outcome = {1.0: "win", 0.5: "tie", 0.0: "loss"}[a_score]
    return {"eval": "pairwise", "kind": "pair", "arm": a, "condition": b, "item_id": item.id, "sample": s,
            "cluster": item.cluster, "arm_a": a, "arm_b": b, "suffix_a": text_a, "suffix_b": text_b,
            **{f"{key}_ab": value for key, value in x.items()}, **{f"{key}_ba": value for key, value in y.items()},
            "a_score": a_score, "outcome": outcome, "consistent": consistent}
