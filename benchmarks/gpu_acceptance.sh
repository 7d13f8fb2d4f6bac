#!/usr/bin/env bash
# Issue 14's GPU acceptance in one run, one JSON (see benchmarks/gpu_acceptance.py):
#   benchmarks/gpu_acceptance.sh [OUT.json]          # GPU: 7B-shape step cost + memory, fidelity; < 10 min
#   benchmarks/gpu_acceptance.sh --cpu [OUT.json]    # tiny shape on CPU (what CI runs)
# Exit 0 when every fidelity check passes and every step-cost configuration ran; 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=gpu
if [[ "${1:-}" == "--cpu" ]]; then mode=cpu; shift; fi
out="${1:-gpu_acceptance.json}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [[ "$mode" == cpu ]]; then export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"; fi
exec "${PYTHON:-python}" benchmarks/gpu_acceptance.py --mode "$mode" --out "$out"
