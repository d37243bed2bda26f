"""Interleaved-thinking SFT: next-token loss over the whole augmented text (thoughts included).

Rows are ordinary text with ``<think>...</think>`` spans. Each row is tokenised segment by
segment, the same way the probe builds its prompts (text ids, then open tag + thought + close
tag ids, then text ids), so every token knows whether it belongs to a thought. The loss covers
every token; the evals split the NLL by kind, with the code of the ``nll`` eval
(:mod:`plugins.evals.nll_scoring`: ``harness run --plugin nll`` gives the same numbers on the
same rows and weights, ``--task-option rows=validation`` picks these held-out rows):

- ``val_nll_raw``: the held-out rows with thoughts removed (the plain text, tokenised whole);
- ``thought_nll`` / ``text_nll``: thought tokens (tags included) / text tokens of the augmented rows;
- ``post_thought_nll``: the first ``post_thought_tokens`` text tokens after each thought;
- ``repetition_4gram_rate``: repeated word 4-grams in sampled continuations of held-out prefixes;
- ``tokens_seen``, ``throughput_tok_s`` (training tokens per second of training), ``peak_memory_gib``.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

from harness.errors import BadInput
from harness.seeding import derive_seed
from plugins.evals.nll_scoring import (TEXT, THOUGHT, TokenizedRow, pooled, sample_repetition, score_rows,
                                      tokenize_interleaved)
from tasks.interleaved import split_rows as split_by_id
from tasks.thought_spans import parse_thoughts
from training.common import Setup, config_of
from training.data import data_fingerprint, input_fingerprints, sample_data
from training.metrics import echo, log_line, mean, peak_memory_gib
from training.output import Output, save_due
from training.policy import Policy

__all__ = ["TEXT", "THOUGHT", "Row", "SFTConfig", "kind_nll", "load_rows", "repetition", "split_rows", "tokenize_row",
           "train"]


@dataclass
class SFTConfig:
    """SFT settings."""

    epochs: float = field(default=1.0, metadata={"help": "Passes over the training rows (used when --steps is 0)."})
    steps: int = field(default=0, metadata={"help": "Optimiser steps (0: from --epochs)."})
    batch_rows: int = field(default=8, metadata={"help": "Rows per optimiser step."})
    micro_batch: int = field(default=4, metadata={"help": "Rows per forward/backward pass."})
    max_tokens: int = field(default=1024, metadata={"help": "Rows are cut to this many tokens."})
    lr: float = field(default=1e-5, metadata={"help": "Peak learning rate (AdamW)."})
    warmup_steps: int = field(default=10, metadata={"help": "Linear warmup steps, then constant."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    val_fraction: float = field(default=0.0625, metadata={"help": "Held-out share of rows (when rows have no 'split')."})
    eval_every: int = field(default=50, metadata={"help": "Steps between evals (0: start and end only)."})
    post_thought_tokens: int = field(default=16, metadata={"help": "Text tokens after each thought in post_thought_nll."})
    rep_samples: int = field(default=8, metadata={"help": "Held-out prefixes sampled for the repetition rate (0: skip)."})
    rep_tokens: int = field(default=128, metadata={"help": "Tokens sampled per repetition-rate continuation."})
    text_column: str = field(default="text", metadata={"help": "Column with the interleaved text."})


Row = TokenizedRow  # one tokenised row (plugins.evals.nll_scoring, shared with the nll eval)


def tokenize_row(row_id: str, text: str, policy: Policy, cfg: SFTConfig) -> Row:
    """Tokenise an interleaved row with the policy's tokenizer and think tags
    (:func:`plugins.evals.nll_scoring.tokenize_interleaved`)."""
    arm = policy.arm
    return tokenize_interleaved(row_id, parse_thoughts(text, arm.think_open, arm.think_close), policy.encode,
                                arm.think_open, arm.think_close, cfg.post_thought_tokens, cfg.max_tokens)


def split_rows(rows: list[dict], frac: float) -> tuple[list[dict], list[dict]]:
    """Rows with a ``split`` column go by it (validation/val/test held out); otherwise the
    ``ceil(frac * n)`` rows whose id hashes lowest are held out (independent of row order). The
    rule of the ``interleaved`` task's ``rows=validation`` (:func:`tasks.interleaved.split_rows`)."""
    return split_by_id(rows, frac, lambda r: r["_id"])


