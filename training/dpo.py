"""Online DPO (self-improving continued pretraining).

Per prefix: candidates are the true suffix and ``rollouts`` policy samples; a pairwise judge
compares **every** pair, each in its own seeded random A/B order (``repeats`` times); a
candidate's score is its mean win share over its valid comparisons. Chosen = best, rejected =
worst (seeded tie-break); a prefix whose scores are all equal is skipped. The loss is DPO on
summed suffix log-probs against a frozen reference. An invalid judge answer drops that
comparison and is counted, never taken as a vote.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

from harness.seeding import derive_seed
from training.common import Setup, config_of
from training.data import Example, data_fingerprint, input_fingerprints, load_examples, step_batch
from training.metrics import echo, log_line, mean, peak_memory_gib
from training.output import Output, save_due
from training.policy import Policy, load_judge


@dataclass
class DPOConfig:
    """Online DPO settings; defaults are the reference study's."""

    steps: int = field(default=200, metadata={"help": "Optimiser steps."})
    prefixes_per_step: int = field(default=4, metadata={"help": "Prefixes per step."})
    rollouts: int = field(default=16, metadata={"help": "Policy rollouts per prefix (K)."})
    prefix_tokens: int = field(default=384, metadata={"help": "Prefix length in tokens (its last tokens are kept)."})
    suffix_tokens: int = field(default=128, metadata={"help": "True suffix and rollout length in tokens."})
    temperature: float = field(default=1.0, metadata={"help": "Rollout temperature."})
    top_p: float = field(default=1.0, metadata={"help": "Rollout nucleus mass."})
    beta: float = field(default=0.1, metadata={"help": "DPO beta."})
    lr: float = field(default=1e-6, metadata={"help": "Learning rate (AdamW)."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    repeats: int = field(default=1, metadata={"help": "Judge calls per pair, each with a fresh A/B order."})
    judge: str = field(default="llm", metadata={"help": "Pairwise judge (one with compare(): llm, keyword)."})
    eval_every: int = field(default=50, metadata={"help": "Steps between raw-suffix NLL evals (0: start and end only)."})
    eval_prefixes: int = field(default=16, metadata={"help": "Held-out prefixes for the raw-suffix NLL."})
    micro_batch: int = field(default=8, metadata={"help": "Sequences per forward/backward pass."})


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float):
    """Per-pair DPO loss ``-log sigmoid(beta * ((pc - rc) - (pr - rr)))`` on summed log-probs,
    with the margin ``(pc - rc) - (pr - rr)``; tensors of shape [pairs]."""
    import torch.nn.functional as F

    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin), margin


def win_scores(n: int, verdicts: list[tuple[int, int, float | None]]) -> tuple[list[float | None], int]:
    """Mean win share per candidate from ``(first, second, first's share or None)`` comparisons;
    returns (scores, invalid count). A candidate without valid comparisons scores None."""
    wins, seen, invalid = [0.0] * n, [0] * n, 0
    for a, b, share in verdicts:
        if share is None:
            invalid += 1
            continue
        wins[a] += share
        wins[b] += 1.0 - share
        seen[a] += 1
        seen[b] += 1
    return [w / s if s else None for w, s in zip(wins, seen)], invalid


def pick_pair(scores: list[float | None], rng: random.Random) -> tuple[int, int] | None:
    """(chosen, rejected) indices: best and worst score with a seeded tie-break; None when all
    valid scores are equal (nothing to prefer)."""
    valid = [i for i, s in enumerate(scores) if s is not None]
    if len(valid) < 2:
        return None
    hi = max(scores[i] for i in valid)
    lo = min(scores[i] for i in valid)
    if hi == lo:
        return None
    return rng.choice([i for i in valid if scores[i] == hi]), rng.choice([i for i in valid if scores[i] == lo])


def judge_candidates(judge, ex: Example, texts: list[str], repeats: int, seed: int, step: int):
    """Every pair of candidates, each repeat in a seeded random order; returns the comparisons'
    (first, second, share) and the judge's raw verdicts."""
    from harness.types import Comparison

    jobs = []
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            for r in range(repeats):
                flip = random.Random(derive_seed(seed, "ab", step, ex.id, i, j, r)).random() < 0.5
                jobs.append((j, i) if flip else (i, j))
    verdicts = judge.compare([Comparison(ex.prefix, texts[a], texts[b]) for a, b in jobs])
    return [(a, b, None if v.invalid or v.score is None else float(v.score)) for (a, b), v in zip(jobs, verdicts)]


