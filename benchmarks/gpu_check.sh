#!/usr/bin/env bash
# The GPU figures in one go, in under 8 minutes on one H100/H200, with only torch + transformers
# (plus the small pure-Python packages the harness imports: click, pluggy, tqdm; put them on
# PYTHONPATH, e.g. `pip install --target .gpu_deps click pluggy tqdm` on a machine with network and
# carry .gpu_deps). Random-init Qwen3-0.6B shape with Qwen3's full vocabulary: no weights, no network.
#
#   bash benchmarks/gpu_check.sh                 # CUDA
#   PRESET=tiny-qwen3 DEVICE=cpu PROMPTS=2 TOKENS=16 bash benchmarks/gpu_check.sh   # a smoke run anywhere
#
# Prints: generated tok/s of the hf backend on the reasoning and probe workloads with continuous
# batching on and off (bf16), the RLMT loss pass with and without the shared prompt forward (and
# its agreement with a float64 forward), and the time of RLMT steps.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}${GPU_DEPS:+:$GPU_DEPS}"
[ -d .gpu_deps ] && export PYTHONPATH="$PYTHONPATH:$PWD/.gpu_deps"
PY=${PYTHON:-python}
PRESET=${PRESET:-qwen3-0.6b}
DEVICE=${DEVICE:-cuda}
PROMPTS=${PROMPTS:-64}
TOKENS=${TOKENS:-512}
status=0
echo "== generation: hf backend, continuous batching on (shared_prefix) and off (shared_prefix_static)"
timeout 330 "$PY" benchmarks/gpu_throughput.py --preset "$PRESET" --device "$DEVICE" --dtype bfloat16 \
    --prompts "$PROMPTS" --reasoning-tokens "$TOKENS" --workloads reasoning,probe \
    --strategies shared_prefix,shared_prefix_static || status=1
echo "== RLMT loss forward (shared prompt forward vs per-rollout rows; float64 check)"
timeout 90 "$PY" benchmarks/loss_forward.py --arm "random:$PRESET" --device "$DEVICE" || status=1
echo "== RLMT steps"
timeout 90 "$PY" benchmarks/training_steps.py --arm "random:$PRESET" --device "$DEVICE" --stages rlmt --steps 2 \
    --judge keyword || status=1
exit $status
