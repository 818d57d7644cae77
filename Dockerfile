# syntax=docker/dockerfile:1
# Watchword agent image.
#
# x86_64 with CUDA and TensorRT (the default base):
#   docker build -t watchword .
# Jetson (L4T / JetPack 6: CUDA, cuDNN, TensorRT and its Python bindings come with the base; the
# Jetson build of torch is installed from NVIDIA's index given as TORCH_INDEX):
#   docker build -t watchword:jetson \
#     --build-arg BASE_IMAGE=nvcr.io/nvidia/l4t-jetpack:r36.4.0 \
#     --build-arg EXTRAS=export,offline \
#     --build-arg TORCH_INDEX=https://pypi.jetson-ai-lab.dev/jp6/cu126 .
# Run (GPU, cameras on the host network, config, models and data from the host):
#   docker run --gpus all --network host -v $PWD/site:/config -v $PWD/models:/models \
#     -v $PWD/data:/data watchword
# TensorRT engines are built on the target at first start and cached (never shipped): point the
# engine's cache_dir (matching.embedder.engine.cache_dir) at /data/cache so they survive restarts.
ARG BASE_IMAGE=nvcr.io/nvidia/tensorrt:24.10-py3
FROM ${BASE_IMAGE}

ARG EXTRAS=gpu,export,offline
ARG TORCH_INDEX=
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    YOLO_OFFLINE=1

RUN apt-get update && apt-get install -y --no-install-recommends \
        gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
        gstreamer1.0-plugins-bad gstreamer1.0-libav gstreamer1.0-rtsp \
        gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-rtsp-server-1.0 \
        libgirepository1.0-dev libcairo2-dev pkg-config gcc python3-dev python3-pip \
        libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/watchword
COPY setup.py pyproject.toml README.md ./
COPY agent ./agent
COPY engines ./engines
COPY export ./export
COPY configs ./configs

RUN if [ -n "$TORCH_INDEX" ]; then python3 -m pip install --index-url "$TORCH_INDEX" torch torchvision; fi \
    && python3 -m pip install ".[${EXTRAS}]" \
    && watchword --version

VOLUME ["/config", "/models", "/data"]
EXPOSE 8080
ENTRYPOINT ["watchword"]
CMD ["run", "/config/site.yaml"]
