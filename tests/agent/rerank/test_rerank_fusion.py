"""Blank agreement (exact, synonym, embedding-calibrated, UNKNOWN) and the fused score."""

from __future__ import annotations

import numpy as np
import pytest

from agent.rerank.config import FusionWeights
from agent.rerank.fusion import (
    AgreementScorer,
    BlankAgreement,
    LexicalEmbedder,
    cloze_score,
    fuse,
    lmm_support,
)
from agent.rerank.lexicon import Category, vocabulary


def test_lexical_embedder_is_normalised_and_sees_spelling() -> None:
    vectors = LexicalEmbedder()(["falling", "falls", "bicycle", "falling"])
    assert vectors.shape == (4, 2048) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    assert vectors[0] @ vectors[3] == pytest.approx(1.0)
    assert vectors[0] @ vectors[1] > 0.3 > vectors[0] @ vectors[2]


def test_exact_lemma_synonym_and_unknown() -> None:
    scorer = AgreementScorer()
    results = scorer.score(
        [
            ("falls", "fell", Category.ACTION),
            ("bicycle", "a bike", Category.OBJECT),
            ("gray", "grey", Category.COLOUR),
            ("jacket", None, Category.CLOTHING),
        ]
    )
    assert [(r.agreement, r.how) for r in results] == [
        (1.0, "same word"),
        (1.0, "synonym"),
        (1.0, "synonym"),
        (None, "unknown"),
    ]


class TableEmbedder:
    """A text embedder with hand-set vectors: 'red' and 'crimson' close, all other colours orthogonal-ish."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        colours = list(vocabulary(Category.COLOUR))
        self.index = {word: i for i, word in enumerate([*colours, "crimson", "scarlet"])}

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        vectors = np.zeros((len(texts), len(self.index) + 1), np.float32)
        for row, text in enumerate(texts):
            vectors[row, self.index[text]] = 1.0
            vectors[row, -1] = 0.5  # a shared component: every pair has cosine 0.2
        if "crimson" in texts or "red" in texts:
            for row, text in enumerate(texts):
                if text in {"crimson", "red"}:
                    vectors[row, self.index["red"]] = 1.0  # crimson sits right on red
        return vectors


def test_embedding_agreement_is_calibrated_against_the_category() -> None:
    embedder = TableEmbedder()
    scorer = AgreementScorer(embedder)
    crimson, blue = scorer.score([("red", "crimson", Category.COLOUR), ("red", "blue", Category.COLOUR)])
    # baseline: cosine of red to other colours = 0.25 / 1.25 = 0.2
    assert blue.baseline == pytest.approx(0.2, abs=1e-6)
    assert blue.similarity == pytest.approx(0.2, abs=1e-6)
    assert blue.agreement == pytest.approx(0.0, abs=1e-6)
    assert crimson.similarity is not None and crimson.baseline is not None
    assert crimson.similarity > 0.6
    expected = (crimson.similarity - crimson.baseline) / (1 - crimson.baseline)
    assert crimson.agreement == pytest.approx(expected)
    assert crimson.how == "embedding"
    # embeddings are cached: scoring again embeds nothing new
    calls = len(embedder.calls)
    scorer.score([("red", "blue", Category.COLOUR)])
    assert len(embedder.calls) == calls


def test_cloze_score_is_the_mean_over_answered_blanks_and_none_without_any() -> None:
    known = BlankAgreement(None, None, 1.0, "same word")
    wrong = BlankAgreement(0.1, 0.2, 0.0, "embedding")
    unknown = BlankAgreement(None, None, None, "unknown")
    assert cloze_score([known, unknown]) == pytest.approx(1.0)
    assert cloze_score([known, wrong, unknown, unknown]) == pytest.approx(0.5)
    assert cloze_score([unknown, unknown]) is None
    assert cloze_score([]) is None


def test_fuse_renormalises_over_what_was_answered() -> None:
    weights = FusionWeights(coarse=0.5, cloze=0.3, verdict=0.2)
    assert fuse(0.8, 1.0, 1.0, weights) == pytest.approx(0.5 * 0.8 + 0.3 + 0.2)
    assert fuse(0.8, 0.5, None, weights) == pytest.approx((0.5 * 0.8 + 0.3 * 0.5) / 0.8)
    assert fuse(0.8, None, 0.0, weights) == pytest.approx((0.5 * 0.8) / 0.7)
    # silence is no support: with nothing answered the fused score is the coarse score
    assert fuse(0.36, None, None, weights) == pytest.approx(0.36)
    assert fuse(0.6, None, None, weights) == pytest.approx(0.6)
    assert fuse(0.2, 0.0, 0.0, FusionWeights(coarse=2, cloze=1, verdict=1)) == pytest.approx(0.1)
    assert lmm_support(None, None, weights) is None
    assert lmm_support(1.0, 0.0, weights) == pytest.approx(0.6)
    assert lmm_support(None, 0.9, weights) == pytest.approx(0.9)
    assert lmm_support(0.4, None, FusionWeights(coarse=1, cloze=0, verdict=1)) is None
    with pytest.raises(ValueError, match="positive"):
        FusionWeights(coarse=0, cloze=0, verdict=0)
