"""Declarative export specs: one per exportable graph.

A spec names the graph's inputs and outputs with their shapes (symbolic ``"batch"`` axes are the
dynamic ones), generates dummy inputs for tracing and fresh ones for the parity check, and holds the
tolerance the exported graph must meet at each precision. The exporters do nothing model-specific
beyond building the torch module that the spec describes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from engines.base import EngineSpec, TensorSpec

PRECISIONS = ("fp32", "fp16", "int8")
BATCH = "batch"


@dataclass(frozen=True)
class Tolerance:
    """What an exported graph must achieve against the torch model (None: not checked).

    Attributes:
        min_cosine: smallest allowed cosine similarity between matching embedding rows.
        max_box_px: largest allowed box coordinate difference, in input pixels.
        max_score_abs: largest allowed class score difference.
    """

    min_cosine: float | None = None
    max_box_px: float | None = None
    max_score_abs: float | None = None


# Cosine of embeddings the issue requires per precision.
EMBEDDING_TOLERANCE = {
    "fp32": Tolerance(min_cosine=0.9999),
    "fp16": Tolerance(min_cosine=0.999),
    "int8": Tolerance(min_cosine=0.99),
}

# YOLO raw head outputs (boxes in input pixels, sigmoid class scores), among anchors that score > 0.05.
DETECTION_TOLERANCE = {
    "fp32": Tolerance(max_box_px=0.05, max_score_abs=1e-3),
    "fp16": Tolerance(max_box_px=2.0, max_score_abs=2e-2),
    "int8": Tolerance(max_box_px=16.0, max_score_abs=0.15),
}

DummyInputs = Callable[[int, np.random.Generator], dict[str, np.ndarray]]


@dataclass(frozen=True)
class ExportSpec:
    """One exportable graph.

    Attributes:
        graph: the graph's name in the manifest (``"vision"``, ``"text"``, ``"detector"``).
        inputs, outputs: tensors, with ``"batch"`` on the dynamic batch axis.
        dummy_inputs: ``(batch, rng) -> inputs``: valid random inputs of that batch size.
        tolerance: per precision, what the exported graph must achieve.
        max_batch: the largest batch the dynamic axis is declared for.
    """

    graph: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dummy_inputs: DummyInputs
    tolerance: Mapping[str, Tolerance] = field(default_factory=lambda: dict(EMBEDDING_TOLERANCE))
    max_batch: int = 1024

    @property
    def engine_spec(self) -> EngineSpec:
        return EngineSpec(self.inputs, self.outputs)

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """``{tensor: {axis: symbol}}`` of every symbolic axis, inputs and outputs."""
        return {
            t.name: {axis: str(t.shape[axis]) for axis in t.dynamic_axes}
            for t in (*self.inputs, *self.outputs)
        }

    def tolerance_for(self, precision: str) -> Tolerance:
        try:
            return self.tolerance[precision]
        except KeyError:
            raise ValueError(f"no {precision} tolerance for the {self.graph} graph") from None


def clip_vision_spec(image_size: int, embed_dim: int, max_batch: int = 1024) -> ExportSpec:
    """The image encoder: normalised pixels (B, 3, S, S) -> L2-normalised embeddings (B, D)."""

    def dummy(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        # Normalised pixels are roughly standard normal; clip to the range real images produce.
        pixels = rng.standard_normal((batch, 3, image_size, image_size)).astype(np.float32)
        return {"pixel_values": np.clip(pixels, -2.2, 2.7)}

    return ExportSpec(
        graph="vision",
        inputs=(TensorSpec("pixel_values", (BATCH, 3, image_size, image_size), "float32"),),
        outputs=(TensorSpec("image_embeds", (BATCH, embed_dim), "float32"),),
        dummy_inputs=dummy,
        max_batch=max_batch,
    )


def clip_text_spec(
    context_length: int,
    embed_dim: int,
    vocab_size: int,
    bos_token_id: int | None,
    eos_token_id: int,
    pad_token_id: int,
    with_attention_mask: bool = True,
    max_batch: int = 1024,
) -> ExportSpec:
    """The text encoder: token ids (B, L) [and mask] -> L2-normalised embeddings (B, D).

    Dummy sequences look like a tokenizer's output: [BOS] random tokens, EOS, padding.
    """
    special = {t for t in (bos_token_id, eos_token_id, pad_token_id) if t is not None}

    def dummy(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        ids = np.full((batch, context_length), pad_token_id, dtype=np.int64)
        mask = np.zeros((batch, context_length), dtype=np.int64)
        ordinary = np.array([t for t in range(vocab_size) if t not in special], dtype=np.int64)
        start = 1 if bos_token_id is not None else 0
        for row in range(batch):
            length = int(rng.integers(1, max(2, context_length - start)))
            if bos_token_id is not None:
                ids[row, 0] = bos_token_id
            ids[row, start : start + length - 1] = rng.choice(ordinary, size=length - 1)
            ids[row, start + length - 1] = eos_token_id
            mask[row, : start + length] = 1
        inputs = {"input_ids": ids}
        if with_attention_mask:
            inputs["attention_mask"] = mask
        return inputs

    inputs = [TensorSpec("input_ids", (BATCH, context_length), "int64")]
    if with_attention_mask:
        inputs.append(TensorSpec("attention_mask", (BATCH, context_length), "int64"))
    return ExportSpec(
        graph="text",
        inputs=tuple(inputs),
        outputs=(TensorSpec("text_embeds", (BATCH, embed_dim), "float32"),),
        dummy_inputs=dummy,
        max_batch=max_batch,
    )


def yolo_spec(imgsz: int, channels: int, anchors: int, max_batch: int = 64) -> ExportSpec:
    """An ultralytics detection head: letterboxed RGB in [0, 1] (B, 3, S, S) -> (B, 4 + classes, anchors)."""

    def dummy(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"images": rng.random((batch, 3, imgsz, imgsz), dtype=np.float32)}

    return ExportSpec(
        graph="detector",
        inputs=(TensorSpec("images", (BATCH, 3, imgsz, imgsz), "float32"),),
        outputs=(TensorSpec("output0", (BATCH, channels, anchors), "float32"),),
        dummy_inputs=dummy,
        tolerance=dict(DETECTION_TOLERANCE),
        max_batch=max_batch,
    )
