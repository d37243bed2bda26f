"""CPU benchmark: the ``hf`` backend's prefix store and in-place KV cache on the thought-probe
workload, measured in one run as ratios of wall time.

Four settings of one arm run the probe's two stages, in interleaved passes (each pass runs every
setting, in a rotating order, so drifting load hits them alike):
  - ``whole``: the requests carry no ``prefix_len``, so every prompt is prefilled whole (the path
    before the prefix store; its samples differ by float rounding, so its tokens are not compared);
  - ``neither``: ``prefix_cache_mb = 0, kv_spare = 0`` (a suffix prompt's prefix computed again
    for it; the transformers cache, which copies itself to append each decoded position);
  - ``in-place``: ``kv_spare = 64`` only;
  - ``both``: the defaults (also the item prefix kept from stage 1 for stage 2).
Stage 1 samples ``--n`` thoughts per item after prefix + open tag (all of it ``prefix_len``);
stage 2 samples one suffix per thought (normal) and ``--n`` after a blank thought, scoring the true
suffix in the prefill, split after the prefix, as the probe does. EOS is ignored so every
setting generates the same number of tokens; the other three must return the same tokens
(checked, float32).

    python benchmarks/cpu_probe_path.py [--arm smollm2-135m] [--items 8] [--n 4] [--thought-tokens 48] \\
        [--suffix-tokens 64] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from harness.arms import load_arms, resolve_arm
from harness.types import GenRequest
from plugins.backends.hf import HFBackend
from tasks.chunks import ChunksTask

SETTINGS = {"whole": {"prefix_cache_mb": 0, "kv_spare": 0}, "neither": {"prefix_cache_mb": 0, "kv_spare": 0},
            "in-place": {"prefix_cache_mb": 0}, "both": {}}


class NoEOS(HFBackend):
    eos_ids = set()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arm", default="smollm2-135m")
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--thought-tokens", type=int, default=48)
    ap.add_argument("--suffix-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    base = resolve_arm(args.arm, load_arms())
    first = NoEOS(replace(base, dtype="float32", device="cpu"))
    model = first.model
    backends = {k: NoEOS.from_loaded(replace(base, options={**base.options, **o}), model, first.tokenizer, "cpu")
                for k, o in SETTINGS.items()}
    for k, b in backends.items():  # from_loaded is for training (no prefix store): give it its own back
        b.prefixes = HFBackend(b.arm).prefixes
    items = ChunksTask().items()[:args.items]
    stop = (base.think_close,)
    opened = [first.encode(base.prompt_prefix + it.prefix) + first.encode(base.think_open) for it in items]
    close = first.encode(base.think_close)
    truths = [first.encode(it.suffix) for it in items]

    def probe_pass(b, split=True):
        if b.prefixes is not None:
            b.prefixes.clear()
        start = time.perf_counter()
        s1 = [GenRequest(p, n=args.n, seeds=[100 * k + s for s in range(args.n)], max_new_tokens=args.thought_tokens,
                         top_p=0.95, stop_strings=stop, prefix_len=len(p) * split) for k, p in enumerate(opened)]
        thoughts = b.generate(s1)
        s2 = [GenRequest(p + c.token_ids + close, n=1, seeds=[7 + s], max_new_tokens=args.suffix_tokens, top_p=0.95,
                         score_ids=t, prefix_len=len(p) * split) for p, out, t in zip(opened, thoughts, truths)
              for s, c in enumerate(out)]
        s2 += [GenRequest(p + close, n=args.n, seeds=list(range(args.n)), max_new_tokens=args.suffix_tokens,
                          top_p=0.95, score_ids=t, prefix_len=len(p) * split) for p, t in zip(opened, truths)]
        suffixes = b.generate(s2)
        took = time.perf_counter() - start
        done = thoughts + suffixes
        return took, sum(len(c.token_ids) for o in done for c in o), [[c.token_ids for c in o] for o in done]

    probe_pass(backends["both"])  # warm-up: oneDNN builds its kernels for each shape on first use
    names = list(SETTINGS)
    times = {k: [] for k in names}
    tokens = {}
    for r in range(args.repeats):
        for k in names[r % len(names):] + names[:r % len(names)]:
            t, n, toks = probe_pass(backends[k], split=k != "whole")
            times[k].append(t)
            tokens.setdefault(k, (n, toks))
    same = all(tokens[k][1] == tokens["neither"][1] for k in names if k != "whole")
    prompt = sum(map(len, opened)) // len(opened)
    print(f"work per pass: {len(items)} items x {args.n} thoughts (<= {args.thought_tokens} tokens) + "
          f"{len(items) * args.n * 2} suffixes ({args.suffix_tokens} tokens, true suffix ~"
          f"{sum(map(len, truths)) // len(truths)} scored), item prompts ~{prompt} tokens; arm {args.arm}, float32, "
          f"{torch.get_num_threads()} threads, {args.repeats} interleaved passes; same tokens in the split settings: {same}")
    for k in names:
        n = tokens[k][0]
        print(f"{k:9s}: best {min(times[k]):6.2f} s/pass, {n / min(times[k]):6.1f} generated tok/s "
              f"(passes {', '.join(f'{t:.2f}' for t in times[k])} s)")
    for base_k, k in (("whole", "neither"), ("whole", "both"), ("neither", "in-place"), ("neither", "both")):
        paired = [a / b for a, b in zip(times[base_k], times[k])]
        print(f"ratio, {base_k} / {k}: median {statistics.median(paired):.2f}x "
              f"(paired passes {', '.join(f'{p:.2f}' for p in paired)})")
    if not same:
        raise SystemExit("the settings returned different tokens")


if __name__ == "__main__":
    main()
