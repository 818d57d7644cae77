"""``watchword eval pab``: text-to-image retrieval on PAB-format data, coarse and LMM re-ranked.

    watchword eval pab --annotations ATTR.json --images DIR --clip MODEL_DIR [--rerank CONFIG]
                       [--top-n 3] [--report OUT.json]
    watchword eval pab --annotations ATTR.json --scores SIM.npy [--images DIR --rerank CONFIG]

Prints Recall@1/5/10, mAP and mINP (IRRA's definitions) of the coarse ranking and, with
``--rerank``, of the re-ranked one side by side; ``--report`` writes every query's ranks before
and after with the re-ranker's rationale.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.commands.replay import register_replay

if TYPE_CHECKING:
    from agent.evaluation.runner import PabReport

log = logging.getLogger(__name__)


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "watchword" / "eval"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="offline benchmarks (PAB retrieval, alert replay)",
        description="Offline benchmarks of the retrieval and re-ranking stages, and alert quality on "
        "recorded footage (replay).",
    )
    benchmarks = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    pab = benchmarks.add_parser(
        "pab",
        help="text-to-image retrieval on PAB-format annotations",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pab.add_argument("--annotations", type=Path, required=True, metavar="ATTR.json", help="PAB JSON lines")
    pab.add_argument(
        "--images", type=Path, metavar="DIR", help="folder the annotation image paths start from"
    )
    source = pab.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--clip", type=Path, metavar="MODEL_DIR", help="exported CLIP (watchword export clip)"
    )
    source.add_argument(
        "--scores", type=Path, metavar="SIM.npy", help="a (captions x images) similarity matrix"
    )
    pab.add_argument("--engine", default="onnxruntime", choices=("onnxruntime", "torch", "tensorrt"))
    pab.add_argument(
        "--rerank", type=Path, metavar="CONFIG", help="YAML with the re-ranking config (rerank:)"
    )
    pab.add_argument("--top-n", type=int, metavar="N", help="re-rank the top N per query (default: config's)")
    pab.add_argument("--logit-scale", type=float, metavar="S", help="softmax scale of coarse scores")
    pab.add_argument("--report", type=Path, metavar="OUT.json", help="write the per-query report here")
    pab.add_argument(
        "--cache-dir", type=Path, default=None, help="embedding/re-rank cache (default: ~/.cache)"
    )
    pab.add_argument("--no-cache", action="store_true", help="neither read nor write caches")
    pab.add_argument("--batch-size", type=int, default=32, metavar="N", help="images or captions per call")
    pab.add_argument("--limit", type=int, metavar="ROWS", help="only the first ROWS annotation rows")
    pab.add_argument("--no-progress", action="store_true", help="no progress bars")
    pab.set_defaults(func=run_pab)
    register_replay(benchmarks)


def _fail(message: str) -> int:
    from agent.commands import EXIT_USAGE

    sys.stderr.write(f"watchword eval pab: {message}\n")
    return EXIT_USAGE


def run_pab(args: argparse.Namespace, *, encoder: Any = None) -> int:
    """Run the PAB benchmark from parsed arguments; ``encoder`` overrides ``--clip`` (tests, notebooks)."""
    from agent.commands import EXIT_FAILURE, EXIT_OK

    for name in ("top_n", "batch_size", "limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            return _fail(f"--{name.replace('_', '-')} must be at least 1")
    if args.logit_scale is not None and args.logit_scale <= 0:
        return _fail("--logit-scale must be positive")
    if (args.clip is not None or args.rerank is not None) and args.images is None:
        return _fail("--images is needed with --clip and with --rerank")
    if args.images is not None and not args.images.is_dir():
        return _fail(f"image folder not found: {args.images}")

    from agent.config import ConfigError
    from agent.evaluation.pab import PabFormatError, load_pab, load_scores
    from agent.evaluation.runner import evaluate_pab
    from agent.rerank.backends.base import LmmError, build_backend
    from agent.rerank.config import load_rerank_config
    from agent.rerank.reranker import Reranker

    try:
        dataset = load_pab(args.annotations, limit=args.limit)
    except PabFormatError as exc:
        return _fail(str(exc))
    try:
        if args.images is not None:
            dataset.image_paths(args.images)  # fail before any model loads
        similarity = load_scores(args.scores, dataset) if args.scores is not None else None
    except PabFormatError as exc:
        return _fail(str(exc))

    rerank_config = None
    if args.rerank is not None:
        try:
            rerank_config = load_rerank_config(args.rerank)
        except ConfigError as exc:
            return _fail(str(exc))
        if rerank_config.backend is None:
            return _fail(f"{args.rerank}: the re-ranking config has no backend")

    model_id = None
    if similarity is not None:
        model_id = "scores:" + _file_digest(args.scores)
    elif encoder is None:
        try:
            from agent.embedding import ClipEncoder

            encoder = ClipEncoder.load(args.clip, args.engine, batch_size=args.batch_size)
        except Exception as exc:  # manifest, engine or runtime problems: all mean "cannot use this model"
            return _fail(f"cannot load the CLIP export {args.clip}: {exc}")

    reranker = None
    backend = None
    if rerank_config is not None:
        assert rerank_config.backend is not None
        try:
            backend = build_backend(rerank_config.backend)
        except LmmError as exc:
            return _fail(f"LMM backend: {exc}")
        text_embedder = encoder.embed_texts if encoder is not None else None
        reranker = Reranker(rerank_config, backend, text_embedder)
    top_n = args.top_n or (rerank_config.top_n if rerank_config is not None else 3)
    cache_dir = None if args.no_cache else (args.cache_dir or _default_cache_dir())

    try:
        report = evaluate_pab(
            dataset,
            similarity=similarity,
            encoder=encoder,
            images_dir=args.images,
            reranker=reranker,
            top_n=top_n,
            logit_scale=args.logit_scale,
            cache_dir=cache_dir,
            model_id=model_id,
            batch_size=args.batch_size,
            progress=not args.no_progress,
        )
    except PabFormatError as exc:
        return _fail(str(exc))
    except (RuntimeError, ValueError, OSError) as exc:
        sys.stderr.write(f"watchword eval pab: {type(exc).__name__}: {exc}\n")
        return EXIT_FAILURE
    finally:
        if backend is not None:
            backend.close()
    print_metrics(report)
    if args.report is not None:
        report.write(args.report)
        sys.stdout.write(f"report: {args.report}\n")
    return EXIT_OK


def _file_digest(path: Path) -> str:
    import hashlib

    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def print_metrics(report: PabReport) -> None:
    """The metrics table: coarse and re-ranked side by side, with the difference."""
    from rich.console import Console
    from rich.table import Table

    settings = report.settings
    title = f"PAB retrieval: {settings.get('queries')} queries, {settings.get('gallery')} images"
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("coarse", justify="right")
    if report.reranked is not None:
        table.add_column(f"re-ranked (top {settings.get('top_n')})", justify="right")
        table.add_column("change", justify="right")
    coarse = report.coarse.as_dict()
    reranked = report.reranked.as_dict() if report.reranked is not None else None
    for key, label in (("r1", "R@1"), ("r5", "R@5"), ("r10", "R@10"), ("mAP", "mAP"), ("mINP", "mINP")):
        cells = [label, f"{coarse[key]:.2f}"]
        if reranked is not None:
            cells += [f"{reranked[key]:.2f}", f"{reranked[key] - coarse[key]:+.2f}"]
        table.add_row(*cells)
    console = Console(soft_wrap=True)
    console.print(table)
    if settings.get("failed_pairs"):
        console.print(
            f"LMM failed on {settings['failed_pairs']} (query, image) pairs; they kept neutral LMM scores"
        )
