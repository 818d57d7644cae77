"""Text tokenization for an exported CLIP/SigLIP text encoder, with the ``tokenizers`` package only.

The exporter saves the model's fast tokenizer as ``tokenizer.json`` and records in ``model.json`` how
the text graph expects its input: a fixed context length, the padding token, and whether the graph
takes an attention mask. Sequences are truncated and padded to the context length exactly as the
``transformers`` tokenizer does with ``padding="max_length", truncation=True``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


class TokenizerError(ValueError):
    """A tokenizer file or settings that cannot be used."""


@dataclass(frozen=True)
class TextSettings:
    """How the exported text graph expects its tokens (the ``text`` section of ``model.json``).

    Attributes:
        context_length: tokens per sequence (the graph's fixed sequence axis).
        pad_token_id: id written after the end of each sequence.
        pad_token: the padding token's text.
    """

    context_length: int
    pad_token_id: int
    pad_token: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TextSettings:
        try:
            return cls(int(data["context_length"]), int(data["pad_token_id"]), str(data["pad_token"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise TokenizerError(f"bad text settings {dict(data)}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return {
            "context_length": self.context_length,
            "pad_token_id": self.pad_token_id,
            "pad_token": self.pad_token,
        }


class TextTokenizer:
    """Turns texts into fixed-length ``input_ids`` and ``attention_mask`` arrays for the text graph."""

    def __init__(self, tokenizer_file: str | Path, settings: TextSettings) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise TokenizerError(
                f"text tokenization needs the tokenizers package: pip install watchword ({exc})"
            ) from exc
        path = Path(tokenizer_file)
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises its own exception type for bad files
            raise TokenizerError(f"cannot load tokenizer {path}: {exc}") from exc
        tokenizer.enable_truncation(max_length=settings.context_length)
        tokenizer.enable_padding(
            direction="right",
            pad_id=settings.pad_token_id,
            pad_token=settings.pad_token,
            length=settings.context_length,
        )
        self.settings = settings
        self._tokenizer = tokenizer

    @property
    def context_length(self) -> int:
        return self.settings.context_length

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Tokenize ``texts``.

        Returns:
            ``input_ids`` and ``attention_mask``, each an (N, context_length) int64 array.
        """
        if isinstance(texts, str):
            raise TypeError("pass a list of texts, not a single string")
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=True)
        ids = np.array([e.ids for e in encodings], dtype=np.int64).reshape(
            len(encodings), self.context_length
        )
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64).reshape(ids.shape)
        return {"input_ids": ids, "attention_mask": mask}
