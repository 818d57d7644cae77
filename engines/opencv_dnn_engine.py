"""OpenCV DNN backend: a TensorFlow frozen graph (or any model OpenCV reads) behind the engine interface.

The offline SSD MobileNet detector runs here, so it shares the engines' timing, warm-up and close
with every other model. The input is one NCHW float32 blob; the outputs are the net's unconnected
output layers, by name.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from engines.base import Engine, EngineError, EngineSpec, TensorSpec, register_engine


@register_engine("opencv-dnn")
class OpenCvDnnEngine(Engine):
    """``cv2.dnn.Net`` on the CPU.

    Args:
        path: the model file (a TensorFlow ``.pb`` frozen graph).
        config: the model's text graph (``.pbtxt``) where the framework needs one.
        input_name: the name given to the input blob in the spec.
        input_size: the blob's height and width in pixels (the warm-up uses it).
        output_shape: the shape of the (first) output, ``-1`` for axes that depend on the batch.
        warmup: run one inference at construction.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        config: str | Path | None = None,
        input_name: str = "blob",
        input_size: int = 300,
        output_shape: tuple[int | str, ...] = (1, 1, -1, 7),
        warmup: bool = True,
    ) -> None:
        import cv2

        path = Path(path)
        started = time.perf_counter()
        try:
            net = cv2.dnn.readNet(str(path), str(config) if config is not None else "")
        except cv2.error as exc:
            detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise EngineError(
                f"cannot load {path}{f' with {Path(config).name}' if config else ''} in OpenCV DNN: the file "
                f"is corrupt or not a model OpenCV reads ({detail})"
            ) from exc
        if net.empty():
            raise EngineError(f"OpenCV DNN read an empty network from {path}")
        names = tuple(str(name) for name in net.getUnconnectedOutLayersNames())
        spec = EngineSpec(
            inputs=(TensorSpec(input_name, ("batch", 3, input_size, input_size), "float32"),),
            outputs=tuple(TensorSpec(name, output_shape, "float32") for name in names),
        )
        super().__init__(f"opencv-dnn({path.name}, OpenCV {cv2.__version__})", spec)
        self._cv2 = cv2
        self._net: cv2.dnn.Net | None = net
        self.timings.load_s = time.perf_counter() - started
        if warmup:
            self._warm_up(1)

    def _infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._net is None:
            raise EngineError(f"{self.name} is closed")
        self._net.setInput(inputs[self.spec.inputs[0].name])
        try:
            values = self._net.forward(list(self.spec.output_names))
        except self._cv2.error as exc:
            raise EngineError(f"{self.name} failed: {str(exc).strip()}") from exc
        return {name: np.asarray(value) for name, value in zip(self.spec.output_names, values, strict=True)}

    def _release(self) -> None:
        self._net = None
