"""SigLIP through the CLIP exporter: one text input, a fixed-size resize, a logit bias."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from export.clip import ClipExportConfig, export_clip
from tests.fixtures.tiny_models import build_tiny_siglip

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def test_siglip_exports_and_runs_at_the_edge(tmp_path: Path, sample_video: Path) -> None:
    from agent.embedding import ClipEncoder
    from export.calibration import read_frames

    model_dir = tmp_path / "siglip"
    model_dir.mkdir()
    build_tiny_siglip(model_dir)
    result = export_clip(ClipExportConfig(model=str(model_dir), out=tmp_path / "out"))
    assert result.manifest.kind == "siglip"
    assert [t["name"] for t in result.manifest.graphs["text"]["inputs"]] == ["input_ids"]
    info = json.loads((tmp_path / "out" / "model.json").read_text())
    assert info["logit_bias"] is not None
    preprocess = json.loads((tmp_path / "out" / "preprocess.json").read_text())
    assert (
        preprocess["height"] == 32 and preprocess["crop_height"] is None and preprocess["mean"] == [0.5] * 3
    )

    frames = read_frames(sample_video, 2)
    texts = ["a person falling down", "a cyclist falls off the bike"]
    with ClipEncoder.load(tmp_path / "out", providers=["cpu"]) as encoder:
        images, words = encoder.embed_images(frames), encoder.embed_texts(texts)
    model = transformers.SiglipModel.from_pretrained(model_dir).eval()
    processor = transformers.SiglipImageProcessor.from_pretrained(model_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    rgb = [np.ascontiguousarray(f[:, :, ::-1]) for f in frames]
    with torch.no_grad():
        image = model.get_image_features(
            pixel_values=processor(images=rgb, return_tensors="pt")["pixel_values"]
        )
        ids = tokenizer(texts, padding="max_length", max_length=16, return_tensors="pt")["input_ids"]
        text = model.get_text_features(input_ids=ids)
    image = torch.nn.functional.normalize(getattr(image, "pooler_output", image), dim=-1).numpy()
    text = torch.nn.functional.normalize(getattr(text, "pooler_output", text), dim=-1).numpy()
    assert ((images * image).sum(axis=1) >= 0.9999).all() and ((words * text).sum(axis=1) >= 0.9999).all()
