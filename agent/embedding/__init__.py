"""CLIP crop and text embedding at the edge: preprocessing, tokenization and the encoder.

Runs exported graphs through :mod:`engines`; needs neither torch nor transformers.
"""

from agent.embedding.config import (
    EmbedderConfig,
    EngineConfig,
    OnnxRuntimeEngineConfig,
    TensorRTEngineConfig,
    TorchEngineConfig,
)
from agent.embedding.encoder import ClipEncoder, EncoderError, ModelInfo
from agent.embedding.preprocess import ImagePreprocessing, PreprocessError, crop_box
from agent.embedding.tokenizer import TextSettings, TextTokenizer, TokenizerError

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