def summed_logprobs(model, pairs, pad_id, device, grad: bool, micro_batch: int):
    from training.logprobs import continuation_logprobs

    return [lp.sum() for lp in continuation_logprobs(model, pairs, pad_id, device, grad=grad, share_context=True,
                                                     max_batch_tokens=micro_batch * max(len(c) + len(s) for c, s in pairs))]


def suffix_nll(model, examples: list[Example], pad_id, device) -> float | None:
    """Mean per-token NLL of the true suffixes (teacher-forced)."""
    from training.logprobs import continuation_logprobs

    if not examples:
        return None
    lps = continuation_logprobs(model, [(e.prefix_ids, e.suffix_ids) for e in examples], pad_id, device)
    total = sum(float(-lp.sum()) for lp in lps)
    return total / max(1, sum(len(lp) for lp in lps))


def train(setup: Setup, cfg: DPOConfig, judge_options: dict, arms_file=None) -> Output:
    """Run online DPO; returns the finished :class:`Output`."""
    import torch

    config = dict(config_of(setup, cfg), stage="dpo", judge_options=judge_options,
                  **input_fingerprints(setup, "chunks", arms_file))
    out = Output(setup.out, "dpo", config)
    if out.finished:
        return out
    judge = load_judge(cfg.judge, judge_options, arms_file, need="compare")
    config["judge_config"] = judge.config()
    policy = Policy(setup, arms_file)
    examples = load_examples(setup.data, policy, cfg.prefix_tokens, cfg.suffix_tokens)
    held = examples[-min(cfg.eval_prefixes, max(1, len(examples) // 8)):] if len(examples) > 1 else []
    train_ex = [e for e in examples if e not in held] or examples
    reference = policy.frozen_copy()
    opt = policy.optimizer(cfg.lr)
    pad = policy.tokenizer.pad_token_id
    metrics = {"stage": "dpo", "steps": [], "evals": []}
    start, saved = out.resume(policy, opt, cfg.steps)
    metrics = saved or metrics

    def evaluate(step):
        policy.model.eval()
        with torch.no_grad():
            row = {"step": step, "raw_suffix_nll": suffix_nll(policy.unwrapped(), held, pad, policy.device)}
        policy.model.train()
        metrics["evals"].append(row)
        echo(policy, f"eval step {step}: raw suffix NLL {row['raw_suffix_nll']:.4f} ({len(held)} held-out prefixes)")

    if start == 0 and not metrics["evals"]:
        evaluate(0)
    backend = policy.backend()
    rank, world = policy.accelerator.process_index, policy.accelerator.num_processes
    for step in range(start, cfg.steps):
        t0 = time.perf_counter()
        batch = step_batch(train_ex, step, cfg.prefixes_per_step * world, setup.seed)[rank::world]
        from harness.types import GenRequest

        reqs = [GenRequest(e.prefix_ids, n=cfg.rollouts,
                           seeds=[derive_seed(setup.seed, "dpo", step, e.id, k) for k in range(cfg.rollouts)],
                           max_new_tokens=cfg.suffix_tokens, temperature=cfg.temperature, top_p=cfg.top_p)
                for e in batch]
        outs = backend.generate(reqs)
        gen_tokens = sum(len(c.token_ids) for o in outs for c in o)
        t_gen = time.perf_counter() - t0
        pairs, n_invalid, n_compared, skipped, rollout_chosen = [], 0, 0, 0, []
        for e, comps in zip(batch, outs):
            cands = [e.suffix_ids] + [c.token_ids for c in comps]
            texts = [e.suffix] + [c.text for c in comps]
            verdicts = judge_candidates(judge, e, texts, cfg.repeats, setup.seed, step)
            scores, bad = win_scores(len(cands), verdicts)
            n_invalid += bad
            n_compared += len(verdicts)
            pick = pick_pair(scores, random.Random(derive_seed(setup.seed, "tie", step, e.id)))
            if pick is None:
                skipped += 1
                continue
            c, r = pick
            rollout_chosen.append(int(c != 0))
            pairs.append((e.prefix_ids, cands[c], cands[r]))
        t_judge = time.perf_counter() - t0 - t_gen
        counts = [sum(x) for x in zip(*policy.gather([(len(batch), skipped, len(pairs), n_compared, n_invalid,
                                                        gen_tokens)]))]
        n_prefixes, n_skipped, n_pairs, n_compared, n_invalid, gen_tokens = counts
        row = {"step": step + 1, "prefixes": n_prefixes, "skipped_prefixes": n_skipped, "pairs": n_pairs,
               "judge_comparisons": n_compared, "judge_invalid": n_invalid,
               "invalid_rate": n_invalid / n_compared if n_compared else None,
               "rollout_chosen_rate": mean(policy.gather(rollout_chosen)), "generated_tokens": gen_tokens}
        opt.zero_grad(set_to_none=True)
        losses, margins, lr_c, lr_r = [], [], [], []
        if pairs:
            seqs = [(p, c) for p, c, _ in pairs] + [(p, r) for p, _, r in pairs]
            with torch.no_grad():
                ref = summed_logprobs(reference, seqs, pad, policy.device, False, cfg.micro_batch)
            per = max(1, cfg.micro_batch // 2)
            for k in range(0, len(pairs), per):
                part = list(range(k, min(len(pairs), k + per)))
                sub = [seqs[i] for i in part] + [seqs[len(pairs) + i] for i in part]
                with policy.accelerator.autocast():
                    pol = summed_logprobs(policy.model, sub, pad, policy.device, True, cfg.micro_batch)
                pc, pr = torch.stack(pol[:len(part)]), torch.stack(pol[len(part):])
                rc = torch.stack([ref[i] for i in part]).to(pc.device)
                rr = torch.stack([ref[len(pairs) + i] for i in part]).to(pc.device)
                loss, margin = dpo_loss(pc, pr, rc, rr, cfg.beta)
                with policy.sync_if(last=k + per >= len(pairs)):
                    policy.accelerator.backward(loss.sum() / len(pairs))
                losses += loss.tolist()
                margins += margin.tolist()
                lr_c += (pc - rc).tolist()
                lr_r += (pr - rr).tolist()
        elif n_pairs:
            policy.idle_backward()  # other processes learn this step; join their all-reduce
        if n_pairs:  # no step at all when no process has a pair (Adam's momentum would still move)
            grad_norm = policy.accelerator.clip_grad_norm_(policy.model.parameters(), cfg.max_grad_norm)
            opt.step()
            margins = policy.gather(margins)
            row.update(loss=mean(policy.gather(losses)), dpo_margin=mean(margins),
                       chosen_logratio=mean(policy.gather(lr_c)), rejected_logratio=mean(policy.gather(lr_r)),
                       grad_norm=float(grad_norm), preference_accuracy=mean([float(m > 0) for m in margins]))
        row.update(step_s=time.perf_counter() - t0, generate_s=t_gen, judge_s=t_judge)
        metrics["steps"].append(row)
        if not all(math.isfinite(v) for v in (row.get("loss", 0.0), row.get("grad_norm", 0.0))):
            raise RuntimeError(f"non-finite loss or gradient at dpo step {step + 1}: {row}")
        if setup.log_every and (step + 1) % setup.log_every == 0:
            echo(policy, log_line(step + 1, cfg.steps, row, ["loss", "dpo_margin", "rollout_chosen_rate",
                                                            "invalid_rate", "pairs", "step_s"]))
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:
            evaluate(step + 1)
        if save_due(step + 1, cfg.steps, setup.save_every):  # always after the last step
            out.save_state(policy, opt, step + 1, metrics)
    if not metrics["evals"] or metrics["evals"][-1]["step"] != cfg.steps:
        evaluate(cfg.steps)
    metrics["summary"] = summarize(metrics, policy)
    out.finish(policy, metrics, dict(data_fingerprint(setup.data), examples=len(examples), held_out=len(held)))
    return out


def summarize(metrics: dict, policy: Policy) -> dict:
    steps = metrics["steps"]
    first, last = metrics["evals"][0], metrics["evals"][-1]
    k = max(1, len(steps) // 10)
    return {
        "steps": len(steps),
        "rollout_chosen_rate_first": mean([s["rollout_chosen_rate"] for s in steps[:k]]),
        "rollout_chosen_rate_last": mean([s["rollout_chosen_rate"] for s in steps[-k:]]),
        "dpo_margin_first": mean([s.get("dpo_margin") for s in steps[:k]]),
        "dpo_margin_last": mean([s.get("dpo_margin") for s in steps[-k:]]),
        "invalid_rate": (sum(s["judge_invalid"] for s in steps) / max(1, sum(s["judge_comparisons"] for s in steps))),
        "skipped_prefixes": sum(s["skipped_prefixes"] for s in steps),
        "raw_suffix_nll_start": first["raw_suffix_nll"], "raw_suffix_nll_end": last["raw_suffix_nll"],
        "mean_step_s": mean([s["step_s"] for s in steps]),
        "peak_memory_gib": peak_memory_gib(policy.device), "device": str(policy.device),
        "windows": f"first/last {k} steps",
    }
