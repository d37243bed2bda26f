"""CPU benchmark: the ``hf`` backend in float32 vs bfloat16 on the thought-probe workload, one run.

1. Speed: the backend's own ``generate`` on probe-like requests, timed in interleaved repetitions
   (the order alternates, ABBA, so drifting machine load hits both dtypes alike): thought requests
   (prefix + open tag, ``--n`` samples each, stop at the close tag) and suffix requests (prefix +
   open tag + a thought + close tag, one per sample, scoring the true suffix in the prefill, as the
   probe does). EOS is ignored so that both dtypes generate about the same number of tokens; the
   ratio is reported on wall time and on generated tokens per second.
2. Accuracy: the teacher-forced per-token log-likelihood (``score()``) of the packaged chunks' true
   suffixes on the demo's items, bf16 vs fp32, after a blank thought and after a thought the fp32
   model wrote: absolute differences in nats/token over tokens and over item means (the records'
   ``suffix_logprob``), and of the per-item delta thought - blank that the probe's sensitivity rows
   are built from.

    python benchmarks/cpu_dtype.py [--arm smollm2-135m] [--prompts 4] [--n 4] [--new-tokens 48] \\
        [--repeats 3] [--items 16]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from harness.arms import load_arms, resolve_arm
from harness.types import GenRequest, ScoreRequest
from plugins.backends.hf import HFBackend
from tasks.chunks import ChunksTask


class NoEOS(HFBackend):
    eos_ids = set()


def prompt(b, arm, item, thought=None):
    """The probe's prompts: prefix + open tag (stage 1), then + thought + close tag (stage 2)."""
    ids = b.encode(arm.prompt_prefix + item.prefix) + b.encode(arm.think_open)
    return ids if thought is None else ids + thought + b.encode(arm.think_close)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arm", default="smollm2-135m")
    ap.add_argument("--prompts", type=int, default=4, help="items in the timed workload")
    ap.add_argument("--n", type=int, default=4, help="samples per item")
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per dtype, interleaved")
    ap.add_argument("--items", type=int, default=16, help="items for the log-likelihood comparison")
    args = ap.parse_args()
    base = resolve_arm(args.arm, load_arms())
    arms = {dt: replace(base, dtype=dt, device="cpu") for dt in ("float32", "bfloat16")}
    backends = {dt: NoEOS(a) for dt, a in arms.items()}
    for b in backends.values():
        b.model  # noqa: B018 (load)
    fp32 = backends["float32"]
    items = ChunksTask().items()
    stop = (base.think_close,)

    def thoughts_of(b, part):
        reqs = [GenRequest(prompt(b, base, it), n=args.n, seeds=[100 * k + s for s in range(args.n)],
                           max_new_tokens=args.new_tokens, top_p=0.95, stop_strings=stop)
                for k, it in enumerate(part)]
        return reqs, b.generate(reqs)

    # The suffix stage's prompts hold fp32 thoughts for both dtypes, so the work is the same.
    work = items[:args.prompts]
    thought_reqs, outs = thoughts_of(fp32, work)
    truths = {it.id: fp32.encode(it.suffix) for it in work}
    suffix_reqs = [GenRequest(prompt(fp32, base, it, c.token_ids), n=1, seeds=[7 + s], max_new_tokens=args.new_tokens,
                              top_p=0.95, score_ids=truths[it.id])
                   for it, out in zip(work, outs) for s, c in enumerate(out)]

    def probe_pass(b):
        start = time.perf_counter()
        done = b.generate(thought_reqs) + b.generate(suffix_reqs)
        return time.perf_counter() - start, sum(len(c.token_ids) for o in done for c in o)

    for b in backends.values():
        probe_pass(b)  # warm-up: oneDNN builds its kernels for each shape on first use
    times = {dt: [] for dt in backends}
    tokens = {dt: [] for dt in backends}
    for r in range(args.repeats):
        for dt in (("float32", "bfloat16") if r % 2 == 0 else ("bfloat16", "float32")):
            t, n = probe_pass(backends[dt])
            times[dt].append(t)
            tokens[dt].append(n)
    rows = len(thought_reqs) * args.n
    print(f"work per pass: {rows} thought rows + {len(suffix_reqs)} suffix rows, up to {args.new_tokens} new tokens "
          f"each, prompts ~{sum(map(len, (r.prompt_ids for r in suffix_reqs))) // len(suffix_reqs)} tokens; arm "
          f"{args.arm}, {torch.get_num_threads()} threads, {args.repeats} interleaved passes per dtype")
    for dt in backends:
        tps = [n / t for n, t in zip(tokens[dt], times[dt])]
        print(f"{dt:9s}: median {statistics.median(times[dt]):6.2f} s/pass, {statistics.median(tps):6.1f} tok/s "
              f"(passes {', '.join(f'{t:.2f}' for t in times[dt])} s)")
    paired = [a / b for a, b in zip(times["float32"], times["bfloat16"])]
    tps_ratio = [(nb / tb) / (na / ta) for na, ta, nb, tb in zip(tokens["float32"], times["float32"],
                                                                   tokens["bfloat16"], times["bfloat16"])]
    print(f"ratio, fp32 time / bf16 time: median {statistics.median(paired):.2f}x "
          f"(paired passes {', '.join(f'{p:.2f}' for p in paired)}); "
          f"bf16 / fp32 tok/s: median {statistics.median(tps_ratio):.2f}x")

    # -- log-likelihood of the true suffixes, bf16 vs fp32 ----------------------------------
    part = items[:args.items]
    _, th = thoughts_of(fp32, part)
    contexts = {"blank": [prompt(fp32, base, it, []) for it in part],
                "own": [prompt(fp32, base, it, out[0].token_ids) for it, out in zip(part, th)]}
    true_ids = [fp32.encode(it.suffix) for it in part]
    lps = {dt: {c: b.score([ScoreRequest(x, t) for x, t in zip(ctxs, true_ids)]) for c, ctxs in contexts.items()}
           for dt, b in backends.items()}
    print(f"log-likelihood of the true suffixes, {len(part)} items, ~{sum(map(len, true_ids)) // len(part)} tokens "
          "each (bf16 - fp32, nats/token):")
    means = {}
    for c in contexts:
        tok = [abs(x - y) for a, b in zip(lps["bfloat16"][c], lps["float32"][c]) for x, y in zip(a, b)]
        means[c] = {dt: [sum(lp) / len(lp) for lp in lps[dt][c]] for dt in backends}
        item = [abs(x - y) for x, y in zip(means[c]["bfloat16"], means[c]["float32"])]
        where = "blank" if c == "blank" else "fp32 model's"
        print(f"  after the {where} thought: per token mean |diff| {statistics.mean(tok):.4f}, max {max(tok):.4f}; "
              f"per item mean |diff| {statistics.mean(item):.4f}, max {max(item):.4f}; "
              f"mean log-lik fp32 {statistics.mean(means[c]['float32']):.4f}, "
              f"bf16 {statistics.mean(means[c]['bfloat16']):.4f}")
    delta = {dt: [t - b for t, b in zip(means["own"][dt], means["blank"][dt])] for dt in backends}
    dd = [abs(x - y) for x, y in zip(delta["bfloat16"], delta["float32"])]
    print(f"  per-item delta own thought - blank: fp32 mean {statistics.mean(delta['float32']):+.4f}, "
          f"bf16 mean {statistics.mean(delta['bfloat16']):+.4f}; |diff| per item mean {statistics.mean(dd):.4f}, "
          f"max {max(dd):.4f}; same sign in {sum((x > 0) == (y > 0) for x, y in zip(*delta.values()))}/{len(dd)} items")


if __name__ == "__main__":
    main()
