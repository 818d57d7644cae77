"""CLIP/SigLIP image preprocessing in numpy, identical to the model's ``transformers`` image processor.

The processor resizes (shortest edge, or to a fixed size), center-crops, rescales by 1/255 and
normalises with the model's mean and std. Its resize is an antialiased separable filter in fixed-point
integer arithmetic: PIL's (22 fractional bits) in the PIL backend and in ``transformers`` < 5, and
torch's uint8 kernel (as many fractional bits as the largest weight allows) in the torchvision backend
that ``transformers`` >= 5 uses by default. The torch kernel is reproduced here bit for bit, so the
edge needs no torch; the PIL variant calls Pillow when it is installed (see :func:`resize_uint8`). The
export records which one the model's processor used.

Person crops are cut from the frame around a detector box with configurable padding, optionally
squared so that the center crop does not cut off heads and feet.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

PREPROCESS_FILE = "preprocess.json"
RESIZE_BACKENDS = ("torchvision", "pil")
RESAMPLE_FILTERS = {2: "bilinear", 3: "bicubic"}  # PIL's resample codes, as processor configs store them


class PreprocessError(ValueError):
    """Preprocessing constants this module cannot reproduce exactly, or unusable inputs."""


def _cubic_torch(x: np.ndarray) -> np.ndarray:
    # torch's HelperInterpCubic::aa_filter (a = -0.5), in its evaluation order: ((a+2)x - (a+3))x x + 1
    # below 1 and ((a x - 5a) x + 8a) x - 4a below 2.
    x = np.abs(x)
    near = ((1.5 * x - 2.5) * x) * x + 1.0
    far = ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _cubic_pil(x: np.ndarray) -> np.ndarray:
    # Pillow's bicubic_filter (a = -0.5), in its evaluation order: (((x - 5) x + 8) x - 4) a below 2.
    x = np.abs(x)
    near = ((1.5 * x - 2.5) * x) * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * -0.5
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _triangle(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


_FILTERS: dict[tuple[str, str], tuple[Callable[[np.ndarray], np.ndarray], float]] = {
    ("torchvision", "bicubic"): (_cubic_torch, 2.0),
    ("pil", "bicubic"): (_cubic_pil, 2.0),
    ("torchvision", "bilinear"): (_triangle, 1.0),
    ("pil", "bilinear"): (_triangle, 1.0),
}


@lru_cache(maxsize=1024)
def _axis_weights(
    in_size: int, out_size: int, backend: str, resample: str
) -> tuple[np.ndarray, np.ndarray, int]:
    """Fixed-point weights of one resize axis: (tap indices [out, k], int32 weights [out, k], precision bits).

    Every step is the float64 arithmetic of torch's ``_compute_indices_min_size_weights_aa`` and
    ``_compute_index_ranges_int16_weights`` (or Pillow's ``precompute_coeffs``), in the same order,
    so the integer weights are identical.
    """
    kernel, kernel_support = _FILTERS[(backend, resample)]
    scale = in_size / out_size
    support = kernel_support * scale if scale >= 1.0 else kernel_support
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    taps = math.ceil(support) * 2 + 1
    center = scale * (np.arange(out_size, dtype=np.float64) + 0.5)
    xmin = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
    xmax = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size)
    xsize = np.clip(xmax - xmin, 0, taps)
    tap = np.arange(taps, dtype=np.int64)
    positions = (tap[None, :] + xmin[:, None]).astype(np.float64)
    weights = kernel((positions - center[:, None] + 0.5) * invscale)
    weights = np.where(tap[None, :] < xsize[:, None], weights, 0.0)
    total = np.zeros(out_size, dtype=np.float64)
    for k in range(taps):  # sequential sums, as the C loops add
        total = total + weights[:, k]
    nonzero = total != 0.0
    weights = np.where(nonzero[:, None], weights / np.where(nonzero, total, 1.0)[:, None], weights)
    largest = float(weights[nonzero].max()) if nonzero.any() else 0.0
    if backend == "pil":
        precision = 22  # Pillow's PRECISION_BITS
    else:
        precision = 0
        while precision < 22 and int(0.5 + largest * (1 << (precision + 1))) < (1 << 15):
            precision += 1
    scaled = weights * float(1 << precision)
    fixed = np.where(scaled < 0, np.trunc(scaled - 0.5), np.trunc(scaled + 0.5)).astype(np.int32)
    indices = np.minimum(xmin[:, None] + tap[None, :], in_size - 1)
    return indices, fixed, precision


def _resample_axis(
    image: np.ndarray, axis: int, out_size: int, backend: str, resample: str, keep: slice | None = None
) -> np.ndarray:
    """Resize a uint8 HxWxC image along ``axis`` (0 rows, 1 columns) in fixed point, like PIL and torch.

    ``keep`` computes only that range of output indices (the others would be cropped away).
    """
    indices, weights, precision = _axis_weights(image.shape[axis], out_size, backend, resample)
    if keep is not None:
        indices, weights = indices[keep], weights[keep]
    used = np.flatnonzero(weights.any(axis=0))
    shape = list(image.shape)
    shape[axis] = len(indices)
    acc = np.full(shape, 1 << (precision - 1), dtype=np.int32)
    for k in used:
        taps = np.take(image, indices[:, k], axis=axis).astype(np.int32)
        acc += taps * weights[:, k].reshape((-1, 1, 1) if axis == 0 else (1, -1, 1))
    return np.clip(acc >> precision, 0, 255).astype(np.uint8)


def _pillow() -> Any | None:
    try:
        from PIL import Image
    except ImportError:
        return None
    return Image


def resize_uint8(
    image: np.ndarray,
    height: int,
    width: int,
    backend: str,
    resample: str,
    window: tuple[slice, slice] | None = None,
) -> np.ndarray:
    """Antialiased resize of an HxWx3 uint8 image to ``height`` x ``width`` pixels.

    The ``torchvision`` backend is torch's uint8 kernel, reproduced exactly (columns, then rows). The
    ``pil`` backend calls Pillow when it is installed, since the processor's output is whatever the
    installed Pillow computes (recent releases do not always resample columns first); without Pillow
    it uses the classic Pillow algorithm (columns, then rows, 22 fractional bits).

    Args:
        window: (rows, columns) of the resized image to return; only those are computed.
    """
    if (backend, resample) not in _FILTERS:
        raise PreprocessError(f"no exact {resample} resize for the {backend} backend")
    rows, cols = window or (slice(0, height), slice(0, width))
    if backend == "pil" and (pillow := _pillow()) is not None:
        codes = {code_name: code for code, code_name in RESAMPLE_FILTERS.items()}
        resized = pillow.fromarray(np.ascontiguousarray(image)).resize((width, height), codes[resample])
        return np.asarray(resized)[rows, cols]
    out = image
    if image.shape[0] != height:
        # Only the source rows the kept output rows read go through the column pass (as Pillow does).
        row_indices, row_weights, _ = _axis_weights(image.shape[0], height, backend, resample)
        needed = row_indices[rows][row_weights[rows] != 0]
        first, last = (int(needed.min()), int(needed.max()) + 1) if needed.size else (0, image.shape[0])
    else:
        first, last = rows.start or 0, rows.stop if rows.stop is not None else height
    out = out[first:last]
    if image.shape[1] != width:
        out = _resample_axis(out, 1, width, backend, resample, keep=cols)
    else:
        out = out[:, cols]
    if image.shape[0] != height:
        indices, weights, precision = _axis_weights(image.shape[0], height, backend, resample)
        shifted = (indices[rows] - first).clip(0, out.shape[0] - 1)
        acc = np.full((len(shifted), out.shape[1], out.shape[2]), 1 << (precision - 1), dtype=np.int32)
        for k in np.flatnonzero(weights[rows].any(axis=0)):
            acc += out[shifted[:, k]].astype(np.int32) * weights[rows][:, k].reshape(-1, 1, 1)
        out = np.clip(acc >> precision, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out)


@dataclass(frozen=True)
class ImagePreprocessing:
    """The constants of a CLIP/SigLIP image processor, as the exporter writes them to ``preprocess.json``.

    Attributes:
        shortest_edge: resize so the shorter side has this many pixels (CLIP), or None.
        height, width: resize to exactly this size in pixels (SigLIP), when ``shortest_edge`` is None.
        resample: ``"bicubic"`` or ``"bilinear"``.
        resize_backend: ``"torchvision"`` or ``"pil"``: whose fixed-point resize the processor used.
        crop_height, crop_width: center crop in pixels, or None for no crop.
        rescale_factor: multiplier to [0, 1] (1/255), or None for no rescale.
        mean, std: per RGB channel, or None for no normalisation.
    """

    shortest_edge: int | None
    height: int | None
    width: int | None
    resample: str
    resize_backend: str
    crop_height: int | None
    crop_width: int | None
    rescale_factor: float | None
    mean: tuple[float, float, float] | None
    std: tuple[float, float, float] | None
    do_resize: bool = True
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.resize_backend not in RESIZE_BACKENDS:
            raise PreprocessError(
                f"resize_backend must be one of {RESIZE_BACKENDS}, got {self.resize_backend!r}"
            )
        if self.do_resize and (self.resize_backend, self.resample) not in _FILTERS:
            raise PreprocessError(f"resample {self.resample!r} is not supported (use bicubic or bilinear)")
        if self.do_resize and self.shortest_edge is None and (self.height is None or self.width is None):
            raise PreprocessError("resize needs shortest_edge, or height and width")

    @property
    def output_size(self) -> tuple[int, int]:
        """(height, width) in pixels of the model input."""
        if self.crop_height is not None and self.crop_width is not None:
            return self.crop_height, self.crop_width
        if self.shortest_edge is None and self.height is not None and self.width is not None:
            return self.height, self.width
        raise PreprocessError("the output size varies with the image: no center crop and no fixed size")

    @property
    def fill_rgb(self) -> tuple[int, int, int]:
        """The uint8 colour that normalises to (about) zero: padding outside the frame."""
        if self.mean is None:
            return (0, 0, 0)
        scale = 1.0 / self.rescale_factor if self.rescale_factor else 1.0
        r, g, b = (round(min(max(m * scale, 0.0), 255.0)) for m in self.mean)
        return (r, g, b)

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) after the resize step, as ``transformers`` computes it."""
        if self.shortest_edge is None:
            assert self.height is not None and self.width is not None
            return self.height, self.width
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
        return (new_long, new_short) if width <= height else (new_short, new_long)

    def __call__(self, images_rgb: Sequence[np.ndarray]) -> np.ndarray:
        """Preprocess RGB uint8 HxWx3 images into an (N, 3, H, W) float32 batch."""
        height, width = self.output_size
        batch = np.empty((len(images_rgb), 3, height, width), dtype=np.float32)
        for index, image in enumerate(images_rgb):
            batch[index] = self.one(image)
        return batch

    def one(self, image_rgb: np.ndarray) -> np.ndarray:
        """Preprocess one RGB uint8 HxWx3 image into a (3, H, W) float32 array."""
        image = np.asarray(image_rgb)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
            raise PreprocessError(
                f"expected a non-empty HxWx3 uint8 RGB image, got {image.dtype} {image.shape}"
            )
        crop = self.crop_height is not None and self.crop_width is not None
        if self.do_resize:
            height, width = self.resized_size(image.shape[0], image.shape[1])
            window = None
            if crop and self.crop_height <= height and self.crop_width <= width:  # type: ignore[operator]
                top, left = center_crop_origin(height, width, self.crop_height, self.crop_width)  # type: ignore[arg-type]
                window = (slice(top, top + self.crop_height), slice(left, left + self.crop_width))  # type: ignore[operator]
            image = resize_uint8(image, height, width, self.resize_backend, self.resample, window)
        if crop:
            image = center_crop(image, self.crop_height, self.crop_width)  # type: ignore[arg-type]
        pixels = image.astype(np.float32)
        if self.mean is not None and self.std is not None:
            scale = np.float32(1.0 / self.rescale_factor) if self.rescale_factor else np.float32(1.0)
            mean = np.asarray(self.mean, dtype=np.float32) * scale
            std = np.asarray(self.std, dtype=np.float32) * scale
            pixels = (pixels - mean) / std
        elif self.rescale_factor:
            pixels = pixels * np.float32(self.rescale_factor)
        return np.ascontiguousarray(pixels.transpose(2, 0, 1))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra")
        data["mean"] = list(self.mean) if self.mean is not None else None
        data["std"] = list(self.std) if self.std is not None else None
        return {**data, **self.extra}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImagePreprocessing:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        try:
            values = {key: data[key] for key in known if key in data}
            for key in ("mean", "std"):
                if values.get(key) is not None:
                    values[key] = tuple(float(v) for v in values[key])
            return cls(**values, extra={k: v for k, v in data.items() if k not in known})
        except TypeError as exc:
            raise PreprocessError(f"bad preprocessing constants: {exc}") from exc

    @classmethod
    def from_file(cls, path: str | Path) -> ImagePreprocessing:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def from_processor_config(cls, config: Mapping[str, Any], resize_backend: str) -> ImagePreprocessing:
        """From a ``transformers`` image processor's ``to_dict()`` (``preprocessor_config.json``).

        Raises:
            PreprocessError: settings this module does not reproduce (other resample filters, padding).
        """
        size = dict(config.get("size") or {})
        do_resize = bool(config.get("do_resize", True))
        resample_code = int(config.get("resample", 3))
        if do_resize and resample_code not in RESAMPLE_FILTERS:
            raise PreprocessError(
                f"resample {resample_code} is not supported; only bilinear (2) and bicubic (3)"
            )
        crop = dict(config.get("crop_size") or {}) if config.get("do_center_crop") else {}
        if config.get("do_pad"):
            raise PreprocessError("processors that pad images are not supported")
        if size.get("longest_edge") or size.get("max_height"):
            raise PreprocessError(f"resize size {size} is not supported (shortest_edge or height/width only)")
        return cls(
            shortest_edge=size.get("shortest_edge"),
            height=size.get("height"),
            width=size.get("width"),
            resample=RESAMPLE_FILTERS.get(resample_code, "bicubic"),
            resize_backend=resize_backend,
            crop_height=crop.get("height"),
            crop_width=crop.get("width"),
            rescale_factor=float(config["rescale_factor"]) if config.get("do_rescale", True) else None,
            mean=tuple(config["image_mean"]) if config.get("do_normalize", True) else None,
            std=tuple(config["image_std"]) if config.get("do_normalize", True) else None,
            do_resize=do_resize,
        )


def center_crop_origin(image_height: int, image_width: int, height: int, width: int) -> tuple[int, int]:
    """(top, left) of a ``height`` x ``width`` center crop of an image at least that large."""
    return int((image_height - height) / 2.0), int((image_width - width) / 2.0)


def center_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Center crop to ``height`` x ``width``, zero-padding a smaller image first (torchvision's rule)."""
    h, w = image.shape[:2]
    if height > h or width > w:
        top, left = (height - h) // 2 if height > h else 0, (width - w) // 2 if width > w else 0
        bottom, right = (height - h + 1) // 2 if height > h else 0, (width - w + 1) // 2 if width > w else 0
        image = np.pad(image, ((top, bottom), (left, right), (0, 0)))
        h, w = image.shape[:2]
    top, left = center_crop_origin(h, w, height, width)
    return image[top : top + height, left : left + width]


def crop_box(
    frame_bgr: np.ndarray,
    box_xyxy: Sequence[float],
    padding: float = 0.1,
    square: bool = True,
    fill_rgb: tuple[int, int, int] = (0, 0, 0),
) -> np.ndarray:
    """Cut an RGB crop around a box from a BGR frame.

    Args:
        frame_bgr: HxWx3 uint8 frame.
        box_xyxy: x1, y1, x2, y2 in pixels.
        padding: extra margin on each side, as a fraction of the box's width (left, right) and height
            (top, bottom).
        square: grow the shorter side to the longer one around the box center, so a center crop of the
            result keeps the whole person.
        fill_rgb: colour of the parts of the crop outside the frame.

    Returns:
        An RGB uint8 crop, at least 1x1 pixels.
    """
    if padding < 0:
        raise PreprocessError(f"padding must be >= 0, got {padding}")
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 < x1 or y2 < y1:
        raise PreprocessError(f"invalid box {tuple(box_xyxy)}")
    w, h = x2 - x1, y2 - y1
    x1, x2, y1, y2 = x1 - padding * w, x2 + padding * w, y1 - padding * h, y2 + padding * h
    if square:
        side = max(x2 - x1, y2 - y1)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        x1, x2, y1, y2 = cx - side / 2, cx + side / 2, cy - side / 2, cy + side / 2
    left, top = math.floor(x1), math.floor(y1)
    right, bottom = max(math.ceil(x2), left + 1), max(math.ceil(y2), top + 1)
    frame_h, frame_w = frame_bgr.shape[:2]
    crop = np.empty((bottom - top, right - left, 3), dtype=np.uint8)
    crop[:] = fill_rgb
    sx1, sy1, sx2, sy2 = max(left, 0), max(top, 0), min(right, frame_w), min(bottom, frame_h)
    if sx2 > sx1 and sy2 > sy1:
        region = frame_bgr[sy1:sy2, sx1:sx2]
        crop[sy1 - top : sy2 - top, sx1 - left : sx2 - left] = cv2.cvtColor(region, cv2.COLOR_BGR2RGB)
    return crop
