"""CPU benchmark: the HF backend's sampling against bare transformers ``generate`` on the same work.

Reports, measured in one run on one machine, as ratios of wall time:
  1. shared-prefix n-sampling (prefill each prompt once, expand its KV cache to n samples)
     vs ``model.generate(num_return_sequences=n)`` (prefills every sample);
  2. harness overhead: the backend's decode loop (per-sample seeded generators, stop-string
     checks) vs bare ``model.generate`` on identical batches (one row per sample, no sharing).
EOS is ignored in both so every run generates exactly the same number of tokens.

    python benchmarks/cpu_sampling.py [--arm smollm2-135m] [--prompts 4] [--n 8] [--new-tokens 48]
"""

from __future__ import annotations

import argparse
import time

import torch

from harness.arms import load_arms, resolve_arm
from harness.types import GenRequest
from plugins.backends.hf import HFBackend


class NoEOS(HFBackend):
    eos_ids = set()


def timed(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arm", default="smollm2-135m")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--prompt-words", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    backend = NoEOS(resolve_arm(args.arm, load_arms()))
    model, tok = backend.model, backend.tokenizer
    words = ("rivers carry sand and silt toward the sea where waves sort the grains by size and the "
             "finest particles settle in calm water far from shore").split()
    prompts = [backend.encode(" ".join(words[(p + j) % len(words)] for j in range(args.prompt_words)))
               for p in range(args.prompts)]
    total = args.prompts * args.n * args.new_tokens

    def harness_shared():
        backend.generate([GenRequest(p, n=args.n, seeds=list(range(args.n)), max_new_tokens=args.new_tokens,
                                     top_p=0.95, stop_strings=("</think>",)) for p in prompts])

    def bare_generate(expand: bool):
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in prompts])
        mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()
        if expand:  # what the harness feeds: every sample its own row (no prefix sharing)
            ids, mask = ids.repeat_interleave(args.n, 0), mask.repeat_interleave(args.n, 0)
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=mask, do_sample=True, top_p=0.95, temperature=1.0,
                           max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                           num_return_sequences=1 if expand else args.n, pad_token_id=tok.pad_token_id)

    def harness_rows():  # every sample its own request and prefill row: the same batch as bare generate
        backend.generate([GenRequest(p, n=1, seeds=[s], max_new_tokens=args.new_tokens, top_p=0.95,
                                     stop_strings=("</think>",)) for p in prompts for s in range(args.n)])

    harness_shared()  # warm-up
    t_shared = timed(harness_shared, args.repeats)
    t_nrs = timed(lambda: bare_generate(False), args.repeats)
    t_rows = timed(harness_rows, args.repeats)
    t_bare = timed(lambda: bare_generate(True), args.repeats)
    print(f"work: {args.prompts} prompts x {args.n} samples x {args.new_tokens} new tokens "
          f"({total} tokens), prompt ~{sum(map(len, prompts)) // len(prompts)} tokens, arm {args.arm}, "
          f"{torch.get_num_threads()} threads")
    print(f"harness shared-prefix n-sampling : {t_shared:7.2f} s  ({total / t_shared:6.1f} tok/s)")
    print(f"generate(num_return_sequences=n) : {t_nrs:7.2f} s  ({total / t_nrs:6.1f} tok/s)")
    print(f"harness, one prefill per sample  : {t_rows:7.2f} s  ({total / t_rows:6.1f} tok/s)")
    print(f"bare generate, same rows         : {t_bare:7.2f} s  ({total / t_bare:6.1f} tok/s)")
    print(f"ratio 1, shared-prefix n-sampling speed-up over num_return_sequences: {t_nrs / t_shared:.2f}x")
    print(f"ratio 2, harness decode-loop overhead (harness / bare generate, same rows): {t_rows / t_bare:.2f}")


if __name__ == "__main__":
    main()
