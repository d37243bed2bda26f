"""Eval ``nll``: teacher-forced NLL of interleaved-thinking rows, split by token kind, and the
repetition rate of sampled continuations, per arm and row.

``harness run --plugin nll --arm A --arm B --data-file interleaved.jsonl``. Items come from the
``interleaved`` task (one item per row, the text whole; ``--task-option rows=validation`` keeps the
rows ``harness train sft`` holds out). For each arm and row the eval scores, with the arm's
tokenizer and think tags, the numbers ``harness train sft`` reports for its held-out rows, computed
by the same code (:mod:`plugins.evals.nll_scoring`):

- ``raw_nll``: the row with its thoughts removed; ``augmented_nll``: every token of the row with
  its thoughts; ``thought_nll``: thought tokens (tags included); ``text_nll``: text tokens;
  ``post_thought_nll``: the first ``post_thought_tokens`` (16) text tokens after each thought;
- ``repetition_4gram_rate``: of one continuation of ``--max-new-tokens`` (128) tokens sampled from
  the first half of the row's raw tokens (temperature 1.0, top_p 0.95 unless given; seed
  ``derive_seed(run seed, "sft-rep", row id)``, the same for every arm, as in the trainer).

One record per arm and row (condition ``nll``, sample 0) holds each kind's NLL sum and token count
beside its per-token mean, so every summary number is recomputable from ``samples.jsonl``; the
summary pools tokens over rows (:mod:`reports.nll`). A row without thoughts has no thought (or
post-thought) tokens: those means are None, the record's ``note`` says so, the rest is scored. Each
record names the tokenizer that scored it: per-token NLLs of arms with different tokenizers are in
different units.

Rows are scored in fixed chunks of :attr:`NLL.chunk_items` rows; a chunk with any record missing
(a killed run) is scored again whole, so a resumed run's numbers are bit-for-bit those of an
uninterrupted one, and only its missing records are written.
"""

from __future__ import annotations

import hashlib
import json

from harness.errors import BadInput
from harness.hookspecs import hookimpl

CONDITION = "nll"
# shared kind -> record field prefix
FIELDS = {"raw": "raw", "all": "augmented", "thought": "thought", "text": "text", "post": "post_thought"}
NO_THOUGHTS = "no thoughts in this row: thought_nll and post_thought_nll are undefined (None)"
NO_POST = "no text after its thoughts: post_thought_nll is undefined (None)"
CUT_THOUGHTS = "its thoughts lie past max_tokens: thought_nll and post_thought_nll are undefined (None)"


@hookimpl
def register_evals(register):
    register(NLL)