def load_rows(setup: Setup, cfg: SFTConfig, policy: Policy):
    """Read and check the interleaved rows; malformed rows stop training, naming file and line."""
    from tasks.loading import read_rows
    from training.interleaved import check_row

    if not policy.arm.think_open or not policy.arm.think_close:
        raise BadInput(f"arm {policy.arm.name!r} has no think_open/think_close tags; interleaved SFT needs both",
                       param_hint="--arm")
    rows = read_rows(sample_data("interleaved") if setup.data == "sample" else setup.data)
    bad = []
    for n, r in enumerate(rows):
        r["_id"] = str(r.get("id") or f"row{n:05d}")
        res = check_row(r, text_column=cfg.text_column, open_tag=policy.arm.think_open,
                        close_tag=policy.arm.think_close)
        if not res["ok"]:
            bad.append(f"{r['_source']}:{r['_line']}: {'; '.join(res['problems'])}")
    if bad:
        raise BadInput(f"{len(bad)} malformed interleaved rows (run `harness data validate` for the audit):\n  "
                       + "\n  ".join(bad[:10]), param_hint="--data")
    return rows


def kind_nll(backend, rows: list[Row]) -> dict:
    """Token-mean NLLs on held-out rows, pooled over rows: augmented (all / thought / text /
    post-thought) and raw, scored through ``backend.score`` (batched by its token budget) by
    :func:`plugins.evals.nll_scoring.score_rows`, the ``nll`` eval's code."""
    results = score_rows(backend.score, rows)
    return {"val_nll": pooled(results, "all"), "thought_nll": pooled(results, "thought"),
            "text_nll": pooled(results, "text"), "post_thought_nll": pooled(results, "post"),
            "val_nll_raw": pooled(results, "raw")}


def eval_backend(policy: Policy, cfg: SFTConfig):
    """An ``hf`` backend over the live weights whose scoring batches hold ``micro_batch`` rows of
    ``max_tokens`` tokens (the training forward's budget)."""
    backend = policy.backend()
    backend.score_tokens = cfg.micro_batch * cfg.max_tokens
    return backend


def repetition(backend, rows: list[Row], cfg: SFTConfig, seed: int) -> float | None:
    """Mean repeated-4-gram rate of continuations sampled from the first half of the first
    ``rep_samples`` held-out rows (:func:`plugins.evals.nll_scoring.sample_repetition`)."""
    rows = [r for r in rows if len(r.raw_ids) >= 4][:cfg.rep_samples]
    if not rows or cfg.rep_samples <= 0:
        return None
    reps = sample_repetition(backend.generate, rows, seed, cfg.rep_tokens)
    return mean([reps[r.id]["rate"] for r in rows])


def _pad(seqs, pad_id):
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[b, :len(s)] = 1
    return ids, mask


