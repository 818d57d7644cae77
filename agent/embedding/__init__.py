"""CLIP crop and text embedding at the edge: preprocessing, tokenization and the encoder.

Runs exported graphs through :mod:`engines`; needs neither torch nor transformers.

Only the config is imported eagerly, so that ``agent.config`` can nest :class:`EmbedderConfig`
without loading OpenCV and the encoder (a run without CLIP never needs them); the other names load
on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.embedding.config import (
    EmbedderConfig,
    EngineConfig,
    OnnxRuntimeEngineConfig,
    TensorRTEngineConfig,
    TorchEngineConfig,
)
from agent.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from agent.embedding.encoder import ClipEncoder, EncoderError, ModelInfo
    from agent.embedding.preprocess import ImagePreprocessing, PreprocessError, crop_box
    from agent.embedding.tokenizer import TextSettings, TextTokenizer, TokenizerError

_LAZY = {
    "ClipEncoder": "agent.embedding.encoder",
    "EncoderError": "agent.embedding.encoder",
    "ModelInfo": "agent.embedding.encoder",
    "ImagePreprocessing": "agent.embedding.preprocess",
    "PreprocessError": "agent.embedding.preprocess",
    "crop_box": "agent.embedding.preprocess",
    "TextSettings": "agent.embedding.tokenizer",
    "TextTokenizer": "agent.embedding.tokenizer",
    "TokenizerError": "agent.embedding.tokenizer",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "ClipEncoder",
    "EmbedderConfig",
    "EncoderError",
    "EngineConfig",
    "ImagePreprocessing",
    "ModelInfo",
    "OnnxRuntimeEngineConfig",
    "PreprocessError",
    "TensorRTEngineConfig",
    "TextSettings",
    "TextTokenizer",
    "TokenizerError",
    "TorchEngineConfig",
    "crop_box",
]
