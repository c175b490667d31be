#!/usr/bin/env bash
# The GPU check (docs/CLUSTER.md "GPUs"), every number from one run (benchmarks/gpu_check.py): the tiny random-weight SD2
# sweep through the real stages on the GPU; stitched-sampler throughput vs diffusers' StableDiffusionPipeline
# (SD2's real widths at 512x512, fp16; k = 0 and the LoRA on for the first N/2 steps); fine-tuning step time with
# and without bf16; the digits_t2i stages on the GPU vs the CPU. One CUDA GPU: within 5 minutes. Without a GPU:
# small sizes on the CPU (the GPU-only numbers read n/a).
# Usage: benchmarks/gpu_check.sh [--repeats R] [--out DIR]   (PYTHON=... to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export HF_HUB_OFFLINE=1 PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'cpu')"
exec timeout 300 "$PY" benchmarks/gpu_check.py "$@"
