"""``watchword calibrate CONFIG --from-feedback``: re-fit each query's threshold from the operator's
true / false alarm marks (the alerts' peak scores), so that marked false alarms fall below it while
as many marked true alarms as possible stay above."""

from __future__ import annotations

import argparse
import itertools
import sys
from collections import defaultdict

MIN_THRESHOLD = 0.01
MAX_THRESHOLD = 0.99
ABOVE = 0.005  # how far above the highest false alarm a threshold goes when no true alarm is near


def fit_threshold(true_scores: list[float], false_scores: list[float]) -> float | None:
    """The threshold with the fewest mistakes (false alarms kept + true alarms lost); on a tie the
    lowest (keep true alarms). None without a false alarm: the marks give no reason to raise it."""
    if not false_scores:
        return None
    points = sorted(set(true_scores) | set(false_scores))
    candidates: set[float] = set()
    if not any(t > max(false_scores) for t in true_scores):  # else a midpoint below them does better
        candidates.add(max(false_scores) + ABOVE)
    candidates |= {(a + b) / 2 for a, b in itertools.pairwise(points)}
    candidates |= {points[0] - ABOVE}

    def mistakes(t: float) -> int:
        return sum(s >= t for s in false_scores) + sum(s < t for s in true_scores)

    best = min(sorted(candidates), key=mistakes)
    return min(MAX_THRESHOLD, max(MIN_THRESHOLD, best))


def run_from_feedback(args: argparse.Namespace) -> int:
    from agent.commands import EXIT_OK, EXIT_USAGE
    from agent.config import ConfigError, load_config
    from agent.console.reviews import ReviewStore
    from agent.queries import QueryNotFoundError, QueryRegistry, QueryUpdate

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"watchword calibrate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not config.alerts.database.is_file():
        print(f"watchword calibrate: no alerts database at {config.alerts.database}", file=sys.stderr)
        return EXIT_USAGE
    reviews = ReviewStore(config.alerts.database, None)
    try:
        marks = reviews.marked()
    finally:
        reviews.close()
    scores: dict[int, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for mark in marks:
        if mark["query_id"] is None or mark["score"] is None:
            continue
        true_scores, false_scores = scores[int(mark["query_id"])]
        (true_scores if mark["verdict"] == "true" else false_scores).append(float(mark["score"]))
    if not scores:
        print("watchword calibrate: no alerts are marked true or false yet", file=sys.stderr)
        return EXIT_USAGE
    registry = QueryRegistry(config.database)
    try:
        for query_id, (true_scores, false_scores) in sorted(scores.items()):
            try:
                query = registry.get(query_id)
            except QueryNotFoundError:
                continue
            fitted = fit_threshold(true_scores, false_scores)
            marks_text = f"{len(true_scores)} true, {len(false_scores)} false"
            if fitted is None:
                print(f"query {query_id} ({query.text}): {marks_text}: threshold kept")
                continue
            manual = query.threshold is not None and query.threshold_source != "calibrated"
            if manual and not getattr(args, "overwrite_manual", False):
                print(
                    f"query {query_id} ({query.text}): {marks_text}: would be {fitted:.3f}; set by hand, kept"
                )
                continue
            print(
                f"query {query_id} ({query.text}): {marks_text}: threshold {query.threshold} -> {fitted:.3f}"
            )
            if not args.dry_run:
                registry.update(query_id, QueryUpdate(threshold=fitted, threshold_source="calibrated"))
    finally:
        registry.close()
    return EXIT_OK