def train(setup: Setup, cfg: SFTConfig, arms_file=None) -> Output:
    """Run SFT; returns the finished :class:`Output`."""
    import random

    import torch

    config = dict(config_of(setup, cfg), stage="sft", **input_fingerprints(setup, "interleaved", arms_file))
    out = Output(setup.out, "sft", config)
    if out.finished:
        return out
    policy = Policy(setup, arms_file)
    raw_rows = load_rows(setup, cfg, policy)
    train_raw, val_raw = split_rows(raw_rows, cfg.val_fraction)
    if not train_raw:
        raise BadInput("no training rows left after holding out the validation rows", param_hint="--data")
    train_rows = [tokenize_row(r["_id"], r[cfg.text_column], policy, cfg) for r in train_raw]
    val_rows = [tokenize_row(r["_id"], r[cfg.text_column], policy, cfg) for r in val_raw]
    steps = cfg.steps or max(1, math.ceil(len(train_rows) * cfg.epochs / cfg.batch_rows))
    opt = policy.optimizer(cfg.lr, cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg.warmup_steps)
                                              if cfg.warmup_steps else 1.0)
    pad = policy.tokenizer.pad_token_id
    metrics = {"stage": "sft", "rows": {"train": len(train_rows), "validation": len(val_rows)}, "steps": [], "evals": []}
    start, saved = out.resume(policy, opt, steps)
    metrics = saved or metrics
    tokens_seen = metrics["steps"][-1]["tokens_seen"] if metrics["steps"] else 0
    train_s = sum(s["step_s"] for s in metrics["steps"])
    with warnings.catch_warnings():  # fast-forward on resume: no optimiser step is due before these
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(start):
            sched.step()

    def evaluate(step):
        policy.model.eval()
        backend = eval_backend(policy, cfg)
        row = {"step": step, **kind_nll(backend, val_rows)} if val_rows else {"step": step}
        row["repetition_4gram_rate"] = repetition(backend, val_rows, cfg, setup.seed)
        policy.model.train()
        row.update(tokens_seen=tokens_seen, throughput_tok_s=tokens_seen / train_s if train_s else None,
                   peak_memory_gib=peak_memory_gib(policy.device))
        metrics["evals"].append(row)
        echo(policy, "eval " + log_line(step, steps, row, ["val_nll_raw", "thought_nll", "text_nll",
                                                           "post_thought_nll", "repetition_4gram_rate"])[5:])

    if start == 0 and not metrics["evals"]:
        evaluate(0)
    rank, world = policy.accelerator.process_index, policy.accelerator.num_processes
    order_cache: dict[int, list[int]] = {}
    for step in range(start, steps):
        t0 = time.perf_counter()
        picks = []
        for k in range(step * cfg.batch_rows, (step + 1) * cfg.batch_rows):
            epoch, pos = divmod(k, len(train_rows))
            if epoch not in order_cache:
                order_cache[epoch] = list(range(len(train_rows)))
                random.Random(derive_seed(setup.seed, "sft-order", epoch)).shuffle(order_cache[epoch])
            picks.append(train_rows[order_cache[epoch][pos]])
        mine = picks[rank::world]
        n_tokens = sum(max(0, len(r.ids) - 1) for r in picks)
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for k in range(0, len(mine), cfg.micro_batch):
            part = mine[k:k + cfg.micro_batch]
            ids, mask = _pad([r.ids for r in part], pad)
            labels = ids.masked_fill(mask == 0, -100)
            ids, mask, labels = ids.to(policy.device), mask.to(policy.device), labels.to(policy.device)
            with policy.accelerator.autocast():
                logits = policy.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            tok_loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                                         ignore_index=-100, reduction="sum")
            with policy.sync_if(last=k + cfg.micro_batch >= len(mine)):
                policy.accelerator.backward(tok_loss / max(1, n_tokens // world))
            loss_sum += tok_loss.item()
        if not mine:
            policy.idle_backward()
        grad_norm = float(policy.accelerator.clip_grad_norm_(policy.model.parameters(), cfg.max_grad_norm))
        if not math.isfinite(grad_norm) or not math.isfinite(loss_sum):
            raise RuntimeError(f"non-finite loss or gradient at sft step {step + 1}")
        opt.step()
        sched.step()
        dt = time.perf_counter() - t0
        train_s += dt
        tokens_seen += n_tokens
        row = {"step": step + 1, "loss": loss_sum / max(1, sum(max(0, len(r.ids) - 1) for r in mine)),
               "grad_norm": grad_norm, "lr": sched.get_last_lr()[0], "tokens": n_tokens, "tokens_seen": tokens_seen,
               "step_s": dt, "throughput_tok_s": n_tokens / dt}
        metrics["steps"].append(row)
        if setup.log_every and (step + 1) % setup.log_every == 0:
            echo(policy, log_line(step + 1, steps, row, ["loss", "grad_norm", "throughput_tok_s", "step_s"]))
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < steps:
            evaluate(step + 1)
        if save_due(step + 1, steps, setup.save_every):  # always after the last step
            out.save_state(policy, opt, step + 1, metrics)
    evaluate(steps)
    first, last = metrics["evals"][0], metrics["evals"][-1]
    metrics["summary"] = {"steps": steps, "tokens_seen": tokens_seen,
                          "throughput_tok_s": tokens_seen / train_s if train_s else None,
                          "mean_step_s": mean([s["step_s"] for s in metrics["steps"]]),
                          "peak_memory_gib": peak_memory_gib(policy.device), "device": str(policy.device),
                          **{f"{k}_start": first.get(k) for k in ("val_nll_raw", "thought_nll", "text_nll",
                                                                  "post_thought_nll", "repetition_4gram_rate")},
                          **{f"{k}_end": last.get(k) for k in ("val_nll_raw", "thought_nll", "text_nll",
                                                               "post_thought_nll", "repetition_4gram_rate")}}
    out.finish(policy, metrics, dict(data_fingerprint(setup.data, "interleaved"),
                                     train_rows=len(train_rows), validation_rows=len(val_rows)))
    return out
