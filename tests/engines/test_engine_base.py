"""The engine interface: specs check inputs, the registry creates backends by kind and refuses the unknown."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engines import EngineError, EngineSpec, InputError, TensorSpec, create_engine, engine_kinds

SPEC = EngineSpec(
    inputs=(
        TensorSpec("pixel_values", ("batch", 3, 8, 8), "float32"),
        TensorSpec("ids", ("batch", 4), "int64"),
    ),
    outputs=(TensorSpec("embeds", ("batch", 16), "float32"),),
)


def test_dummy_inputs_follow_the_spec() -> None:
    dummy = SPEC.dummy_inputs(3)
    assert dummy["pixel_values"].shape == (3, 3, 8, 8) and dummy["pixel_values"].dtype == np.float32
    assert dummy["ids"].shape == (3, 4) and dummy["ids"].dtype == np.int64
    SPEC.check_inputs(dummy)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"pixel_values": np.zeros((1, 3, 8, 8), np.float32)}, "missing ['ids']"),
        (
            {"pixel_values": np.zeros((1, 3, 8, 8), np.float64), "ids": np.zeros((1, 4), np.int64)},
            "expected dtype float32",
        ),
        (
            {"pixel_values": np.zeros((1, 3, 9, 8), np.float32), "ids": np.zeros((1, 4), np.int64)},
            "axis 2 must be 8",
        ),
        (
            {"pixel_values": np.zeros((3, 8, 8), np.float32), "ids": np.zeros((1, 4), np.int64)},
            "expected 4 dimensions",
        ),
        (
            {
                "pixel_values": np.zeros((1, 3, 8, 8), np.float32),
                "ids": np.zeros((1, 4), np.int64),
                "extra": np.zeros(1),
            },
            "unknown ['extra']",
        ),
    ],
)
def test_spec_refuses_inputs_that_do_not_fit(inputs: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        SPEC.check_inputs(inputs)


def test_spec_round_trips_through_json_dicts() -> None:
    assert EngineSpec.from_dict(SPEC.to_dict()) == SPEC
    assert SPEC.input("ids").dynamic_axes == (0,)


def test_registry_knows_the_three_backends_and_refuses_others(tmp_path: Path) -> None:
    assert {"onnxruntime", "tensorrt", "torch"} <= set(engine_kinds())
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not used")
    with pytest.raises(EngineError, match="unknown engine kind 'openvino'"):
        create_engine("openvino", model)


def test_create_engine_names_a_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match=r"model file not found: .*absent\.onnx"):
        create_engine("onnxruntime", tmp_path / "absent.onnx")


def test_importing_engines_loads_no_runtime() -> None:
    import subprocess
    import sys

    code = (
        "import sys, engines; "
        "heavy = ('onnxruntime', 'tensorrt', 'torch', 'agent', 'export'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
