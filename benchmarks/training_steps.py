"""Per-step time of each training stage at the reference settings, measured in one process.

    python benchmarks/training_steps.py --arm smollm2-135m --steps 3
    python benchmarks/training_steps.py --arm random:qwen3-0.6b --stages rlmt --device cuda

Each stage runs ``--steps`` optimiser steps into a temporary directory with its defaults
(DPO: 4 prefixes x 16 rollouts x 128 tokens, all 136 pairs per prefix judged; SFT: 8 rows of up
to 1024 tokens; RLMT: 2 prefixes x 16 samples of 48 thought + 128 suffix tokens) and the
stage's metrics give the time per step, split into generation, judging and the update. The
first step is reported apart (it includes warm-up). Each stage runs in its own process, so the
peak memory (accelerator memory, or the process's peak resident set on CPU) is its own. ``--judge`` picks RLMT's judge and
``--pair-judge`` DPO's (``keyword`` keeps the judge's cost out of the figures).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_stage(stage: str, args, out: Path) -> dict:
    from training import dpo, rlmt, sft
    from training.common import Setup

    setup = Setup(arm=args.arm, out=str(out), device=args.device, save_every=0, log_every=0)
    toy = {"words": "the", "match": "word"}
    t0 = time.perf_counter()
    if stage == "dpo":
        opts = toy if args.pair_judge == "keyword" else dict(kv.split("=", 1) for kv in args.pair_judge_option)
        dpo.train(setup, dpo.DPOConfig(steps=args.steps, judge=args.pair_judge, eval_prefixes=4), opts)
    elif stage == "sft":
        sft.train(setup, sft.SFTConfig(steps=args.steps, rep_samples=0))
    else:
        opts = toy if args.judge == "keyword" else {}
        rlmt.train(setup, rlmt.RLMTConfig(steps=args.steps, judge=args.judge), opts)
    wall = time.perf_counter() - t0
    m = json.loads((out / "metrics.json").read_text())
    steps = m["steps"]
    later = steps[1:] or steps
    row = {"stage": stage, "steps": len(steps), "first_step_s": steps[0]["step_s"],
           "step_s": statistics.mean(s["step_s"] for s in later), "wall_s": wall,
           "device": m["summary"]["device"], "peak_memory_gib": m["summary"]["peak_memory_gib"]}
    for part in ("generate_s", "judge_s"):
        if part in later[0]:
            row[part] = statistics.mean(s[part] for s in later)
    if stage == "sft":
        row["throughput_tok_s"] = m["summary"]["throughput_tok_s"]
    else:
        row["generated_tok_per_step"] = statistics.mean(s["generated_tokens"] for s in later)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arm", default="smollm2-135m")
    ap.add_argument("--stages", default="dpo,sft,rlmt")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--judge", default="embedding", help="RLMT judge (embedding, keyword, ...)")
    ap.add_argument("--pair-judge", default="keyword", help="DPO pairwise judge (keyword or llm)")
    ap.add_argument("--pair-judge-option", action="append", default=[], help="KEY=VALUE for the DPO judge")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one stage in this process
    args = ap.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as tmp:
            print("RESULT " + json.dumps(run_stage(args.one, args, Path(tmp) / args.one)), flush=True)
        return
    rows = []
    for stage in args.stages.split(","):  # one process per stage: its own peak memory
        cmd = [sys.executable, __file__, "--one", stage] + [a for a in sys.argv[1:]]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        found = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not found:
            sys.exit(f"{stage} failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(found[-1][7:]))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\narm {args.arm}, {args.steps} steps per stage (mean over steps after the first)\n")
    print("| stage | device | first step s | step s | generate s | judge s | peak GiB | other |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        other = (f"{r['throughput_tok_s']:.0f} train tok/s" if "throughput_tok_s" in r
                 else f"{r['generated_tok_per_step']:.0f} generated tok/step")
        print(f"| {r['stage']} | {r['device']} | {r['first_step_s']:.2f} | {r['step_s']:.2f} | "
              f"{r.get('generate_s', 0):.2f} | {r.get('judge_s', 0):.2f} | {r['peak_memory_gib']:.2f} | {other} |")


if __name__ == "__main__":
    main()
