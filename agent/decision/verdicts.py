"""What the LMM said about each (camera, query, person), remembered with an expiry.

A rejected person is not sent to the LMM again for the same query until ``rejection_cooldown_s``
media seconds of their camera have passed, or their pooled score rose by ``rejection_margin``
above the score they were rejected at (something changed: worth asking again). A verified person
needs no memory here: their alert opens, and the alert's own cooldown holds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

VerdictKey = tuple[str, int, int]  # camera_id, query_id, track_id


@dataclass(frozen=True)
class Rejection:
    """A rejection: the pooled score it was made at and the media time it expires at (seconds)."""

    score: float
    until: float


@dataclass
class VerdictBook:
    """Rejections by (camera, query, track); see the module docstring.

    Args:
        cooldown_s: media seconds a rejection holds (0: not remembered).
        margin: a rise of the pooled score by this much above the rejected score asks again.
    """

    cooldown_s: float = 60.0
    margin: float = 0.1
    rejections: dict[VerdictKey, Rejection] = field(default_factory=dict)
    held: int = 0  # candidates not made because of a rejection, since start

    def reject(self, key: VerdictKey, score: float, now: float) -> None:
        """Remember a rejection made at camera media time ``now``."""
        if self.cooldown_s > 0:
            self.rejections[key] = Rejection(float(score), now + self.cooldown_s)

    def holds(self, key: VerdictKey, score: float, now: float) -> bool:
        """Whether a rejection still keeps ``key`` (at pooled ``score``) from the LMM at ``now``."""
        rejection = self.rejections.get(key)
        if rejection is None:
            return False
        if now >= rejection.until or now < rejection.until - self.cooldown_s:  # expired, or clock went back
            del self.rejections[key]
            return False
        if score >= rejection.score + self.margin:
            return False
        self.held += 1
        return True

    def forget(self, camera_id: str, track_id: int | None = None) -> None:
        """Drop the rejections of a camera (changed or removed), or of one of its tracks (ended)."""
        self.rejections = {
            k: r
            for k, r in self.rejections.items()
            if not (k[0] == camera_id and (track_id is None or k[2] == track_id))
        }
