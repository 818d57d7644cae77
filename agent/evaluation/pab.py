"""PAB-format annotations: JSON lines of ``{"image", "image_id", "caption": [...]}`` (PAB's ``attr.json``).

The gallery is the images in order of first appearance; the queries are the captions in file order,
each row's caption list flattened in order. A gallery image is relevant to a query when it has the
query's ``image_id``. A file holding one JSON array of the same objects is read too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


class PabFormatError(ValueError):
    """An annotation file, image folder or score matrix that cannot be used; the message says where."""


@dataclass(frozen=True)
class PabDataset:
    """Gallery and queries of a PAB-format annotation file.

    Attributes:
        path: the annotation file.
        images: (G,) gallery image paths relative to the image folder, in order of first appearance.
        image_ids: (G,) each gallery image's ``image_id`` as it appears in the file (int or str).
        captions: (Q,) query texts, file order, each row's captions in order.
        caption_rows: (Q,) 0-based data row each caption came from.
        caption_images: (Q,) gallery index of the image of each caption's row.
        g_pids, q_pids: integer codes of the image ids of gallery and queries (equal code = relevant).
    """

    path: Path
    images: tuple[str, ...]
    image_ids: tuple[int | str, ...]
    captions: tuple[str, ...]
    caption_rows: tuple[int, ...]
    caption_images: tuple[int, ...]
    g_pids: np.ndarray
    q_pids: np.ndarray

    @property
    def num_queries(self) -> int:
        return len(self.captions)

    @property
    def num_images(self) -> int:
        return len(self.images)

    def image_paths(self, images_dir: Path) -> list[Path]:
        """Absolute paths of the gallery images; raises PabFormatError listing missing files."""
        paths = [images_dir / name for name in self.images]
        missing = [str(name) for name, path in zip(self.images, paths, strict=True) if not path.is_file()]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise PabFormatError(
                f"{len(missing)} of {len(paths)} images not found under {images_dir}: {shown}"
            )
        return paths


def _rows(path: Path) -> list[tuple[int, Any]]:
    """(line number, parsed value) per record: JSON lines, or one JSON array (line 0)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PabFormatError(f"cannot read {path}: {exc}") from exc
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PabFormatError(f"{path}: not valid JSON: {exc}") from exc
        return [(0, row) for row in data]
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise PabFormatError(f"{path}:{number}: not a JSON object: {exc.msg}") from exc
    return rows


def load_pab(path: str | Path, limit: int | None = None) -> PabDataset:
    """Read and check a PAB-format annotation file.

    Args:
        path: the JSON-lines file.
        limit: use only the first ``limit`` rows (a quick smoke run).

    Raises:
        PabFormatError: naming the line and field of the first bad row.
    """
    path = Path(path)
    rows = _rows(path)
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise PabFormatError(f"{path}: no annotation rows")
    images: list[str] = []
    image_ids: list[int | str] = []
    gallery_index: dict[str, int] = {}
    captions: list[str] = []
    caption_rows: list[int] = []
    caption_images: list[int] = []
    for row_index, (line, row) in enumerate(rows):
        where = f"{path}:{line}" if line else f"{path}[{row_index}]"
        if not isinstance(row, dict):
            raise PabFormatError(f"{where}: each row must be a JSON object")
        image, image_id, caption = row.get("image"), row.get("image_id"), row.get("caption")
        if not isinstance(image, str) or not image.strip():
            raise PabFormatError(f"{where}: 'image' must be a non-empty string (a path)")
        if isinstance(image_id, bool) or not isinstance(image_id, (int, str)):
            raise PabFormatError(f"{where}: 'image_id' must be an integer or a string")
        if isinstance(caption, str):
            caption = [caption]
        if (
            not isinstance(caption, list)
            or not caption
            or not all(isinstance(c, str) and c.strip() for c in caption)
        ):
            raise PabFormatError(f"{where}: 'caption' must be a non-empty list of non-empty strings")
        index = gallery_index.get(image)
        if index is None:
            index = gallery_index[image] = len(images)
            images.append(image)
            image_ids.append(image_id)
        elif image_ids[index] != image_id:
            raise PabFormatError(
                f"{where}: image {image!r} has image_id {image_id!r} here, {image_ids[index]!r} before"
            )
        for text in caption:
            captions.append(text.strip())
            caption_rows.append(row_index)
            caption_images.append(index)
    codes: dict[int | str, int] = {}
    g_pids = np.array([codes.setdefault(i, len(codes)) for i in image_ids], np.int64)
    q_pids = g_pids[np.array(caption_images, np.int64)]
    return PabDataset(
        path=path,
        images=tuple(images),
        image_ids=tuple(image_ids),
        captions=tuple(captions),
        caption_rows=tuple(caption_rows),
        caption_images=tuple(caption_images),
        g_pids=g_pids,
        q_pids=q_pids,
    )


def load_scores(path: str | Path, dataset: PabDataset) -> np.ndarray:
    """A (captions x images) similarity matrix from a ``.npy`` file, checked against the dataset."""
    path = Path(path)
    try:
        scores = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise PabFormatError(f"cannot read scores {path}: {exc}") from exc
    expected = (dataset.num_queries, dataset.num_images)
    if scores.shape != expected:
        raise PabFormatError(
            f"{path} has shape {scores.shape}; expected {expected} "
            "(rows: captions in file order, columns: images in order of first appearance)"
        )
    if not np.issubdtype(scores.dtype, np.number) or not np.isfinite(scores).all():
        raise PabFormatError(f"{path}: scores must be finite numbers")
    return scores
