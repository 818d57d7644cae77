"""The cue vocabulary's sentence embeddings, computed once and shipped with the package.

A first start maps its standing queries onto the cue phrases (:mod:`agent.pose.vocabulary`); the
phrases are the same on every site, so their all-MiniLM-L6-v2 embeddings are made once, here, and
kept in ``phrase_bank.npz`` beside this file with the model version they were made with. A start
then embeds only its query texts (0.3 s of CPU less on a first start). The bank is used only when
the installed model has the same version (:func:`agent.pose.sentence.inspect_model`); any other
model embeds the phrases itself. The pose stage hands :func:`packaged_vectors` to its embedder
(:func:`agent.pose.assembly.build_pose_stage`). When the phrases or the model change, make the bank again:

    python -m agent.pose.phrase_bank
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

from agent.pose.sentence import SentenceEmbedder

log = logging.getLogger(__name__)

BANK = Path(__file__).with_name("phrase_bank.npz")


def vocabulary_texts() -> list[str]:
    """Every phrase the cue vocabulary embeds: each cue's phrases, then the ordinary ones."""
    from agent.pose.vocabulary import CUE_PHRASES, ORDINARY_PHRASES

    return [phrase for phrases in CUE_PHRASES.values() for phrase in phrases] + list(ORDINARY_PHRASES)


@functools.lru_cache(maxsize=4)
def packaged_vectors(version: str, path: Path = BANK) -> dict[str, np.ndarray]:
    """The bank's vectors by text if it was made with this model ``version``, else none."""
    try:
        with np.load(path, allow_pickle=False) as bank:
            if str(bank["version"]) != version:
                log.debug("phrase bank %s is of model %s, not %s: not used", path, bank["version"], version)
                return {}
            vectors = np.asarray(bank["vectors"], np.float32)
            return {str(text): vectors[i] for i, text in enumerate(bank["texts"])}
    except (OSError, KeyError, ValueError) as exc:  # derived data: a missing or broken bank is not fatal
        log.warning("phrase bank %s does not load (%s); the phrases are embedded at start", path, exc)
        return {}


def write_bank(path: Path = BANK, model_dir: Path | None = None) -> Path:
    """Embed :func:`vocabulary_texts` with the installed model and save them with its version."""
    model = SentenceEmbedder(model_dir)
    texts = vocabulary_texts()
    np.savez(path, version=np.array(model.version), texts=np.array(texts), vectors=model.embed(texts))
    packaged_vectors.cache_clear()
    return path


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.info("wrote %s", write_bank())
