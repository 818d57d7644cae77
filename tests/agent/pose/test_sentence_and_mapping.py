"""all-MiniLM-L6-v2 in numpy agrees with sentence-transformers, and maps queries onto the cues."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from agent.pose.sentence import SentenceEmbedder
from agent.pose.vocabulary import CUE_PHRASES, ORDINARY_PHRASES, CueVocabulary

QUERIES = {
    "a person falling down": "fall",
    "someone lying on the floor": "lying",
    "a man running away": "running",
    "someone standing still for a long time": "still_long",
    "person loitering near the entrance": "still_long",
    "a person raising both hands": "arms_raised",
    "someone lying motionless on the ground for minutes": "ground_long",
    "a person crouching behind a car": "crouching",
    "somebody collapsed": "fall",
    "a woman jogging": "running",
    "a person with a red backpack": None,
    "a man in a black coat": None,
    "someone being hit by a car door": None,
    "a child crying": None,
}


def test_numpy_minilm_agrees_with_the_torch_reference(sentence_embedder: SentenceEmbedder) -> None:
    """The reference is sentence-transformers on torch (the export extra), run in a subprocess."""
    pytest.importorskip("sentence_transformers", reason="the torch reference needs sentence-transformers")
    texts = [p for phrases in CUE_PHRASES.values() for p in phrases] + list(ORDINARY_PHRASES) + list(QUERIES)
    ours = sentence_embedder.embed(texts)
    script = (
        "import sys, json, numpy as np\n"
        "from sentence_transformers import SentenceTransformer\n"
        "from agent.pose.sentence import packaged_model_dir\n"
        "texts = json.loads(sys.stdin.read())\n"
        "m = SentenceTransformer(str(packaged_model_dir()), device='cpu')\n"
        "np.save(sys.stdout.buffer, m.encode(texts, normalize_embeddings=True))\n"
    )
    import io
    import json

    done = subprocess.run(
        [sys.executable, "-c", script], input=json.dumps(texts).encode(), capture_output=True, timeout=300
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    reference = np.load(io.BytesIO(done.stdout))
    cosine = (ours * reference).sum(axis=1)
    assert cosine.min() >= 0.9999, cosine.min()


def test_the_runtime_embedder_imports_no_torch() -> None:
    script = (
        "import sys\n"
        "from agent.pose.sentence import SentenceEmbedder\n"
        "SentenceEmbedder().embed(['a person falling down'])\n"
        "bad = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_queries_map_to_the_cues_they_describe_or_to_none(sentence_embedder: SentenceEmbedder) -> None:
    vocabulary = CueVocabulary({"minilm": sentence_embedder.embed})
    for text, cue in QUERIES.items():
        mapping = vocabulary.map(text)
        assert mapping.cue == cue, (text, mapping)
        if cue is None:
            assert mapping.confidence == 0.0 and mapping.reason
        else:
            assert 0.5 <= mapping.confidence <= 1.0
        assert "English" not in (mapping.reason or "")


@pytest.mark.parametrize("text", ["una persona que se cae al suelo", "人が倒れる"])
def test_a_query_that_may_not_be_english_maps_to_no_cue_and_says_why_first(
    sentence_embedder: SentenceEmbedder, text: str
) -> None:
    """The reason the API (``cue``), ``query show``, the start-up message and calibrate show."""
    mapping = CueVocabulary({"minilm": sentence_embedder.embed}).map(text)
    assert mapping.cue is None and mapping.reason is not None
    assert "may not be English" in mapping.reason.split("(closest cue phrase")[0]


def test_on_demand_embedder_drops_the_model_after_release(sentence_embedder: SentenceEmbedder) -> None:
    from agent.pose.sentence import OnDemandSentenceEmbedder

    texts = ["a person running", "someone lying on the floor"]
    on_demand = OnDemandSentenceEmbedder()
    assert on_demand.loaded
    np.testing.assert_allclose(on_demand(texts), sentence_embedder.embed(texts), atol=1e-6)
    assert on_demand.loaded  # held until the start's mappings are made
    on_demand.release()
    assert not on_demand.loaded
    np.testing.assert_allclose(on_demand(texts), sentence_embedder.embed(texts), atol=1e-6)
    assert not on_demand.loaded  # loaded for the call only
