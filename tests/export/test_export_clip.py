"""CLIP export: ONNX graphs that match torch at each precision, a manifest of every file, typed failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engines import create_engine, verify_manifest
from engines.manifest import sha256_file
from export.calibration import person_crops, read_frames
from export.clip import ClipExportConfig, export_clip
from export.errors import CalibrationError, ExportError, ParityError, SourceModelError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

PROMPTS = ["a person falling down", "a woman walking with a bag", "two people fighting near a car"]


def _torch_embeddings(model_dir: Path, pixels: np.ndarray, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Reference embeddings straight from transformers, independent of the exporter's wrappers."""
    from transformers import AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokens = tokenizer(texts, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
    with torch.no_grad():
        image = model.get_image_features(pixel_values=torch.from_numpy(pixels))
        text = model.get_text_features(**tokens)
    image = image if isinstance(image, torch.Tensor) else image.pooler_output
    text = text if isinstance(text, torch.Tensor) else text.pooler_output
    return (
        torch.nn.functional.normalize(image, dim=-1).numpy(),
        torch.nn.functional.normalize(text, dim=-1).numpy(),
    )


def _onnx_embeddings(
    export_dir: Path, pixels: np.ndarray, tokens: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    with create_engine("onnxruntime", export_dir / "vision.onnx", providers=["cpu"]) as vision:
        image = vision.infer({"pixel_values": pixels})["image_embeds"]
    with create_engine("onnxruntime", export_dir / "text.onnx", providers=["cpu"]) as text:
        texts = text.infer(tokens)["text_embeds"]
    return image, texts


def _tokens(model_dir: Path) -> dict[str, np.ndarray]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    out = tokenizer(PROMPTS, padding="max_length", max_length=16, truncation=True, return_tensors="np")
    return {
        "input_ids": out["input_ids"].astype(np.int64),
        "attention_mask": out["attention_mask"].astype(np.int64),
    }


def _real_pixels(model_dir: Path, video: Path, count: int = 12) -> np.ndarray:
    from transformers import CLIPImageProcessor

    frames = read_frames(video, 8)
    crops = person_crops(frames, count, np.random.default_rng(99))
    processor = CLIPImageProcessor.from_pretrained(model_dir)
    rgb = [np.ascontiguousarray(c[:, :, ::-1]) for c in crops]
    return processor(images=rgb, return_tensors="np")["pixel_values"].astype(np.float32)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_fp32_export_matches_torch_on_fresh_inputs(tiny_clip_dir: Path, clip_fp32: Path) -> None:
    pixels = np.random.default_rng(123).standard_normal((7, 3, 32, 32)).astype(np.float32)
    tokens = _tokens(tiny_clip_dir)
    image_ref, text_ref = _torch_embeddings(tiny_clip_dir, pixels, PROMPTS)
    image, text = _onnx_embeddings(clip_fp32, pixels, tokens)
    assert image.shape == (7, 16) and text.shape == (3, 16)
    assert _cosines(image, image_ref).min() >= 0.9999
    assert _cosines(text, text_ref).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(image, axis=1), 1.0, atol=1e-5)
    manifest = verify_manifest(clip_fp32)
    assert manifest.precision == "fp32" and manifest.opset >= 17
    assert {p["graph"] for p in manifest.parity} == {"vision", "text"}
    assert all(p["min_cosine"] >= 0.9999 for p in manifest.parity)


def test_int8_export_matches_torch_within_its_tolerance(
    tiny_clip_dir: Path, clip_int8: Path, sample_video: Path
) -> None:
    pixels = _real_pixels(tiny_clip_dir, sample_video)
    image_ref, _ = _torch_embeddings(tiny_clip_dir, pixels, PROMPTS)
    image, _ = _onnx_embeddings(clip_int8, pixels, _tokens(tiny_clip_dir))
    assert _cosines(image, image_ref).min() >= 0.99
    manifest = verify_manifest(clip_int8)
    assert manifest.graphs["vision"]["precision"] == "int8" and manifest.graphs["text"]["precision"] == "fp32"
    assert manifest.extra["calibration"]["source"] == str(sample_video)
    import onnx

    ops = {node.op_type for node in onnx.load(str(clip_int8 / "vision.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_dynamic_int8_export_needs_no_calibration_and_matches_torch(
    tiny_clip_dir: Path, tmp_path: Path, sample_video: Path
) -> None:
    out = tmp_path / "int8-dynamic"
    export_clip(
        ClipExportConfig(
            model=str(tiny_clip_dir), out=out, precision="int8", int8_mode="dynamic", max_batch=16
        )
    )
    pixels = _real_pixels(tiny_clip_dir, sample_video)
    image_ref, _ = _torch_embeddings(tiny_clip_dir, pixels, PROMPTS)
    image, _ = _onnx_embeddings(out, pixels, _tokens(tiny_clip_dir))
    assert _cosines(image, image_ref).min() >= 0.99
    manifest = verify_manifest(out)
    assert manifest.graphs["vision"]["precision"] == "int8"
    assert manifest.graphs["vision"]["quantization"] == "onnxruntime-dynamic"
    import onnx

    ops = {node.op_type for node in onnx.load(str(out / "vision.onnx")).graph.node}
    assert ops & {"DynamicQuantizeLinear", "MatMulInteger"} and "QuantizeLinear" not in ops


def test_unknown_int8_mode_is_refused(tiny_clip_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="int8_mode"):
        export_clip(
            ClipExportConfig(model=str(tiny_clip_dir), out=tmp_path / "o", precision="int8", int8_mode="fast")
        )


def test_fp16_export_matches_torch_within_its_tolerance(tiny_clip_dir: Path, tmp_path: Path) -> None:
    result = export_clip(ClipExportConfig(model=str(tiny_clip_dir), out=tmp_path / "fp16", precision="fp16"))
    import onnx

    weights = onnx.load(str(tmp_path / "fp16" / "vision.onnx")).graph.initializer
    assert any(w.data_type == onnx.TensorProto.FLOAT16 for w in weights)
    pixels = np.random.default_rng(5).standard_normal((4, 3, 32, 32)).astype(np.float32)
    image_ref, text_ref = _torch_embeddings(tiny_clip_dir, pixels, PROMPTS)
    image, text = _onnx_embeddings(tmp_path / "fp16", pixels, _tokens(tiny_clip_dir))
    assert _cosines(image, image_ref).min() >= 0.999 and _cosines(text, text_ref).min() >= 0.999
    assert all(p.metrics["min_cosine"] >= 0.999 for p in result.parity)


def test_manifest_lists_every_file_with_the_right_hash(clip_fp32: Path) -> None:
    data = json.loads((clip_fp32 / "manifest.json").read_text())
    on_disk = {p.name for p in clip_fp32.iterdir() if p.is_file() and not p.name.startswith(".")} - {
        "manifest.json"
    }
    assert (
        set(data["files"])
        == on_disk
        == {"vision.onnx", "text.onnx", "tokenizer.json", "preprocess.json", "model.json"}
    )
    for name, entry in data["files"].items():
        assert entry["sha256"] == sha256_file(clip_fp32 / name), name
    assert data["source"]["model"] and {"torch", "transformers", "onnx", "onnxruntime"} <= set(
        data["versions"]
    )
    assert data["graphs"]["vision"]["inputs"][0]["shape"] == ["batch", 3, 32, 32]
    model = json.loads((clip_fp32 / "model.json").read_text())
    assert model["logit_scale"] == pytest.approx(np.exp(np.log(1 / 0.07)), rel=1e-4)
    preprocess = json.loads((clip_fp32 / "preprocess.json").read_text())
    assert (
        preprocess["resample"] == "bicubic"
        and preprocess["crop_height"] == 32
        and len(preprocess["mean"]) == 3
    )


def test_graphs_have_a_named_dynamic_batch_axis(clip_fp32: Path) -> None:
    import onnx

    for name in ("vision.onnx", "text.onnx"):
        model = onnx.load(str(clip_fp32 / name))
        for value in (*model.graph.input, *model.graph.output):
            assert value.type.tensor_type.shape.dim[0].dim_param == "batch", (name, value.name)


def test_failed_parity_raises_a_typed_error_and_writes_no_manifest(
    tiny_clip_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import export.clip as clip_module
    from export.specs import Tolerance

    original = clip_module.clip_vision_spec

    def impossible(*args: object, **kwargs: object) -> object:
        spec = original(*args, **kwargs)  # type: ignore[arg-type]
        return type(spec)(**{**spec.__dict__, "tolerance": {"fp32": Tolerance(min_cosine=1.000001)}})

    monkeypatch.setattr(clip_module, "clip_vision_spec", impossible)
    with pytest.raises(ParityError, match="parity check failed for the vision graph") as info:
        export_clip(ClipExportConfig(model=str(tiny_clip_dir), out=tmp_path / "out"))
    assert info.value.graph == "vision" and info.value.metric == "min_cosine" and info.value.value < 1.000001
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_int8_without_calibration_is_a_calibration_error(tiny_clip_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="INT8 needs calibration images"):
        export_clip(ClipExportConfig(model=str(tiny_clip_dir), out=tmp_path / "out", precision="int8"))


def test_a_model_that_is_not_here_is_never_downloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(SourceModelError, match="watchword models pull clip openai/clip-vit-base-patch32"):
        export_clip(
            ClipExportConfig(
                model="openai/clip-vit-base-patch32", out=tmp_path / "out", models_dir=tmp_path / "models"
            )
        )


def test_torch_programs_run_on_the_torch_engine(tiny_clip_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "with-programs"
    export_clip(ClipExportConfig(model=str(tiny_clip_dir), out=out, torch_programs=True))
    manifest = verify_manifest(out)
    assert manifest.graphs["vision"]["torch_program"] == "vision.pt2" and "vision.pt2" in manifest.files
    pixels = np.random.default_rng(8).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with create_engine("torch", out / "vision.pt2") as engine:
        eager = engine.infer({"pixel_values": pixels})["image_embeds"]
    image_ref, _ = _torch_embeddings(tiny_clip_dir, pixels, PROMPTS)
    assert _cosines(eager, image_ref).min() >= 0.99999
