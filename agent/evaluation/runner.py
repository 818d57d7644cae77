"""The PAB benchmark: embed (or read) scores, rank, optionally re-rank the top N with the LMM, report.

The coarse ranking is by the similarity matrix (captions x images). Re-ranking takes each query's
top N images (IRRA order), turns their similarities into probabilities with a softmax over the N
(``logit_scale`` x cosine, as CLIP turns cosines into logits), re-ranks each pair with the
:class:`~agent.rerank.reranker.Reranker`, and puts the N back at the top in fused-score order; the
rest of the ranking is unchanged. A pair the backend failed on gets the fusion of its coarse
probability with neutral LMM evidence. The live call budget does not apply here: the benchmark
calls the LMM as fast as it answers, in batches of the backend's size.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from agent.evaluation.cache import EmbeddingCache, RerankCache, digest, file_key
from agent.evaluation.metrics import RankResult, RetrievalMetrics, rank
from agent.evaluation.pab import PabDataset, PabFormatError
from agent.rerank.fusion import fuse
from agent.rerank.reranker import Reranker, RerankItem, RerankOutcome

log = logging.getLogger(__name__)

DEFAULT_LOGIT_SCALE = 100.0
IMAGE_CACHE_SIZE = 256
CHUNK_BATCHES = 8


class ImageTextEncoder(Protocol):
    """What the benchmark needs of an encoder (``agent.embedding.ClipEncoder`` has it)."""

    def embed_images(self, images_bgr: Sequence[np.ndarray]) -> np.ndarray: ...

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    @property
    def logit_scale(self) -> float: ...


@contextmanager
def rich_progress(description: str, total: int, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr (rich); yields ``advance(n)``. Disabled: a no-op."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


def read_image(path: Path) -> np.ndarray:
    """A BGR uint8 image; raises PabFormatError when the file cannot be decoded."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise PabFormatError(f"cannot decode image {path}")
    return image


