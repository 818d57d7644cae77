"""The packaged cue-phrase embeddings: they are what the installed model gives, a first start maps its
queries without embedding the phrases, and a bank of another model is never used."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from agent.pose.phrase_bank import BANK, packaged_vectors, vocabulary_texts, write_bank
from agent.pose.sentence import OnDemandSentenceEmbedder, SentenceEmbedder, inspect_model
from agent.pose.text_cache import text_cache_path
from agent.pose.vocabulary import CueVocabulary

REMAKE = "the packaged phrase bank is stale: run `python -m agent.pose.phrase_bank` and commit it"


def test_the_packaged_bank_holds_every_cue_phrase_as_the_installed_model_embeds_it(
    sentence_embedder: SentenceEmbedder,
) -> None:
    """Fails when the phrases or the locked model change without the bank being made again."""
    bank = packaged_vectors(inspect_model().version)
    assert set(bank) == set(vocabulary_texts()), REMAKE
    texts = vocabulary_texts()
    cosines = np.sum(np.stack([bank[t] for t in texts]) * sentence_embedder.embed(texts), axis=1)
    assert cosines.min() > 0.99999, REMAKE


def test_a_first_start_embeds_only_the_query_texts_that_are_not_cue_phrases(tmp_path: Path) -> None:
    embedder = OnDemandSentenceEmbedder(cache_path=text_cache_path(tmp_path), packaged=packaged_vectors)
    vocabulary = CueVocabulary({"minilm": embedder})  # every cue phrase: from the bank
    assert embedder.loads == 0 and not text_cache_path(tmp_path).exists()
    assert vocabulary.map("a person running").cue == "running"  # a cue phrase itself: no model either
    assert embedder.loads == 0
    assert vocabulary.map("somebody collapsing onto the floor").cue == "fall"
    assert embedder.loads == 1 and text_cache_path(tmp_path).is_file()


def test_a_bank_of_another_model_or_a_broken_one_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert packaged_vectors("0123456789abcdef", BANK) == {}
    broken = tmp_path / "bank.npz"
    broken.write_bytes(b"not a bank")
    with caplog.at_level(logging.WARNING, logger="agent.pose.phrase_bank"):
        assert packaged_vectors(inspect_model().version, broken) == {}
    assert any("does not load" in r.getMessage() for r in caplog.records)


def test_the_bank_is_made_from_the_vocabulary_with_the_model_version(tmp_path: Path) -> None:
    made = write_bank(tmp_path / "bank.npz")
    version = inspect_model().version
    with np.load(made, allow_pickle=False) as bank:
        assert str(bank["version"]) == version and list(bank["texts"]) == vocabulary_texts()
    np.testing.assert_allclose(
        np.stack(list(packaged_vectors(version, made).values())),
        np.stack([packaged_vectors(version)[t] for t in vocabulary_texts()]),
        atol=1e-6,
    )