def _int_option(options: dict, key: str, default: int, low: int) -> int:
    value = options.get(key, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or number < low or str(number) != str(value).strip():
        raise BadInput(f"{key}={value!r} is not an integer >= {low}", param_hint="--option")
    return number


def settings(options: dict) -> dict:
    """The eval's ``--option`` values, checked: ``max_tokens``, ``post_thought_tokens``, ``repetition``."""
    rep = str(options.get("repetition", "on")).lower()
    if rep not in ("on", "off"):
        raise BadInput(f"repetition={options['repetition']!r}; valid: on, off", param_hint="--option")
    return {"max_tokens": _int_option(options, "max_tokens", 1024, 2),
            "post_thought_tokens": _int_option(options, "post_thought_tokens", 16, 0), "repetition": rep == "on"}


def tokenizer_label(backend, arm) -> dict:
    """Which tokenizer scored an arm: ``tokenizer`` (spec, class, vocabulary size) and
    ``tokenizer_sha`` (a hash of the vocabulary: equal for arms that share a tokenizer)."""
    tok = getattr(backend, "tokenizer", None)
    spec = getattr(backend, "tokenizer_spec", None) or arm.model
    if tok is None or not hasattr(tok, "get_vocab"):
        return {"tokenizer": f"{spec} (backend {arm.backend})", "tokenizer_sha": None}
    vocab = tok.get_vocab()
    sha = hashlib.sha256(json.dumps(sorted(vocab.items()), ensure_ascii=False).encode()).hexdigest()[:12]
    return {"tokenizer": f"{spec} ({type(tok).__name__}, {len(vocab)} ids)", "tokenizer_sha": sha}


def record(run_name: str, arm_name: str, item, row, res, rep: dict | None, tok: dict) -> dict:
    """One ``samples.jsonl`` record (see the module docstring and :mod:`reports.nll`)."""
    out = {"eval": run_name, "arm": arm_name, "condition": CONDITION, "item_id": item.id, "sample": 0,
           "cluster": item.cluster, **tok, "thoughts": row.thoughts, "truncated": row.truncated}
    for kind, name in FIELDS.items():
        out[f"{name}_nll"] = res.mean(kind)
    for kind, name in FIELDS.items():
        out[f"{name}_nll_sum"], out[f"{name}_tokens"] = res.sums[kind], res.counts[kind]
    out["tokens_scored"] = res.counts["raw"] + res.counts["all"]
    rep = rep or {}
    out.update(repetition_4gram_rate=rep.get("rate"), continuation=rep.get("completion"),
               continuation_tokens=rep.get("completion_tokens"), continuation_prompt_tokens=rep.get("prompt_tokens"),
               continuation_finish_reason=rep.get("finish_reason"), continuation_seed=rep.get("seed"))
    if not row.thoughts:
        notes = [NO_THOUGHTS]
    elif not res.counts["thought"]:
        notes = [CUT_THOUGHTS]
    else:
        notes = [NO_POST] if not res.counts["post"] else []
    if row.truncated:
        notes.append("cut to max_tokens")
    out["note"] = "; ".join(notes) or None
    return out


class NLL:
    name = "nll"
    description = ("teacher-forced NLL of interleaved rows (raw, thought, text, post-thought) and the 4-gram "
                   "repetition of sampled continuations, as harness train sft's evals")
    record_type = "nll"
    uses_judge = False
    defaults = {"samples": 1, "limit": None, "tasks": ("interleaved",), "max_new_tokens": 128,
                "temperature": 1.0, "top_p": 0.95}
    run_options = {"max_tokens": "rows are cut to this many tokens (1024, as harness train sft)",
                   "post_thought_tokens": "text tokens after each thought in post_thought_nll (16)",
                   "repetition": "on: sample a continuation per row for the repetition rate; off: skip"}
    chunk_items = 64

    @classmethod
    def check_options(cls, options: dict) -> None:
        settings(options)

    def run(self, ctx) -> None:
        from harness.pipeline import ArmContext
        from harness.store import SAMPLES

        cfg = ctx.config
        if cfg["samples"] != 1:
            raise BadInput(f"the nll eval scores each row once (sample 0); got --samples {cfg['samples']}",
                           param_hint="--samples")
        opts = settings(cfg["options"])
        foreign = [i for i in ctx.items if "think_open" not in i.meta]
        if foreign:
            raise BadInput(f"the nll eval scores whole interleaved rows (task interleaved); item {foreign[0].id!r} "
                           "comes from a task that does not give them", param_hint="--task")
        for arm in ctx.arms:
            if not arm.think_open or not arm.think_close:
                raise BadInput(f"arm {arm.name!r} has no think_open/think_close tags; the nll eval needs both",
                               param_hint="--arm")
        done = {(r["arm"], r["item_id"]) for r in ctx.store.read(SAMPLES)}
        chunks = [ctx.items[k:k + self.chunk_items] for k in range(0, len(ctx.items), self.chunk_items)]
        for arm in ctx.arms:
            todo = [c for c in chunks if any((arm.name, i.id) not in done for i in c)]
            if not todo:
                continue
            actx = ArmContext(arm, ctx.make_backend(arm), cfg, ctx.items, ctx)
            tok = tokenizer_label(actx.backend, arm)
            for chunk in todo:
                rows = self._chunk(actx, chunk, opts, tok, done)
                ctx.store.append(rows)
                ctx.stats["new_records"] += len(rows)
            actx.close_bars()

    def _chunk(self, actx, items, opts, tok, done) -> list[dict]:
        """Score (and sample) every row of the chunk; records for the rows not yet stored."""
        from plugins.evals.nll_scoring import sample_repetition, score_rows, tokenize_interleaved
        from tasks.thought_spans import parse_thoughts

        arm, backend, cfg = actx.arm, actx.backend, actx.config
        rows = [tokenize_interleaved(i.id, parse_thoughts(i.prefix, i.meta["think_open"], i.meta["think_close"]),
                                     backend.encode, arm.think_open, arm.think_close, opts["post_thought_tokens"],
                                     opts["max_tokens"]) for i in items]
        bar = actx.bar(f"{arm.name}: scoring rows", len(rows))
        results = score_rows(backend.score, rows)
        bar.update(len(rows))
        reps = {}
        if opts["repetition"]:
            reps = sample_repetition(lambda reqs: actx.generate(reqs, desc=f"{arm.name}: continuations"), rows,
                                     cfg["seed"], cfg["max_new_tokens"], cfg["temperature"], cfg["top_p"])
        return [record(actx.run.eval_name, arm.name, item, row, res, reps.get(row.id), tok)
                for item, row, res in zip(items, rows, results) if (arm.name, item.id) not in done]

    def summarize(self, records, manifest) -> dict:
        from reports.nll import summarize

        return summarize(records, manifest)
