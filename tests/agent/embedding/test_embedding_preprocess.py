"""The edge's image preprocessing equals CLIPImageProcessor's on real frames and person crops (1e-5)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from agent.embedding.preprocess import ImagePreprocessing, PreprocessError, crop_box, resize_uint8

transformers = pytest.importorskip("transformers")


def _processors(**kwargs: Any) -> list[tuple[str, Any]]:
    from transformers import CLIPImageProcessor

    processors: list[tuple[str, object]] = [("torchvision", CLIPImageProcessor(**kwargs))]
    try:
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    except ImportError:  # transformers < 5: CLIPImageProcessor itself is the PIL processor
        processors[0] = ("pil", processors[0][1])
    else:
        processors.append(("pil", CLIPImageProcessorPil(**kwargs)))
    return processors


def _rgb(image_bgr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image_bgr[:, :, ::-1])


def _crops(frames: list[np.ndarray], boxes: np.ndarray) -> list[np.ndarray]:
    """Whole frames, tight and padded crops of the people in frame 60, and odd shapes."""
    frame = frames[2]
    crops = [_rgb(f) for f in frames]
    for box in boxes:
        x1, y1, x2, y2 = box.astype(int)
        crops.append(_rgb(frame[y1:y2, x1:x2]))
        crops.append(crop_box(frame, box, padding=0.1, square=False))
        crops.append(crop_box(frame, box, padding=0.25, square=True))
    crops += [_rgb(frame[0:7, 0:300]), _rgb(frame[100:500, 600:603]), _rgb(frame[:224, :224])]
    return crops


@pytest.mark.parametrize(
    "settings",
    [
        {},  # ViT-B/32's 224 px bicubic
        {"size": {"shortest_edge": 64}, "crop_size": {"height": 64, "width": 64}},
        {"size": {"shortest_edge": 96}, "crop_size": {"height": 96, "width": 96}, "resample": 2},
        {
            "size": {"height": 80, "width": 80},
            "do_center_crop": False,
            "image_mean": [0.5] * 3,
            "image_std": [0.5] * 3,
        },
    ],
    ids=["224-bicubic", "64-bicubic", "96-bilinear", "siglip-style-80"],
)
def test_matches_clip_image_processor_on_real_images(
    sample_frames: list[np.ndarray], people_boxes: np.ndarray, settings: dict[str, object]
) -> None:
    crops = _crops(sample_frames, people_boxes)
    for backend, processor in _processors(**settings):
        mine = ImagePreprocessing.from_processor_config(processor.to_dict(), backend)
        ours = mine(crops)
        for index, crop in enumerate(crops):
            reference = processor(images=crop, return_tensors="np")["pixel_values"][0]
            assert ours[index].shape == reference.shape
            error = float(np.abs(ours[index] - reference).max())
            assert error <= 1e-5, f"{backend} crop {index} {crop.shape}: max error {error}"


def test_torchvision_resize_is_exact_for_arbitrary_sizes() -> None:
    torch = pytest.importorskip("torch")
    from torchvision.transforms.v2 import functional as tvf

    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (123, 77, 3), dtype=np.uint8)
    for height, width, mode, name in [
        (300, 40, tvf.InterpolationMode.BICUBIC, "bicubic"),
        (17, 201, tvf.InterpolationMode.BILINEAR, "bilinear"),
        (123, 30, tvf.InterpolationMode.BICUBIC, "bicubic"),
    ]:
        reference = tvf.resize(
            torch.from_numpy(image).permute(2, 0, 1), [height, width], interpolation=mode, antialias=True
        )
        ours = resize_uint8(image, height, width, "torchvision", name)
        np.testing.assert_array_equal(ours, reference.permute(1, 2, 0).numpy())
        window = (slice(3, height - 1), slice(2, width))
        np.testing.assert_array_equal(
            resize_uint8(image, height, width, "torchvision", name, window), ours[window]
        )


def test_preprocessing_round_trips_through_json() -> None:
    from transformers import CLIPImageProcessor

    mine = ImagePreprocessing.from_processor_config(CLIPImageProcessor().to_dict(), "torchvision")
    assert ImagePreprocessing.from_dict(mine.to_dict()) == mine
    assert mine.output_size == (224, 224) and mine.resized_size(576, 768) == (224, 298)
    assert mine.fill_rgb == (123, 117, 104)


def test_unsupported_processors_are_refused() -> None:
    with pytest.raises(PreprocessError, match="resample 1 is not supported"):
        ImagePreprocessing.from_processor_config({"resample": 1, "size": {"shortest_edge": 224}}, "pil")
    with pytest.raises(PreprocessError, match="resize_backend"):
        ImagePreprocessing.from_dict(
            {
                **ImagePreprocessing.from_processor_config(
                    {
                        "size": {"shortest_edge": 8},
                        "rescale_factor": 1 / 255,
                        "image_mean": [0, 0, 0],
                        "image_std": [1, 1, 1],
                    },
                    "pil",
                ).to_dict(),
                "resize_backend": "cv2",
            }
        )


def test_crop_box_pads_squares_and_fills_outside_the_frame() -> None:
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[:, :, 2] = 255  # red in BGR
    crop = crop_box(frame, (10, 20, 30, 60), padding=0.0, square=False)
    assert crop.shape == (40, 20, 3) and (crop[:, :, 0] == 255).all()  # RGB out
    padded = crop_box(frame, (10, 20, 30, 60), padding=0.1, square=False)
    assert padded.shape == (48, 24, 3)
    square = crop_box(frame, (0, 20, 20, 60), padding=0.0, square=True, fill_rgb=(1, 2, 3))
    assert square.shape == (40, 40, 3)
    # The square reaches 10 px left of the frame; that strip is the fill colour.
    assert (square[:, :10] == (1, 2, 3)).all() and (square[:, 10:, 0] == 255).all()
    assert crop_box(frame, (50, 50, 50, 50), padding=0.1).shape == (1, 1, 3)
    with pytest.raises(PreprocessError, match="invalid box"):
        crop_box(frame, (30, 20, 10, 60))
