"""The torch backend: the exporter's eager reference, and saved .pt2 programs as a fallback runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engines import EngineError, EngineSpec, TensorSpec, create_engine
from engines.torch_engine import TorchEngine, save_program

pytest.importorskip("torch")
import torch

SPEC = EngineSpec((TensorSpec("x", ("batch", 6), "float32"),), (TensorSpec("y", ("batch", 3), "float32"),))


class Linear(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(6, 3)

    def forward(self, x: Any) -> Any:
        return self.fc(x)


def test_module_engine_matches_the_module() -> None:
    module = Linear().eval()
    engine = TorchEngine.from_module(module, SPEC)
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(engine.infer({"x": x})["y"], expected, rtol=1e-6)


def test_saved_program_loads_with_its_spec(tmp_path: Path) -> None:
    module = Linear().eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(module, (torch.zeros(2, 6),), dynamic_shapes={"x": {0: batch}})
    path = save_program(program, SPEC, tmp_path / "linear.pt2")
    with create_engine("torch", path) as engine:
        assert engine.spec == SPEC
        x = np.random.default_rng(1).standard_normal((5, 6)).astype(np.float32)
        with torch.no_grad():
            np.testing.assert_allclose(
                engine.infer({"x": x})["y"], module(torch.from_numpy(x)).numpy(), rtol=1e-5
            )


def test_a_broken_program_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.pt2"
    path.write_bytes(b"not a zip archive")
    with pytest.raises(EngineError, match=r"cannot load torch program .*broken\.pt2"):
        create_engine("torch", path)
