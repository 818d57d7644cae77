"""One person, one id: a new track that continues a recently lost person takes that person's id.

Trackers that associate by box overlap (ByteTrack, BoT-SORT without ReID) lose a person on a few
missed detections or a short occlusion and start a new track when the person is detected again.
:class:`Reassociator` remembers each person for ``max_gap_s`` of media time after they were last
seen (their last box, recent motion and colour appearance, :mod:`agent.tracking.appearance`) and
offers them to every new track, which takes the id of the best remembered person that passes all
three gates:

- time: the person was last seen at most ``max_gap_s`` media seconds ago (the frame's pts);
- position: the new box centre lies within a radius of where the person was last seen or of where
  their recent motion predicts them now; the radius opens at 0.3 box heights and widens by 0.7
  box heights per second unseen, up to ``max_distance``; the box height changed by at most a
  factor ``max_size_change``;
- appearance: colour-histogram similarity at least ``min_similarity``, or, when an image embedder
  (CLIP) is attached with :meth:`Reassociator.set_embedder`, the cosine of the two crops' embeddings
  at least ``min_embedding_similarity``.

Each new track takes at most one person and each person at most one new track (minimum total cost
over the pairs that pass, cost = appearance distance + half the distance in gate radii). When a
second lost person fits about as well (appearance within ``AMBIGUITY_MARGIN``), nobody is chosen:
a new id is better than another person's. All state belongs to the instance (one per camera);
:meth:`Reassociator.reset` clears it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from agent.tracking.appearance import colour_descriptor, similarity
from agent.tracking.association import linear_assignment

logger = logging.getLogger(__name__)

Embedder = Callable[[Sequence[np.ndarray]], np.ndarray]
"""BGR crops -> (N, D) L2-normalised embeddings, e.g. ``ClipEncoder.embed_images``."""

MOTION_WINDOW_S = 1.0  # media seconds of recent centres the velocity is fitted on
MAX_SPEED_HEIGHTS_PER_S = 1.5  # a walking person covers about 0.8 of their height per second
CLEAN_MAX_COVERED = 0.3  # appearance is learnt only from boxes less covered than this by others
INFEASIBLE = 1e6
AMBIGUITY_MARGIN = 0.3  # appearance distance (1 = the limit) by which the best must beat the next
GATE_BASE_HEIGHTS = 0.3  # position gate right after a person was lost, in box heights ...
GATE_GROWTH_HEIGHTS_PER_S = 0.7  # ... widening with the time unseen, up to max_distance
GALLERY_SIZE = 8  # clean descriptors kept per person, at least GALLERY_SPACING_S apart
GALLERY_SPACING_S = 0.3  # media seconds


@dataclass
class _Person:
    track_id: int
    last_pts: float
    box: np.ndarray
    centres: deque[tuple[float, np.ndarray]] = field(default_factory=lambda: deque(maxlen=64))
    descriptor: np.ndarray | None = None  # running mean of the clean descriptors
    gallery: deque[np.ndarray] = field(default_factory=lambda: deque(maxlen=GALLERY_SIZE))
    gallery_pts: float = -np.inf  # media time of the newest gallery entry
    crop: np.ndarray | None = None  # last clean crop, for the embedder
    embedding: np.ndarray | None = None  # of ``crop``, computed when first needed

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    def centre(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2])

    def velocity(self) -> np.ndarray:
        """Centre velocity in pixels per media second over the last second seen, capped at a walking pace."""
        if len(self.centres) < 3:
            return np.zeros(2)
        times = np.array([t for t, _ in self.centres])
        if times[-1] - times[0] < 0.2:
            return np.zeros(2)
        points = np.array([c for _, c in self.centres])
        times = times - times.mean()
        velocity = (times[:, None] * (points - points.mean(0))).sum(0) / float((times**2).sum())
        speed, limit = float(np.linalg.norm(velocity)), MAX_SPEED_HEIGHTS_PER_S * self.height
        return velocity * (limit / speed) if speed > limit else velocity


class Reassociator:
    """Gives a new track the id of the recently lost person it continues, on one camera.

    Args:
        max_gap_s: media seconds after a person was last seen during which a new track may take their id.
        max_distance: gate radius, in box heights of the person's last box.
        min_similarity: lowest colour-histogram similarity (Bhattacharyya, 0..1) of a re-association.
        max_size_change: largest ratio between the two box heights.
        min_embedding_similarity: lowest embedding cosine when an embedder is attached.
        descriptor_momentum: weight of the past in a person's running colour descriptor (0..1).
        decision_window_s: media seconds a new track that passes a lost person's time and position
            gates, but not the appearance gate, is held back and compared again (0: decide at once).
    """

    def __init__(
        self,
        *,
        max_gap_s: float = 6.0,
        max_distance: float = 1.0,
        min_similarity: float = 0.8,
        max_size_change: float = 2.0,
        min_embedding_similarity: float = 0.85,
        descriptor_momentum: float = 0.8,
        decision_window_s: float = 1.5,
    ) -> None:
        if max_gap_s <= 0 or max_distance <= 0 or max_size_change < 1:
            raise ValueError("max_gap_s and max_distance must be positive, max_size_change at least 1")
        self.max_gap_s = max_gap_s
        self.max_distance = max_distance
        self.min_similarity = min_similarity
        self.max_size_change = max_size_change
        self.min_embedding_similarity = min_embedding_similarity
        self.descriptor_momentum = descriptor_momentum
        self.decision_window_s = decision_window_s
        self.embedder: Embedder | None = None
        self.reassociated = 0  # new tracks that took a remembered person's id
        self._people: dict[int, _Person] = {}

    def set_embedder(self, embedder: Embedder | None) -> None:
        """Compare crops by this embedder's cosine (e.g. CLIP's ``embed_images``) instead of colour."""
        self.embedder = embedder

    def reset(self) -> None:
        self._people.clear()

    def remembers(self, track_id: int, pts: float) -> bool:
        """Whether ``track_id`` may still be given to a new track at media time ``pts``."""
        person = self._people.get(track_id)
        return person is not None and 0 <= pts - person.last_pts <= self.max_gap_s

    def forget(self, track_id: int) -> None:
        self._people.pop(track_id, None)

    def observe(self, pts: float, image: np.ndarray, track_ids: Sequence[int], boxes: np.ndarray) -> None:
        """Record where the people output on a frame are, and learn the appearance of the unoccluded ones."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        covered = _covered_fraction(boxes)
        for track_id, box, cover in zip(track_ids, boxes, covered, strict=True):
            person = self._people.get(track_id)
            if person is None:
                person = self._people[track_id] = _Person(track_id, pts, box)
            person.last_pts, person.box = pts, box
            person.centres.append((pts, person.centre()))
            while person.centres and pts - person.centres[0][0] > MOTION_WINDOW_S:
                person.centres.popleft()
            if cover > CLEAN_MAX_COVERED:
                continue
            descriptor = colour_descriptor(image, box)
            if descriptor is None:
                continue
            if person.descriptor is None:
                person.descriptor = descriptor
            else:
                m = self.descriptor_momentum
                person.descriptor = m * person.descriptor + (1 - m) * descriptor
            if pts - person.gallery_pts >= GALLERY_SPACING_S:
                person.gallery.append(descriptor)
                person.gallery_pts = pts
            if self.embedder is not None:
                person.crop, person.embedding = _crop(image, box), None

    def match(
        self, pts: float, image: np.ndarray, boxes: np.ndarray, exclude: set[int]
    ) -> tuple[list[int | None], list[bool]]:
        """For each new track's box, the id of the remembered person it continues, or None.

        Also says, per box, whether some remembered person passed the time and position gates but
        not the appearance gate: the caller may ask again on the next frame, with a better view.

        Args:
            pts: media time of the frame, seconds.
            image: the frame (BGR).
            boxes: (N, 4) boxes of the new tracks, pixels.
            exclude: ids output on this frame (a person is never given two boxes).
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        people = [
            p
            for p in self._people.values()
            if p.track_id not in exclude and 0 < pts - p.last_pts <= self.max_gap_s
        ]
        if len(boxes) == 0 or not people:
            return [None] * len(boxes), [False] * len(boxes)
        gates = np.array([[self._gate(p, box, pts) for p in people] for box in boxes])  # distance in radii
        appearance = self._appearance_distance(image, boxes, people, gates)
        cost = np.where((gates <= 1) & (appearance <= 1), appearance + 0.5 * gates, INFEASIBLE)
        matches, _, _ = linear_assignment(cost, INFEASIBLE / 2)
        result: list[int | None] = [None] * len(boxes)
        gated = [bool(g) for g in np.any(gates <= 1, axis=1).tolist()]
        for b, p in matches:
            rivals = [q for q in range(len(people)) if q != p and cost[b, q] < INFEASIBLE]
            if any(appearance[b, q] - appearance[b, p] < AMBIGUITY_MARGIN for q in rivals):
                continue  # two lost people fit about as well: a new id is better than the wrong one
            result[b] = people[p].track_id
            self.reassociated += 1
            logger.debug(
                "new track at %s continues person %d, unseen for %.2f s",
                np.round(boxes[b]).astype(int).tolist(),
                people[p].track_id,
                pts - people[p].last_pts,
            )
        return result, [g and r is None for g, r in zip(gated, result, strict=True)]

    def _gate(self, person: _Person, box: np.ndarray, pts: float) -> float:
        """Distance of ``box`` from the person, in gate radii (> 1: outside), or inf on a size change."""
        height = float(box[3] - box[1])
        if (
            height <= 0
            or max(height, person.height) / max(min(height, person.height), 1e-6) > self.max_size_change
        ):
            return float("inf")
        centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        last = person.centre()
        predicted = last + person.velocity() * (pts - person.last_pts)
        distance = min(np.linalg.norm(centre - last), np.linalg.norm(centre - predicted))
        gap = pts - person.last_pts
        radius = min(self.max_distance, GATE_BASE_HEIGHTS + GATE_GROWTH_HEIGHTS_PER_S * gap) * person.height
        return float(distance / radius)

    def _appearance_distance(
        self, image: np.ndarray, boxes: np.ndarray, people: list[_Person], gates: np.ndarray
    ) -> np.ndarray:
        """(boxes, people) appearance distances scaled so that 1 is the acceptance limit; inf when unknown."""
        distances = np.full(gates.shape, np.inf)
        if self.embedder is not None:
            self._embed_people([p for j, p in enumerate(people) if (gates[:, j] <= 1).any()])
        for i, box in enumerate(boxes):
            if not (gates[i] <= 1).any():
                continue
            descriptor = colour_descriptor(image, box)
            embedding = self._embed_box(image, box) if self.embedder is not None else None
            for j, person in enumerate(people):
                if gates[i, j] > 1:
                    continue
                if embedding is not None and person.embedding is not None:
                    cosine = float(embedding @ person.embedding)
                    distances[i, j] = (1 - cosine) / max(1 - self.min_embedding_similarity, 1e-6)
                elif descriptor is not None and person.descriptor is not None:
                    # The best of the running mean and the views kept: a person turning or walking
                    # through shade changes colour statistics more than a second person does not.
                    score = max(similarity(descriptor, d) for d in (person.descriptor, *person.gallery))
                    distances[i, j] = (1 - score) / max(1 - self.min_similarity, 1e-6)
        return distances

    def _embed_people(self, people: list[_Person]) -> None:
        pending = [p for p in people if p.embedding is None and p.crop is not None]
        if pending and self.embedder is not None:
            vectors = self.embedder([p.crop for p in pending if p.crop is not None])
            for person, vector in zip(pending, vectors, strict=True):
                person.embedding = np.asarray(vector, dtype=np.float32)

    def _embed_box(self, image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        crop = _crop(image, box)
        if crop is None or self.embedder is None:
            return None
        return np.asarray(self.embedder([crop])[0], dtype=np.float32)


def _crop(image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    height, width = image.shape[:2]
    x1, y1 = int(max(box[0], 0)), int(max(box[1], 0))
    x2, y2 = int(min(box[2], width)), int(min(box[3], height))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    return image[y1:y2, x1:x2].copy()


def _covered_fraction(boxes: np.ndarray) -> np.ndarray:
    """For each box, the largest fraction of its area that another box of the frame covers."""
    if len(boxes) < 2:
        return np.zeros(len(boxes))
    top_left = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    bottom_right = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    np.fill_diagonal(inter, 0)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return (inter / np.maximum(area, 1e-6)[:, None]).max(axis=1)
