#!/usr/bin/env bash
# SD2 stitched-sampler throughput vs diffusers' StableDiffusionPipeline on random weights (no download).
# One CUDA GPU: SD2's real widths at 512x512, fp16, within 5 minutes. Without a GPU: the tiny model on the CPU.
# Usage: benchmarks/gpu_check.sh [--batch B] [--steps N] [--repeats R]   (PYTHON=... to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export HF_HUB_OFFLINE=1 PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'cpu')"
exec timeout 290 "$PY" benchmarks/sd2_throughput.py "$@"
