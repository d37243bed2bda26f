"""The RLMT loss pass with and without a shared prompt forward, measured in one run.

    python benchmarks/loss_forward.py [--arm smollm2-135m] [--prompts 2] [--samples 16]
    python benchmarks/loss_forward.py --arm random:qwen3-0.6b --device cuda

An RLMT step scores every rollout (prompt of ``--prompt-tokens`` + thought, close tag and suffix,
``--continuation-tokens`` in all) under the policy with gradients and under the frozen
reference without. ``continuation_logprobs`` either runs each rollout as its own left-padded
row (the prompt recomputed per rollout) or, with ``share_context``, runs each prompt once and
shares its KV cache with its rollouts. Both run on the same batch in micro-batches of
``--micro-batch`` rows (as training does); the table gives the time of a policy
forward + backward and of a reference forward, the ratio, the largest difference in log-probs
and in gradients between the two ways, and how far each way is from a float64 forward.
"""

from __future__ import annotations

import argparse
import random
import time


def main():
    import torch

    from harness.arms import load_arms, resolve_arm
    from harness.modelspec import load_model
    from training.logprobs import continuation_logprobs

    ap = argparse.ArgumentParser()
    ap.add_argument("--arm", default="smollm2-135m")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--prompt-tokens", type=int, default=384)
    ap.add_argument("--continuation-tokens", type=int, default=176)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--check-rollouts", type=int, default=4, help="rollouts compared with a float64 forward")
    args = ap.parse_args()
    arm = resolve_arm(args.arm, load_arms())
    if args.device != "auto":
        from dataclasses import replace

        arm = replace(arm, device=args.device)
    model, tok, device = load_model(arm)
    model.train()
    rng = random.Random(0)
    vocab = model.config.vocab_size
    pairs = []
    for _ in range(args.prompts):
        prompt = [rng.randrange(vocab) for _ in range(args.prompt_tokens)]
        for _ in range(args.samples):
            n = rng.randint(args.continuation_tokens // 2, args.continuation_tokens)
            pairs.append((prompt, [rng.randrange(vocab) for _ in range(n)]))
    budget = args.micro_batch * (args.prompt_tokens + args.continuation_tokens)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0

    def sync():
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()

    def policy_pass(share):
        model.zero_grad(set_to_none=True)
        sync()
        t0 = time.perf_counter()
        lps = []
        for k in range(0, len(pairs), args.micro_batch):
            part = continuation_logprobs(model, pairs[k:k + args.micro_batch], pad, device, grad=True,
                                         share_context=share, max_batch_tokens=budget)
            sum(lp.sum() for lp in part).backward()
            lps += [lp.detach().float().cpu() for lp in part]
        sync()
        grads = torch.cat([p.grad.flatten().float().cpu() for p in model.parameters() if p.grad is not None])
        return time.perf_counter() - t0, lps, grads

    def reference_pass(share):
        sync()
        t0 = time.perf_counter()
        continuation_logprobs(model, pairs, pad, device, share_context=share, max_batch_tokens=budget)
        sync()
        return time.perf_counter() - t0

    policy_pass(True)  # warm-up
    t_sep, lp_sep, g_sep = policy_pass(False)
    t_sh, lp_sh, g_sh = policy_pass(True)
    r_sep, r_sh = reference_pass(False), reference_pass(True)
    lp_diff = max(float((a - b).abs().max()) for a, b in zip(lp_sep, lp_sh) if len(a))
    g_diff = float((g_sep - g_sh).abs().max() / g_sep.abs().max())
    tokens = sum(len(c) for _, c in pairs)
    print(f"work: {args.prompts} prompts x {args.samples} rollouts, prompt {args.prompt_tokens} tokens, "
          f"continuations <= {args.continuation_tokens} ({tokens} tokens), micro-batch {args.micro_batch}, "
          f"arm {args.arm} on {device}")
    print(f"policy forward+backward  separate rows {t_sep:7.2f} s  shared prompt {t_sh:7.2f} s  {t_sep / t_sh:5.2f}x")
    print(f"reference forward        separate rows {r_sep:7.2f} s  shared prompt {r_sh:7.2f} s  {r_sep / r_sh:5.2f}x")
    print(f"largest log-prob difference {lp_diff:.2e}; largest gradient difference {g_diff:.2e} of the largest gradient")
    # which way is closer to the truth: both against a float64 forward of the first few rollouts
    # (the log-softmax stays float32 in continuation_logprobs, so this bounds the network's rounding)
    few = pairs[:args.check_rollouts]
    ways = [continuation_logprobs(model, few, pad, device, share_context=s, max_batch_tokens=budget)
            for s in (False, True)]
    exact = continuation_logprobs(model.double(), few, pad, device, max_batch_tokens=budget)
    far = [max(float((a.double() - b.double()).abs().max()) for a, b in zip(way, exact)) for way in ways]
    print(f"against a float64 forward ({len(few)} rollouts): separate rows {far[0]:.2e}, shared prompt {far[1]:.2e}")


if __name__ == "__main__":
    main()
