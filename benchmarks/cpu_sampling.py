"""CPU benchmark: the HF backend's sampling against bare transformers ``generate`` on the same work.

Reports, measured in one run on one machine with interleaved repetitions (each repetition runs
every contender, in a rotating order, so drifting load hits them alike), as ratios of wall time:
  1. shared-prefix n-sampling (prefill each prompt once, expand its KV cache to n samples)
     vs ``model.generate(num_return_sequences=n)`` (prefills every sample);
  2. harness overhead: the backend's decode loop (per-sample seeded generators, stop-string
     checks) vs bare ``model.generate`` on identical batches (one row per sample, no sharing);
  3. continuous batching on vs off: ``--mixed-prompts`` prompts x n samples, more rows than the
     batch holds (``--batch-rows``), each row ending at its first sentence end (a stop string),
     so rows finish at different steps; with it on, freed rows take pending requests. The two
     must return the same tokens (checked);
  4. the share of a decode step that ``sample_rows`` (nucleus sampling over the vocabulary) takes.
EOS is ignored in 1, 2 and 4 so every run generates exactly the same number of tokens.

    python benchmarks/cpu_sampling.py [--arm smollm2-135m] [--prompts 4] [--n 8] [--new-tokens 48]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from harness.arms import load_arms, resolve_arm
from harness.types import GenRequest
from plugins.backends.hf import HFBackend
from plugins.backends.hf.kernels import cache_arg, out_cache, sample_rows


class NoEOS(HFBackend):
    eos_ids = set()


def interleaved(fns: dict, repeats: int) -> dict:
    """Best wall time of each of ``fns`` over ``repeats`` rounds, each round running all of them in
    a rotating order."""
    names = list(fns)
    best = {k: float("inf") for k in names}
    for r in range(repeats):
        for k in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            fns[k]()
            best[k] = min(best[k], time.perf_counter() - start)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arm", default="smollm2-135m")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--prompt-words", type=int, default=200)
    ap.add_argument("--mixed-prompts", type=int, default=12, help="prompts of the continuous-batching workload")
    ap.add_argument("--batch-rows", type=int, default=16, help="batch rows of the continuous-batching workload")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()
    torch.manual_seed(0)
    arm = replace(resolve_arm(args.arm, load_arms()), dtype=args.dtype)  # float32: the tokens checks are exact
    backend = NoEOS(arm)
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

    # 3: continuous batching on and off, over one loaded model
    mixed = [backend.encode(" ".join(words[(3 * p + j) % len(words)] for j in range(20 + 15 * (p % 5))))
             for p in range(args.mixed_prompts)]
    mixed_reqs = [GenRequest(p, n=4, seeds=[10 * k + s for s in range(4)], max_new_tokens=args.new_tokens,
                             top_p=0.95, stop_strings=(".",)) for k, p in enumerate(mixed)]
    cb = {on: HFBackend.from_loaded(replace(arm, options={**arm.options, "batch_rows": args.batch_rows,
                                                          "continuous_batching": on}), model, tok, backend.device)
          for on in (True, False)}
    outs = {}

    def mixed_run(on):
        outs[on] = cb[on].generate(mixed_reqs)

    # 4: sample_rows on decode-step logits of args.prompts * args.n rows
    rows = args.prompts * args.n
    with torch.no_grad():
        step_ids = torch.tensor([p[:64] for p in prompts]).repeat_interleave(args.n, 0)
        kw = cache_arg(model)
        cache = out_cache(model(input_ids=step_ids, use_cache=True))
        logits = model(input_ids=step_ids[:, -1:], **{kw: cache}).logits[:, -1]
    gens = [torch.Generator().manual_seed(s) for s in range(rows)]

    def decode_step():
        with torch.no_grad():
            model(input_ids=step_ids[:, -1:], **{kw: cache})
            cache.crop(-1)

    def sampling():
        sample_rows(logits, 1.0, 0.95, gens)

    harness_shared()  # warm-up
    for on in (True, False):
        mixed_run(on)
    t = interleaved({"shared": harness_shared, "nrs": lambda: bare_generate(False), "rows": harness_rows,
                     "bare": lambda: bare_generate(True), "cb_on": lambda: mixed_run(True),
                     "cb_off": lambda: mixed_run(False), "step": decode_step, "sample": sampling}, args.repeats)
    same = all([c.token_ids for c in a] == [c.token_ids for c in b] for a, b in zip(outs[True], outs[False]))
    mixed_tokens = sum(len(c.token_ids) for o in outs[True] for c in o)
    print(f"work: {args.prompts} prompts x {args.n} samples x {args.new_tokens} new tokens "
          f"({total} tokens), prompt ~{sum(map(len, prompts)) // len(prompts)} tokens, arm {args.arm}, "
          f"{str(model.dtype).replace('torch.', '')}, {torch.get_num_threads()} threads, "
          f"{args.repeats} interleaved rounds")
    print(f"harness shared-prefix n-sampling : {t['shared']:7.2f} s  ({total / t['shared']:6.1f} tok/s)")
    print(f"generate(num_return_sequences=n) : {t['nrs']:7.2f} s  ({total / t['nrs']:6.1f} tok/s)")
    print(f"harness, one prefill per sample  : {t['rows']:7.2f} s  ({total / t['rows']:6.1f} tok/s)")
    print(f"bare generate, same rows         : {t['bare']:7.2f} s  ({total / t['bare']:6.1f} tok/s)")
    print(f"continuous batching on / off     : {t['cb_on']:7.2f} / {t['cb_off']:.2f} s ({len(mixed_reqs)} prompts x 4 "
          f"samples, {args.batch_rows} batch rows, {mixed_tokens} tokens; {cb[True].refills} refills; "
          f"same tokens: {same})")
    print(f"ratio 1, shared-prefix n-sampling speed-up over num_return_sequences: {t['nrs'] / t['shared']:.2f}x")
    print(f"ratio 2, harness decode-loop overhead (harness / bare generate, same rows): {t['rows'] / t['bare']:.2f}")
    print(f"ratio 3, continuous batching speed-up (off / on): {t['cb_off'] / t['cb_on']:.2f}x")
    print(f"ratio 4, sample_rows / one decode step ({rows} rows): {t['sample'] / t['step']:.3f}")


if __name__ == "__main__":
    main()
