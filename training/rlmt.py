"""RLMT: reinforcement learning mid-training on the thought-conditioned suffix (Dr. GRPO).

Per prefix, ``samples`` rollouts: a thought sampled after the open tag (at most
``thought_tokens``, stopping at the close tag), the close tag inserted by us, then a suffix (at
most ``suffix_tokens``). A judge gives each suffix a binary reward against the true suffix.
Advantage = reward - group mean (no std scaling); invalid verdicts get no advantage and stay out
of the mean. The loss is summed over the sampled tokens (thought and suffix; never the prompt or
the inserted close tag) and divided by the constant ``thought_tokens + suffix_tokens``, plus a
k3 KL estimate to the frozen reference. The loss uses the **sampled token ids**, never a decode
and re-encode.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from harness.seeding import derive_seed
from training.common import Setup, config_of
from training.data import data_fingerprint, input_fingerprints, load_examples, step_batch
from training.metrics import echo, is_artifact, log_line, mean, peak_memory_gib
from training.output import Output, save_due
from training.policy import Policy, load_judge


@dataclass
class RLMTConfig:
    """RLMT settings; defaults are the reference study's."""

    steps: int = field(default=200, metadata={"help": "Optimiser steps."})
    prefixes_per_step: int = field(default=2, metadata={"help": "Prefixes per step."})
    samples: int = field(default=16, metadata={"help": "Rollouts per prefix (K, the GRPO group)."})
    prefix_tokens: int = field(default=384, metadata={"help": "Prefix length in tokens (its last tokens are kept)."})
    thought_tokens: int = field(default=48, metadata={"help": "Max thought tokens."})
    suffix_tokens: int = field(default=128, metadata={"help": "Max predicted (and true) suffix tokens."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus mass."})
    lr: float = field(default=1e-7, metadata={"help": "Learning rate (AdamW)."})
    kl_coef: float = field(default=0.02, metadata={"help": "k3 KL coefficient to the frozen reference."})
    max_grad_norm: float = field(default=0.1, metadata={"help": "Gradient clipping norm."})
    judge: str = field(default="embedding", metadata={"help": "Judge of predicted vs true suffix (harness list judges)."})
    micro_batch: int = field(default=8, metadata={"help": "Sequences per forward/backward pass."})


@dataclass
class Rollout:
    """One sample: prompt (prefix + open tag), the thought and suffix ids exactly as sampled, the
    inserted close-tag ids, and its reward (None when the judge's answer was invalid)."""

    prompt_ids: list[int]
    thought_ids: list[int]
    close_ids: list[int]
    suffix_ids: list[int]
    thought_text: str
    suffix_text: str
    closed: bool
    reward: int | None = None

    def loss_inputs(self) -> tuple[list[int], list[int], list[int]]:
        """(context, continuation, mask): the continuation is thought + close + suffix ids; the
        mask is 1 on sampled tokens and 0 on the inserted close tag."""
        cont = self.thought_ids + self.close_ids + self.suffix_ids
        mask = [1] * len(self.thought_ids) + [0] * len(self.close_ids) + [1] * len(self.suffix_ids)
        return self.prompt_ids, cont, mask


def group_advantages(rewards: list[int | None]) -> list[float]:
    """Dr. GRPO advantages: reward minus the group mean of valid rewards; 0 for invalid ones
    (and for every member of a uniform group)."""
    valid = [r for r in rewards if r is not None]
    if not valid:
        return [0.0] * len(rewards)
    m = sum(valid) / len(valid)
    return [0.0 if r is None else float(r) - m for r in rewards]


def token_loss(logp, ref_logp, advantage: float, mask, kl_coef: float, norm: float):
    """Summed Dr. GRPO + k3-KL loss of one sample over its masked tokens, divided by ``norm``.

    On-policy, so the importance ratio is 1 and its gradient is that of ``advantage * logp``.
    k3 = exp(ref - logp) - (ref - logp) - 1 per token. Returns (loss, summed kl)."""
    diff = ref_logp - logp
    k3 = diff.exp() - diff - 1
    per_token = -advantage * logp + kl_coef * k3
    return (per_token * mask).sum() / norm, float((k3.detach() * mask).sum())


def sample_rollouts(backend, batch, cfg: RLMTConfig, seed: int, step: int, open_ids, close_ids, close_text):
    """Stage 1 (thoughts) then stage 2 (suffixes after the inserted close tag) for a batch of examples."""
    from harness.types import GenRequest

    prompts = [e.prefix_ids + open_ids for e in batch]
    stop = (close_text.strip(),) if close_text.strip() else ()
    thoughts = backend.generate([
        GenRequest(p, n=cfg.samples,
                   seeds=[derive_seed(seed, "rlmt", step, e.id, k, "thought") for k in range(cfg.samples)],
                   max_new_tokens=cfg.thought_tokens, temperature=cfg.temperature, top_p=cfg.top_p, stop_strings=stop)
        for p, e in zip(prompts, batch)])
    reqs, keys = [], []
    for b, (p, e, outs) in enumerate(zip(prompts, batch, thoughts)):
        for k, t in enumerate(outs):
            reqs.append(GenRequest(p + t.token_ids + close_ids, n=1,
                                   seeds=[derive_seed(seed, "rlmt", step, e.id, k, "suffix")],
                                   max_new_tokens=cfg.suffix_tokens, temperature=cfg.temperature, top_p=cfg.top_p))
            keys.append((b, k))
    suffixes = backend.generate(reqs)
    groups = [[None] * cfg.samples for _ in batch]
    for (b, k), out in zip(keys, suffixes):
        t = thoughts[b][k]
        s = out[0]
        groups[b][k] = Rollout(prompts[b], list(t.token_ids), list(close_ids), list(s.token_ids), t.text, s.text,
                               closed=t.finish_reason == "stop")
    return groups


def train(setup: Setup, cfg: RLMTConfig, judge_options: dict, arms_file=None) -> Output:
    """Run RLMT; returns the finished :class:`Output`."""
    import torch

    from harness.types import JudgePair

    config = dict(config_of(setup, cfg), stage="rlmt", judge_options=judge_options,
                  **input_fingerprints(setup, "interleaved", arms_file))
    out = Output(setup.out, "rlmt", config)
    if out.finished:
        return out
    judge = load_judge(cfg.judge, judge_options, arms_file)
    config["judge_config"] = judge.config()
    policy = Policy(setup, arms_file)
    examples = load_examples(setup.data, policy, cfg.prefix_tokens, cfg.suffix_tokens, sample="interleaved")
    reference = policy.frozen_copy()
    opt = policy.optimizer(cfg.lr)
    pad = policy.tokenizer.pad_token_id
    arm = policy.arm
    open_ids, close_ids = policy.encode(arm.think_open), policy.encode(arm.think_close)
    norm = float(cfg.thought_tokens + cfg.suffix_tokens)
    metrics = {"stage": "rlmt", "steps": []}
    start, saved = out.resume(policy, opt, cfg.steps)
    metrics = saved or metrics
    backend = policy.backend()
    rank, world = policy.accelerator.process_index, policy.accelerator.num_processes
    from training.logprobs import continuation_logprobs

    for step in range(start, cfg.steps):
        t0 = time.perf_counter()
        batch = step_batch(examples, step, cfg.prefixes_per_step * world, setup.seed)[rank::world]
        groups = sample_rollouts(backend, batch, cfg, setup.seed, step, open_ids, close_ids, arm.think_close)
        t_gen = time.perf_counter() - t0
        flat = [(b, r) for b, g in enumerate(groups) for r in g]
        verdicts = judge.judge([JudgePair(r.suffix_text, batch[b].suffix, batch[b].prefix) for b, r in flat])
        for (_, r), v in zip(flat, verdicts):
            r.reward = None if v.invalid else v.reward
        t_judge = time.perf_counter() - t0 - t_gen
        advs = [a for g in groups for a in group_advantages([r.reward for r in g])]
        rollouts = [r for g in groups for r in g]
        inputs = [r.loss_inputs() for r in rollouts]
        pairs = [(c, x) for c, x, _ in inputs]
        with torch.no_grad():
            ref_lps = continuation_logprobs(reference, pairs, pad, policy.device, share_context=True,
                                            max_batch_tokens=cfg.micro_batch * max(len(c) + len(x) for c, x in pairs))
        opt.zero_grad(set_to_none=True)
        losses, kls = [], []
        for k in range(0, len(rollouts), cfg.micro_batch):
            idx = list(range(k, min(len(rollouts), k + cfg.micro_batch)))
            with policy.accelerator.autocast():
                lps = continuation_logprobs(policy.model, [pairs[i] for i in idx], pad, policy.device, grad=True,
                                            share_context=True,  # a prompt's rollouts share its forward pass
                                            max_batch_tokens=cfg.micro_batch * max(len(c) + len(x) for c, x in pairs))
            total = 0
            for i, lp in zip(idx, lps):
                mask = torch.tensor(inputs[i][2], dtype=lp.dtype, device=lp.device)
                loss, kl = token_loss(lp, ref_lps[i].to(lp.device), advs[i], mask, cfg.kl_coef, norm)
                total = total + loss
                losses.append(loss.item())
                kls.append(kl / max(1.0, float(mask.sum())))
            with policy.sync_if(last=k + cfg.micro_batch >= len(rollouts)):
                policy.accelerator.backward(total / len(rollouts))
        grad_norm = float(policy.accelerator.clip_grad_norm_(policy.model.parameters(), cfg.max_grad_norm))
        if not math.isfinite(grad_norm):
            raise RuntimeError(f"non-finite gradient at rlmt step {step + 1}")
        opt.step()
        all_groups = policy.gather(groups)
        everyone = [r for g in all_groups for r in g]
        row = step_row(step + 1, all_groups, everyone, policy.gather(losses), policy.gather(kls), grad_norm,
                       metrics["steps"])
        row.update(step_s=time.perf_counter() - t0, generate_s=t_gen, judge_s=t_judge,
                   generated_tokens=sum(len(r.thought_ids) + len(r.suffix_ids) for r in everyone))
        metrics["steps"].append(row)
        if setup.log_every and (step + 1) % setup.log_every == 0:
            echo(policy, log_line(step + 1, cfg.steps, row, ["reward_mean", "mixed_groups", "invalid_rate", "kl",
                                                            "thought_tokens", "suffix_tokens", "step_s"]))
        if save_due(step + 1, cfg.steps, setup.save_every):  # always after the last step
            out.save_state(policy, opt, step + 1, metrics)
    metrics["summary"] = summarize(metrics, policy)
    out.finish(policy, metrics, dict(data_fingerprint(setup.data, "interleaved"), examples=len(examples)))
    return out


def step_row(step: int, groups, rollouts, losses, kls, grad_norm, previous) -> dict:
    """One step's metrics: reward, group shapes, invalid and artifact rates, lengths and drift."""
    rewards = [r.reward for r in rollouts if r.reward is not None]
    shapes = []
    for g in groups:
        rs = [r.reward for r in g if r.reward is not None]
        shapes.append("none" if not rs else "all_zero" if max(rs) == 0 else "all_one" if min(rs) == 1 else "mixed")
    m = mean(rewards)
    thought_len = mean([len(r.thought_ids) for r in rollouts])
    suffix_len = mean([len(r.suffix_ids) for r in rollouts])
    base = previous[0] if previous else None
    return {
        "step": step, "samples": len(rollouts),
        "reward_mean": m,
        "reward_std": (mean([(x - m) ** 2 for x in rewards]) ** 0.5) if rewards else None,
        "mixed_groups": shapes.count("mixed") / len(groups),
        "all_zero_groups": shapes.count("all_zero") / len(groups),
        "all_one_groups": shapes.count("all_one") / len(groups),
        "invalid_rate": sum(r.reward is None for r in rollouts) / len(rollouts),
        "thought_tokens": thought_len, "suffix_tokens": suffix_len,
        "thought_closed_rate": mean([float(r.closed) for r in rollouts]),
        "thought_length_drift": None if base is None else thought_len - base["thought_tokens"],
        "suffix_length_drift": None if base is None else suffix_len - base["suffix_tokens"],
        "artifact_rate": mean([float(is_artifact(r.thought_text + " " + r.suffix_text)) for r in rollouts]),
        "loss": mean(losses), "kl": mean(kls), "grad_norm": grad_norm,
    }


def summarize(metrics: dict, policy: Policy) -> dict:
    steps = metrics["steps"]
    k = max(1, len(steps) // 10)
    return {
        "steps": len(steps),
        "avg_reward": mean([s["reward_mean"] for s in steps]),
        "reward_first": mean([s["reward_mean"] for s in steps[:k]]),
        "reward_last": mean([s["reward_mean"] for s in steps[-k:]]),
        "avg_mixed_groups": mean([s["mixed_groups"] for s in steps]),
        "avg_all_zero_groups": mean([s["all_zero_groups"] for s in steps]),
        "avg_all_one_groups": mean([s["all_one_groups"] for s in steps]),
        "invalid_rate": mean([s["invalid_rate"] for s in steps]),
        "avg_thought_length_drift": mean([s["thought_length_drift"] for s in steps]),
        "avg_suffix_length_drift": mean([s["suffix_length_drift"] for s in steps]),
        "avg_artifact_rate": mean([s["artifact_rate"] for s in steps]),
        "mean_step_s": mean([s["step_s"] for s in steps]),
        "peak_memory_gib": peak_memory_gib(policy.device), "device": str(policy.device),
        "windows": f"first/last {k} steps",
    }
