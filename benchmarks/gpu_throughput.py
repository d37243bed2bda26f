"""Generated tokens per second of the HF backend's batching strategies, measured in one run.

    python benchmarks/gpu_throughput.py                      # CUDA, random-init Qwen3-0.6B shape
    python benchmarks/gpu_throughput.py --preset tiny-qwen3 --prompts 2 --device cpu   # smoke run

The model is a random-init Qwen3-0.6B-shaped model with Qwen3's full 151,936-token vocabulary (no
weights needed: the LM head's cost is real). Prompts are seeded random token ids; EOS is never
sampled on purpose, so every sample runs to its token limit and tok/s compare like for like.
Workloads:

- ``reasoning``: ``--prompts`` problems of 160 prompt tokens x 8 samples x 512 new tokens;
- ``probe``: ``--prompts`` prefixes of 384 tokens x 16 samples: a 48-token thought, then a
  128-token suffix from prefix + thought + close tag (the reward gate's two stages).

Strategies (a strategy that fails, e.g. continuous batching on a CPU build, is reported as such):

- ``padded``: ``model.generate`` on a left-padded batch with ``num_return_sequences``;
- ``shared_prefix``: the harness's ``hf`` backend (prefill once, expand the KV cache per sample,
  finished rows leave the batch and pending prompts refill it: continuous batching) — what runs use;
- ``shared_prefix_static``: the same with continuous batching off (a batch runs until its last row);
- ``static_compile``: ``model.generate`` with a static cache and ``torch.compile``;
- ``continuous``: transformers' continuous batching (``model.generate_batch``).

Each cell is one timed pass after an untimed warm-up pass on a small slice of the workload.
"""

from __future__ import annotations

import argparse
import json
import random
import time

QWEN3_VOCAB = 151_936


class IdTokenizer:
    """A stand-in tokenizer for random ids (throughput only): decode maps ids to bytes."""

    def __init__(self, vocab: int):
        self.pad_token_id = vocab - 1
        self.eos_token_id = None  # no EOS: every sample runs to its limit

    def decode(self, ids, skip_special_tokens=True):
        return bytes(i % 95 + 32 for i in ids).decode()

    def __len__(self):
        return self.pad_token_id + 1


def build_model(preset: str, device: str, dtype: str):
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    from harness.modelspec import RANDOM_PRESETS

    vocab = QWEN3_VOCAB if preset == "qwen3-0.6b" else 1024
    cfg = Qwen3Config(vocab_size=vocab, max_position_embeddings=4096, tie_word_embeddings=True,
                      eos_token_id=vocab - 2, pad_token_id=vocab - 1, bos_token_id=None, **RANDOM_PRESETS[preset])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).to(device=device, dtype=getattr(torch, dtype)).eval()
    # never sample EOS: every sample runs to the limit, so strategies compare on equal work
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = vocab - 1
    return model, IdTokenizer(vocab)


def prompts(n: int, length: int, vocab: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(vocab - 2) for _ in range(length)] for _ in range(n)]


# -- strategies: each takes (model, tok, device, prompts, n, max_new_tokens) -> generated tokens --
def run_shared_prefix(model, tok, device, batch, n, new, top_p=0.95, continuous=True):
    from harness.types import Arm, GenRequest
    from plugins.backends.hf import HFBackend

    arm = Arm(name="bench", model="random:bench", options={"batch_rows": 512, "continuous_batching": continuous})
    backend = HFBackend.from_loaded(arm, model, tok, device)
    backend.eos_ids  # noqa: B018  (resolves once)
    reqs = [GenRequest(p, n=n, seeds=list(range(k * n, (k + 1) * n)), max_new_tokens=new, temperature=1.0,
                       top_p=top_p) for k, p in enumerate(batch)]
    outs = backend.generate(reqs)
    return [[c.token_ids for c in o] for o in outs]


