"""ClipEncoder at the edge: no torch or transformers, embeddings like torch, bad exports refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from agent.embedding import (
    ClipEncoder,
    EmbedderConfig,
    EncoderError,
    OnnxRuntimeEngineConfig,
    TensorRTEngineConfig,
)
from engines import EngineError, ManifestError, write_manifest
from engines.manifest import read_manifest

REPO = Path(__file__).resolve().parents[3]


def test_loads_and_embeds_without_torch_or_transformers(clip_fp32: Path, people_boxes: np.ndarray) -> None:
    code = textwrap.dedent(
        f"""
        import sys, json
        import numpy as np
        from agent.embedding import ClipEncoder
        encoder = ClipEncoder.load({str(clip_fp32)!r}, providers=["cpu"])
        frame = np.random.default_rng(0).integers(0, 255, (576, 768, 3), dtype=np.uint8)
        crops = encoder.embed_crops(frame, {people_boxes.tolist()!r})
        texts = encoder.embed_texts(["a person falling down", "a man walking"])
        print(json.dumps({{
            "heavy": sorted(m for m in ("torch", "transformers", "tensorflow") if m in sys.modules),
            "crops": list(crops.shape), "texts": list(texts.shape),
            "norms": np.linalg.norm(crops, axis=1).round(5).tolist(),
        }}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert report["crops"] == [5, 16] and report["texts"] == [2, 16] and report["norms"] == [1.0] * 5


def test_embeddings_match_torch_on_people_in_the_sample_video(
    clip_fp32: Path, tiny_clip_dir: Path, sample_frames: list[np.ndarray], people_boxes: np.ndarray
) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    frame = sample_frames[2]
    with ClipEncoder.load(clip_fp32, providers=["cpu"], batch_size=2) as encoder:
        crops = encoder.embed_crops(frame, people_boxes, padding=0.15, square=True)
        texts = encoder.embed_texts(["a person walking", "a person falling down", "a car"])
        images = encoder.embed_images(sample_frames)
        regions = [(sample_frames[2], box) for box in people_boxes[:2]] + [
            (sample_frames[0], people_boxes[2])
        ]
        mixed = encoder.embed_regions(regions, padding=0.15, square=True)
        np.testing.assert_allclose(mixed[:2], crops[:2], atol=1e-6)  # same crops, batched across frames
        assert encoder.embed_crops(frame, np.zeros((0, 4))).shape == (0, 16)
        assert encoder.embed_texts([]).shape == (0, 16)
        logits = encoder.logits(crops, texts)
        fill = encoder.preprocessing.fill_rgb
    model = transformers.CLIPModel.from_pretrained(tiny_clip_dir).eval()
    processor = transformers.CLIPImageProcessor.from_pretrained(tiny_clip_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_clip_dir)
    from agent.embedding.preprocess import crop_box

    rgb = [crop_box(frame, box, 0.15, True, fill) for box in people_boxes]
    rgb += [np.ascontiguousarray(f[:, :, ::-1]) for f in sample_frames]
    tokens = tokenizer(
        ["a person walking", "a person falling down", "a car"],
        padding="max_length",
        max_length=16,
        return_tensors="pt",
    )
    with torch.no_grad():
        image = model.get_image_features(
            pixel_values=processor(images=rgb, return_tensors="pt")["pixel_values"]
        )
        text = model.get_text_features(**tokens)
    image = torch.nn.functional.normalize(getattr(image, "pooler_output", image), dim=-1).numpy()
    text = torch.nn.functional.normalize(getattr(text, "pooler_output", text), dim=-1).numpy()
    ours = np.concatenate([crops, images])
    assert ((ours * image).sum(axis=1) >= 0.9999).all()
    assert ((texts * text).sum(axis=1) >= 0.9999).all()
    expected_logits = model.logit_scale.exp().item() * image[: len(people_boxes)] @ text.T
    np.testing.assert_allclose(logits, expected_logits, rtol=1e-3, atol=1e-3)


def _copy(export: Path, tmp_path: Path) -> Path:
    target = tmp_path / "export"
    shutil.copytree(export, target, ignore=shutil.ignore_patterns(".*"))
    return target


def test_a_tampered_file_is_refused(clip_fp32: Path, tmp_path: Path) -> None:
    export = _copy(clip_fp32, tmp_path)
    data = bytearray((export / "text.onnx").read_bytes())
    data[-5] ^= 0x01
    (export / "text.onnx").write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"text\.onnx has sha256"):
        ClipEncoder.load(export)


def test_a_missing_file_is_refused(clip_fp32: Path, tmp_path: Path) -> None:
    export = _copy(clip_fp32, tmp_path)
    (export / "tokenizer.json").unlink()
    with pytest.raises(ManifestError, match=r"tokenizer\.json is missing"):
        ClipEncoder.load(export)


def test_a_corrupt_onnx_file_is_refused(clip_fp32: Path, tmp_path: Path) -> None:
    """Corrupted before the manifest was written (hashes match): the runtime still refuses it by name."""
    export = _copy(clip_fp32, tmp_path)
    graph = export / "vision.onnx"
    graph.write_bytes(graph.read_bytes()[:1000])
    write_manifest(export, read_manifest(export), files=list(read_manifest(export).files))
    with pytest.raises(EngineError, match=r"cannot load ONNX model .*vision\.onnx"):
        ClipEncoder.load(export, providers=["cpu"])


def test_a_directory_without_manifest_is_refused(clip_fp32: Path, tmp_path: Path) -> None:
    export = _copy(clip_fp32, tmp_path)
    (export / "manifest.json").unlink()
    with pytest.raises(ManifestError, match=r"no manifest\.json"):
        ClipEncoder.load(export)


def test_engines_that_cannot_serve_the_export_are_refused(clip_fp32: Path) -> None:
    with pytest.raises(EncoderError, match="--torch-programs"):
        ClipEncoder.load(clip_fp32, "torch")
    with pytest.raises(EngineError, match=r"onnxruntime-gpu"):
        ClipEncoder.load(clip_fp32, OnnxRuntimeEngineConfig(type="onnxruntime", providers=["cuda"]))


@pytest.mark.parametrize("quantization", ["onnxruntime-qdq", "onnxruntime-dynamic"])
def test_int8_onnxruntime_graphs_are_not_given_to_tensorrt(
    tmp_path: Path, clip_fp32: Path, quantization: str
) -> None:
    export = _copy(clip_fp32, tmp_path)
    manifest = read_manifest(export)
    manifest.graphs["vision"].update(precision="int8", quantization=quantization)
    write_manifest(export, manifest, files=list(manifest.files))
    with pytest.raises(EncoderError, match="quantized for ONNX Runtime"):
        ClipEncoder.load(export, TensorRTEngineConfig(type="tensorrt"))


def test_from_config(clip_fp32: Path) -> None:
    config = EmbedderConfig.model_validate(
        {
            "model_dir": str(clip_fp32),
            "engine": {"type": "onnxruntime", "providers": ["cpu"]},
            "batch_size": 3,
            "crop_padding": 0.2,
        }
    )
    with ClipEncoder.from_config(config) as encoder:
        assert encoder.batch_size == 3 and encoder.crop_padding == 0.2
        assert encoder.manifest_hash == __import__("engines").manifest_digest(clip_fp32)
        assert encoder.embed_texts(["x"] * 7).shape == (7, 16)
