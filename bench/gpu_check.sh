#!/usr/bin/env bash
# TensorRT check for a machine with a CUDA GPU (x86 or Jetson): builds FP16 engines for a ViT-B/16-sized
# CLIP image encoder and a YOLOv8n-sized detector, checks them against ONNX Runtime, confirms the
# engine cache hits on a second load, and times batches of 1, 8 and 32. Bounded to 8 minutes.
#
# Then runs the gpu/trt-marked detector tests, bench/gpu_int8_check.py (the SSD's INT8 QDQ graph as a
# TensorRT engine: people against fp32, batch timings) and bench/nvdec_check.py (NVDEC vs software).
#
#   bench/gpu_check.sh [--keep DIR] [--only clip|yolo]
#
# Needs the watchword[trt,export] extras (tensorrt, cuda-python, torch, transformers, onnx, ultralytics).
# Exit status: 0 pass, 1 a check failed, 2 no TensorRT or GPU here, 124 the 8-minute limit was hit.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
LIMIT_S="${GPU_CHECK_LIMIT_S:-480}"

if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
elif [ -e /etc/nv_tegra_release ]; then
    head -n 1 /etc/nv_tegra_release || true
fi
"$PYTHON" - <<'PY' || exit 2
import importlib.util, sys
missing = [m for m in ("tensorrt", "onnxruntime", "torch", "transformers", "ultralytics", "onnx") if importlib.util.find_spec(m) is None]
if missing:
    print("gpu_check: missing Python packages:", ", ".join(missing), "(pip install 'watchword[trt,export]')")
    sys.exit(1)
PY
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=0 PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
status=0
timeout --signal=TERM --kill-after=15 "$LIMIT_S" "$PYTHON" bench/gpu_check.py "$@" || status=$?
# The detector on the GPU (CUDA provider, a TensorRT engine built and cached here) and NVDEC decoding.
timeout --signal=TERM --kill-after=15 300 "$PYTHON" -m pytest -q -m "gpu or trt" -rs \
    tests/agent/detection/test_yolo_gpu.py tests/engines/test_engine_tensorrt.py || status=1
timeout --signal=TERM --kill-after=15 300 "$PYTHON" -m bench.gpu_int8_check || { rc=$?; [ "$rc" -eq 2 ] || status=1; }
timeout --signal=TERM --kill-after=15 300 "$PYTHON" -m bench.nvdec_check || { rc=$?; [ "$rc" -eq 2 ] || status=1; }
exit "$status"
