#!/usr/bin/env bash
# The GPU image's lock: requirements.in with onnxruntime -> onnxruntime-gpu[cuda,cudnn] (CUDA 12 and cuDNN 9
# come as PyPI wheels, so the python:3.11-slim base works on any node with an NVIDIA driver >= 550), resolved
# starting from requirements.lock's pins so the two images differ only where the GPU build needs it.
# Run after every change of requirements.in / requirements.lock:  deploy/docker/gpu-lock.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
grep -qx 'onnxruntime' requirements.in || { echo "requirements.in has no plain 'onnxruntime' line to swap" >&2; exit 1; }
{ echo "# GENERATED from requirements.in by deploy/docker/gpu-lock.sh: onnxruntime -> onnxruntime-gpu (CUDA 12 + cuDNN 9 from PyPI wheels)"
  sed 's/^onnxruntime$/onnxruntime-gpu[cuda,cudnn]/' requirements.in; } > deploy/docker/requirements-gpu.in
cp requirements.lock deploy/docker/requirements-gpu.lock  # preferences: keep the CPU lock's pins where possible
uv pip compile deploy/docker/requirements-gpu.in -o deploy/docker/requirements-gpu.lock --python-version 3.11 \
  --python-platform x86_64-manylinux_2_28
