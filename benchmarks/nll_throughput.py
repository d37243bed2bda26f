"""Teacher-forced NLL of interleaved rows (the ``nll`` eval's and ``harness train sft``'s scoring),
batched by token budget against one forward per sequence, measured in one run.

    python benchmarks/nll_throughput.py [--arm smollm2-135m] [--rows 32] [--budgets 4096,16384]
    python benchmarks/nll_throughput.py --arm random:qwen3-0.6b --device cuda --rows 256

The rows are the packaged interleaved sample (repeated with new ids past its 32 rows), tokenised
as the eval does (``--max-tokens`` 1024); each row is two sequences (with and without its
thoughts). :func:`plugins.evals.nll_scoring.score_rows` scores them through the ``hf`` backend's
``score()``, whose batches hold at most ``score_batch_tokens`` (rows x padded length) tokens; a
budget of 1 is one forward per sequence. The table gives, per budget, the wall time, rows/s,
scored tokens/s, and the largest difference of a row's NLL sum from the first budget's.
Generation (the repetition rate's continuations) is not timed here.
"""

from __future__ import annotations

import argparse
import time


def main():
    from dataclasses import replace

    import torch

    from harness.arms import load_arms, resolve_arm
    from plugins.backends.hf import HFBackend
    from plugins.evals.nll_scoring import KINDS, score_rows, tokenize_interleaved
    from tasks.interleaved import InterleavedTask
    from tasks.thought_spans import parse_thoughts

    ap = argparse.ArgumentParser()
    ap.add_argument("--arm", default="smollm2-135m")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=1024)
    ap.add_argument("--budgets", default="1,4096,16384", help="score_batch_tokens values, comma-separated (1: "
                                                             "one forward per sequence)")
    args = ap.parse_args()
    arm = resolve_arm(args.arm, load_arms())
    if args.device != "auto":
        arm = replace(arm, device=args.device)
    backend = HFBackend(arm)
    items = InterleavedTask({}).items()
    t0 = time.perf_counter()
    rows = []
    for k in range(args.rows):
        item = items[k % len(items)]
        rows.append(tokenize_interleaved(f"{item.id}-{k}", parse_thoughts(item.prefix), backend.encode,
                                         arm.think_open, arm.think_close, 16, args.max_tokens))
    load_s = time.perf_counter() - t0
    tokens = sum(max(0, len(r.ids) - 1) + max(0, len(r.raw_ids) - 1) for r in rows)
    info = backend.info()
    print(f"arm {arm.name}: {info['model_class']} {info['dtype']} on {info['device']}, torch threads "
          f"{torch.get_num_threads()}; {len(rows)} rows, {tokens:,} scored tokens (max_tokens {args.max_tokens}); "
          f"model load + tokenise {load_s:.1f}s")

    def sync():
        if str(backend.device).startswith("cuda"):
            torch.cuda.synchronize()

    backend.score_tokens = 4096
    score_rows(backend.score, rows[:2])  # warm-up
    print("| score_batch_tokens | wall s | rows/s | scored tok/s | max |row sum diff| vs first |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    first = None
    for budget in (int(b) for b in args.budgets.split(",")):
        backend.score_tokens = budget
        sync()
        t0 = time.perf_counter()
        res = score_rows(backend.score, rows)
        sync()
        dt = time.perf_counter() - t0
        first = first or res
        diff = max(abs(a.sums[k] - b.sums[k]) for a, b in zip(first, res) for k in KINDS)
        print(f"| {budget:,} | {dt:.1f} | {len(rows) / dt:.2f} | {tokens / dt:,.0f} | {diff:.2e} |")


if __name__ == "__main__":
    main()