def embed_pab(
    dataset: PabDataset,
    encoder: ImageTextEncoder,
    images_dir: Path,
    *,
    model_id: str | None = None,
    cache_dir: Path | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(caption embeddings (Q, D), image embeddings (G, D)), cached per model when possible.

    Args:
        model_id: the encoder's identity for the cache key (default: its ``manifest_hash``);
            without one nothing is cached.
        cache_dir: where the cache lives; None: no cache.
        batch_size: images or captions per encoder call.
    """
    paths = dataset.image_paths(images_dir)
    model_id = model_id or getattr(encoder, "manifest_hash", None)
    if cache_dir is not None and model_id is None:
        log.warning("the encoder has no manifest hash: embeddings are not cached")
    cache = EmbeddingCache(cache_dir, model_id) if cache_dir is not None and model_id else None

    def embed_images(start: int, stop: int) -> np.ndarray:
        rows = []
        for first in range(start, stop, batch_size):
            images = [read_image(p) for p in paths[first : min(first + batch_size, stop)]]
            rows.append(np.asarray(encoder.embed_images(images), np.float32))
        return np.concatenate(rows)

    def embed_texts(start: int, stop: int) -> np.ndarray:
        texts = dataset.captions
        rows = [
            np.asarray(encoder.embed_texts(list(texts[first : min(first + batch_size, stop)])), np.float32)
            for first in range(start, stop, batch_size)
        ]
        return np.concatenate(rows)

    chunk = batch_size * CHUNK_BATCHES
    results: list[np.ndarray] = []
    jobs: list[tuple[str, list[str], Callable[[int, int], np.ndarray]]] = [
        ("texts", list(dataset.captions), embed_texts),
        ("images", [file_key(p, n) for p, n in zip(paths, dataset.images, strict=True)], embed_images),
    ]
    for kind, keys, compute in jobs:
        with rich_progress(f"embedding {kind}", len(keys), progress) as advance:
            if cache is not None:
                results.append(cache.get_or_compute(kind, keys, compute, chunk, advance))
            else:
                parts = []
                for start in range(0, len(keys), chunk):
                    stop = min(start + chunk, len(keys))
                    parts.append(compute(start, stop))
                    advance(stop - start)
                results.append(np.concatenate(parts))
    return results[0], results[1]


def _softmax(values: np.ndarray) -> np.ndarray:
    shifted = np.exp(values - values.max())
    return np.asarray(shifted / shifted.sum())


def _outcome_record(outcome: RerankOutcome) -> dict[str, Any]:
    return {
        "coarse_score": outcome.coarse_score,
        "fused_score": outcome.fused_score,
        "verified": outcome.verified,
        "verification": outcome.verification.value,
        "verification_reason": outcome.reason,
        "cloze_score": outcome.cloze_score,
        "verdict_probability": outcome.verdict_probability,
        "verdict_source": outcome.verdict_source,
        "rationale": outcome.rationale,
        "error": outcome.error,
    }


def rerank_top_n(
    dataset: PabDataset,
    similarity: np.ndarray,
    coarse: RankResult,
    reranker: Reranker,
    images_dir: Path,
    *,
    top_n: int,
    logit_scale: float,
    cache: RerankCache | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, list[list[dict[str, Any]]]]:
    """Re-rank each query's top ``top_n``; returns (re-ranked similarity, per query the re-ranked records)."""
    paths = dataset.image_paths(images_dir)
    images: OrderedDict[int, np.ndarray] = OrderedDict()

    def image(index: int) -> np.ndarray:
        if index in images:
            images.move_to_end(index)
            return images[index]
        images[index] = read_image(paths[index])
        if len(images) > IMAGE_CACHE_SIZE:
            images.popitem(last=False)
        return images[index]

    records: list[list[dict[str, Any]]] = [[] for _ in range(dataset.num_queries)]
    group = max(1, -(-reranker.backend.max_batch_size // top_n))
    pending: list[tuple[int, int, RerankItem]] = []

    def flush() -> None:
        outcomes = reranker.rerank_items([item for _, _, item in pending])
        for (query, gallery, _), outcome in zip(pending, outcomes, strict=True):
            record = _outcome_record(outcome)
            if outcome.error is None and cache is not None:
                cache.put(query, gallery, record)
            records[query].append({"image": gallery, **record})
        pending.clear()

    with rich_progress("re-ranking", dataset.num_queries, progress) as advance:
        for query in range(dataset.num_queries):
            top = coarse.indices[query, :top_n]
            probabilities = _softmax(logit_scale * np.asarray(similarity[query, top], np.float64))
            for gallery, probability in zip(top.tolist(), probabilities.tolist(), strict=True):
                cached = cache.get(query, gallery) if cache is not None else None
                if cached is not None:
                    records[query].append({"image": gallery, **cached})
                    continue
                item = RerankItem(dataset.captions[query], float(probability), (image(gallery),))
                pending.append((query, gallery, item))
            if len(pending) >= group * top_n or query == dataset.num_queries - 1:
                flush()
            advance(1)
        if pending:
            flush()

    reranked = np.array(similarity, np.float64, copy=True)
    weights = reranker.config.weights
    for query, query_records in enumerate(records):
        above = float(reranked[query].max()) + 1.0
        for record in query_records:
            fused = record["fused_score"]
            if fused is None:
                fused = fuse(record["coarse_score"], None, None, weights)
            reranked[query, record["image"]] = above + fused
    return reranked, records


@dataclass
class PabReport:
    """Metrics of the coarse and the re-ranked ranking, and what happened to each query."""

    coarse: RetrievalMetrics
    reranked: RetrievalMetrics | None
    per_query: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "metrics": {
                "coarse": self.coarse.as_dict(),
                "reranked": None if self.reranked is None else self.reranked.as_dict(),
            },
            "per_query": self.per_query,
        }

    def write(self, path: Path) -> None:
        """Write the report as JSON (atomically: a temporary file, then renamed)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        os.replace(temporary, path)


def _per_query(
    dataset: PabDataset,
    similarity: np.ndarray,
    coarse: RankResult,
    after: RankResult | None,
    records: list[list[dict[str, Any]]] | None,
    top_n: int,
) -> list[dict[str, Any]]:
    rows = []
    shown = max(top_n, 5)
    for query in range(dataset.num_queries):
        row: dict[str, Any] = {
            "query": query,
            "row": dataset.caption_rows[query],
            "caption": dataset.captions[query],
            "image": dataset.images[dataset.caption_images[query]],
            "image_id": dataset.image_ids[dataset.caption_images[query]],
            "rank_before": int(coarse.first_hit[query]),
            "rank_after": None if after is None else int(after.first_hit[query]),
            "top_before": [
                {"image": dataset.images[g], "score": round(float(similarity[query, g]), 6)}
                for g in coarse.indices[query, :shown].tolist()
            ],
        }
        if after is not None and records is not None:
            row["top_after"] = [dataset.images[g] for g in after.indices[query, :shown].tolist()]
            row["reranked"] = [
                {
                    **{k: v for k, v in record.items() if k != "image"},
                    "image": dataset.images[record["image"]],
                }
                for record in records[query]
            ]
        rows.append(row)
    return rows


def evaluate_pab(
    dataset: PabDataset,
    *,
    similarity: np.ndarray | None = None,
    encoder: ImageTextEncoder | None = None,
    images_dir: Path | None = None,
    reranker: Reranker | None = None,
    top_n: int = 3,
    logit_scale: float | None = None,
    cache_dir: Path | None = None,
    model_id: str | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> PabReport:
    """Run the benchmark. Give either ``similarity`` or ``encoder`` (with ``images_dir``).

    Args:
        similarity: (Q, G) scores to evaluate as they are.
        encoder: embeds captions and gallery images; similarity is their cosine.
        images_dir: the folder the annotation's image paths are relative to (needed to embed or re-rank).
        reranker: when given, re-rank each query's top ``top_n``.
        logit_scale: softmax scale of the coarse scores for re-ranking (default: the encoder's, or 100).
        cache_dir: embedding and re-ranking caches; None disables both.
        model_id: identity of the model or score file for cache keys (default: the encoder's manifest hash).
        batch_size: images or captions per encoder call.
        progress: show progress bars on stderr.
    """
    if (similarity is None) == (encoder is None):
        raise ValueError("give exactly one of similarity and encoder")
    if (encoder is not None or reranker is not None) and images_dir is None:
        raise ValueError("embedding or re-ranking needs images_dir")
    if encoder is not None:
        assert images_dir is not None
        texts, images = embed_pab(
            dataset,
            encoder,
            images_dir,
            model_id=model_id,
            cache_dir=cache_dir,
            batch_size=batch_size,
            progress=progress,
        )
        similarity = texts @ images.T
        model_id = model_id or getattr(encoder, "manifest_hash", None)
    assert similarity is not None
    coarse = rank(similarity, dataset.q_pids, dataset.g_pids)
    scale = logit_scale or float(getattr(encoder, "logit_scale", DEFAULT_LOGIT_SCALE))
    settings: dict[str, Any] = {
        "annotations": str(dataset.path),
        "queries": dataset.num_queries,
        "gallery": dataset.num_images,
        "model": model_id,
    }
    after: RankResult | None = None
    records: list[list[dict[str, Any]]] | None = None
    if reranker is not None:
        assert images_dir is not None
        cache = None
        if cache_dir is not None and model_id:
            key = digest(
                reranker.config.model_dump_json(),
                reranker.backend.name,
                str(dataset.path.resolve()),
                str(images_dir.resolve()),
                model_id,
                str(top_n),
                repr(scale),
            )
            cache = RerankCache(cache_dir / f"rerank-{key[:24]}.jsonl")
        reranked, records = rerank_top_n(
            dataset,
            similarity,
            coarse,
            reranker,
            images_dir,
            top_n=top_n,
            logit_scale=scale,
            cache=cache,
            progress=progress,
        )
        after = rank(reranked, dataset.q_pids, dataset.g_pids)
        failed = sum(1 for query in records for record in query if record["error"])
        settings.update(
            top_n=top_n,
            logit_scale=scale,
            backend=reranker.backend.name,
            rerank_config=json.loads(reranker.config.model_dump_json()),
            failed_pairs=failed,
        )
    return PabReport(
        coarse=RetrievalMetrics.from_rank(coarse),
        reranked=None if after is None else RetrievalMetrics.from_rank(after),
        per_query=_per_query(dataset, similarity, coarse, after, records, top_n),
        settings=settings,
    )