def _padded(model, tok, device, batch, n, new, **gen_kwargs):
    import torch

    width = max(len(p) for p in batch)
    ids = torch.full((len(batch), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, p in enumerate(batch):
        ids[b, width - len(p):] = torch.tensor(p)
        mask[b, width - len(p):] = 1
    with torch.no_grad():
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=True, top_p=0.95,
                             temperature=1.0, top_k=0, max_new_tokens=new, min_new_tokens=new,
                             num_return_sequences=n, **gen_kwargs)
    gen = out[:, width:].tolist()
    return [gen[k * n:(k + 1) * n] for k in range(len(batch))]


def run_padded(model, tok, device, batch, n, new):
    return _padded(model, tok, device, batch, n, new)


def run_static_compile(model, tok, device, batch, n, new):
    return _padded(model, tok, device, batch, n, new, cache_implementation="static")


def run_continuous(model, tok, device, batch, n, new):
    from transformers import GenerationConfig

    cfg = GenerationConfig(max_new_tokens=new, do_sample=True, top_p=0.95, temperature=1.0, top_k=0,
                           num_return_sequences=n, eos_token_id=None, pad_token_id=tok.pad_token_id)
    results = model.generate_batch(inputs=batch, generation_config=cfg)
    toks = [r.generated_tokens for r in results.values()]
    return [toks[k * n:(k + 1) * n] for k in range(len(batch))]


def run_shared_prefix_static(model, tok, device, batch, n, new):
    return run_shared_prefix(model, tok, device, batch, n, new, continuous=False)


STRATEGIES = {"padded": run_padded, "shared_prefix": run_shared_prefix,
              "shared_prefix_static": run_shared_prefix_static, "static_compile": run_static_compile,
              "continuous": run_continuous}


def workload(name, fn, model, tok, device, args):
    """(generated tokens, seconds) of one workload with one strategy."""
    import torch

    vocab = len(tok)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    if name == "reasoning":
        batch = prompts(args.prompts, 160, vocab, 1)
        sync()
        t0 = time.perf_counter()
        outs = fn(model, tok, device, batch, 8, args.reasoning_tokens)
        sync()
        return sum(len(s) for o in outs for s in o), time.perf_counter() - t0
    batch = prompts(args.prompts, 384, vocab, 2)
    close = [vocab - 3]
    sync()
    t0 = time.perf_counter()
    thoughts = fn(model, tok, device, batch, 16, 48)
    stage2 = [p + list(t) + close for p, ts in zip(batch, thoughts) for t in ts]
    suffixes = fn(model, tok, device, stage2, 1, 128)
    sync()
    return sum(len(s) for o in thoughts for s in o) + sum(len(s) for o in suffixes for s in o), \
        time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="qwen3-0.6b", help="random-init shape: qwen3-0.6b or tiny-qwen3")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--prompts", type=int, default=64, help="problems (reasoning) / prefixes (probe)")
    ap.add_argument("--reasoning-tokens", type=int, default=512)
    ap.add_argument("--workloads", default="reasoning,probe")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    args = ap.parse_args()
    import torch

    model, tok = build_model(args.preset, args.device, args.dtype)
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    rows = []
    for strategy in args.strategies.split(","):
        fn = STRATEGIES[strategy]
        if strategy == "static_compile":
            model.forward = torch.compile(model.forward, mode="reduce-overhead", dynamic=False)
        for wl in args.workloads.split(","):
            small = argparse.Namespace(**{**vars(args), "prompts": max(1, args.prompts // 8),
                                          "reasoning_tokens": min(32, args.reasoning_tokens)})
            try:
                workload(wl, fn, model, tok, args.device, small)  # warm-up (compiles, allocator)
                tokens, secs = workload(wl, fn, model, tok, args.device, args)
                row = {"strategy": strategy, "workload": wl, "tokens": tokens, "seconds": round(secs, 2),
                       "tok_per_s": round(tokens / secs, 1)}
            except Exception as exc:  # report a strategy that cannot run here, keep measuring the rest
                row = {"strategy": strategy, "workload": wl, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            rows.append(row)
            print(json.dumps(row), flush=True)
        if strategy == "static_compile":
            model.forward = model.forward._orig_mod if hasattr(model.forward, "_orig_mod") else model.forward
    print(f"\n{args.preset} (random init, vocab {len(tok)}), {args.dtype} on {device_name}; "
          f"{args.prompts} prompts per workload\n")
    print("| strategy | workload | generated tokens | seconds | tok/s |")
    print("| --- | --- | ---: | ---: | ---: |")
    for r in rows:
        if "error" in r:
            print(f"| {r['strategy']} | {r['workload']} | - | - | failed: {r['error'][:80]} |")
        else:
            print(f"| {r['strategy']} | {r['workload']} | {r['tokens']} | {r['seconds']} | {r['tok_per_s']:.0f} |")


if __name__ == "__main__":
    main()
