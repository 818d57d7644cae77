"""Tokenizing with the tokenizers package alone equals the transformers tokenizer used for tracing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.embedding.tokenizer import TextSettings, TextTokenizer, TokenizerError

TEXTS = [
    "a person falling down",
    "Someone   being HIT by a car door!",
    "",
    "a very long description of a person who walks and walks and walks across the whole car park at night",
    "naïve café 123",
]


def test_matches_the_transformers_tokenizer(clip_fp32: Path, tiny_clip_dir: Path) -> None:
    transformers = pytest.importorskip("transformers")
    settings = TextSettings.from_dict(json.loads((clip_fp32 / "model.json").read_text())["text"])
    tokenizer = TextTokenizer(clip_fp32 / "tokenizer.json", settings)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_clip_dir)
    reference = hf_tokenizer(
        TEXTS, padding="max_length", truncation=True, max_length=settings.context_length, return_tensors="np"
    )
    ours = tokenizer(TEXTS)
    assert ours["input_ids"].dtype == np.int64 and ours["input_ids"].shape == (
        len(TEXTS),
        settings.context_length,
    )
    np.testing.assert_array_equal(ours["input_ids"], reference["input_ids"])
    np.testing.assert_array_equal(ours["attention_mask"], reference["attention_mask"])
    # The truncated sequence still ends with the end-of-text token the text graph pools at.
    assert ours["attention_mask"][3].all() and ours["input_ids"][3, -1] == hf_tokenizer.eos_token_id
    assert ours["input_ids"][2, :2].tolist() == [hf_tokenizer.bos_token_id, hf_tokenizer.eos_token_id]


def test_a_single_string_is_refused(clip_fp32: Path) -> None:
    settings = TextSettings.from_dict(json.loads((clip_fp32 / "model.json").read_text())["text"])
    with pytest.raises(TypeError, match="list of texts"):
        TextTokenizer(clip_fp32 / "tokenizer.json", settings)("a person")


def test_bad_files_and_settings_are_refused(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(TokenizerError, match="cannot load tokenizer"):
        TextTokenizer(tmp_path / "tokenizer.json", TextSettings(77, 0, "<pad>"))
    with pytest.raises(TokenizerError, match="bad text settings"):
        TextSettings.from_dict({"context_length": 77})
