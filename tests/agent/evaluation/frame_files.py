"""Hand-made frame-record files (as ``watchword run --jsonl`` writes them) and labels, for replays."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from agent.queries import QueryRegistry

# p(track, query, media time) -> calibrated probability of a sample, or None for no sample
Probability = Callable[[int, int, float], float | None]


def write_frames(
    path: Path,
    probability: Probability,
    *,
    tracks: list[int],
    query_ids: list[int],
    seconds: float,
    fps: float = 10.0,
    sample_every_s: float = 1.0,
    camera: str = "c1",
    wall_speed: float = 1.0,
    removed: dict[int, float] | None = None,
) -> Path:
    """One record per frame; each track sampled every ``sample_every_s`` media seconds.

    ``wall_speed`` > 1 makes wall time run that much faster than media time (a file analysed faster
    than real time). ``removed`` maps a track to the media time its tracker removes it.
    """
    removed = removed or {}
    frames = round(seconds * fps)
    every = max(1, round(sample_every_s * fps))
    with path.open("a", encoding="utf-8") as out:
        for index in range(frames):
            t = index / fps
            alive = [track for track in tracks if t < removed.get(track, float("inf"))]
            events = [{"kind": "new", "id": track} for track in alive if index == 0]
            events += [
                {"kind": "removed", "id": track} for track, at in removed.items() if index == round(at * fps)
            ]
            samples: dict[str, dict[str, float]] = {}
            if index % every == 0:
                for track in alive:
                    per_query = {str(q): probability(track, q, t) for q in query_ids}
                    kept = {q: round(p, 6) for q, p in per_query.items() if p is not None}
                    if kept:
                        samples[str(track)] = kept
            record = {
                "camera": camera,
                "frame": index,
                "pts": t,
                "wall_time": 1_800_000_000.0 + t / wall_speed,
                "media_time": t,
                "width": 640,
                "height": 480,
                "tracks": [
                    {"id": track, "box": [10.0 + 50 * track, 20.0, 50.0 + 50 * track, 200.0], "score": 0.9}
                    for track in alive
                ],
                "events": events,
            }
            if samples:
                record["samples"] = samples
            out.write(json.dumps(record) + "\n")
    return path


def write_labels(path: Path, events: list[tuple[str, int, float, float]]) -> Path:
    path.write_text(
        "".join(
            json.dumps({"camera": camera, "query_id": query_id, "start_s": start, "end_s": end}) + "\n"
            for camera, query_id, start, end in events
        )
    )
    return path


def registry_with(path: Path, *queries: dict[str, object]) -> tuple[QueryRegistry, list[int]]:
    """A registry file holding ``queries`` (keyword arguments of ``QueryRegistry.add``)."""
    registry = QueryRegistry(path)
    ids = [registry.add(**query).id for query in queries]  # type: ignore[arg-type]
    return registry, ids
