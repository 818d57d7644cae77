"""Tiny random models built offline for the export and embedding tests.

A CLIP from ``CLIPConfig`` (hidden size 32, 2 layers, 32 px images) with a byte-level BPE tokenizer
trained here on a few sentences and wrapped as a ``CLIPTokenizer``, saved with ``save_pretrained`` as
a local model directory; and a YOLOv8n from its ultralytics yaml (random weights, no download).
The tests of ``tests/export`` and ``tests/agent/embedding`` share one copy per session through
``shared_dir`` (under pytest's session base temp directory).
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SAMPLE_VIDEO = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")

CORPUS = [
    "a person falling down on the street",
    "someone being hit by a car door",
    "a man running across the road",
    "a woman walking with a bag",
    "two people fighting near a car",
    "a child riding a bicycle in the park",
    "a person lying on the ground",
    "an old man with a walking stick",
    "a person climbing over a fence at night",
    "people standing and talking outside a shop",
    "a photo of a person",
    "a cyclist falls off the bike",
] * 4


def shared_dir(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """Build ``name`` once per session (across conftests) under the session's base temp directory."""
    root = tmp_path_factory.getbasetemp()
    target = root / name
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / ".complete").exists():
            target.mkdir(parents=True, exist_ok=True)
            build(target)
            (target / ".complete").touch()
    return target


def build_tiny_clip(directory: Path) -> None:
    """Save a random tiny CLIP model, its processor and a locally trained tokenizer into ``directory``."""
    import torch
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    torch.manual_seed(0)
    bpe = Tokenizer(models.BPE(unk_token="<|endoftext|>", end_of_word_suffix="</w>"))
    bpe.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|startoftext|>", "<|endoftext|>"],
        end_of_word_suffix="</w>",
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(CORPUS, trainer)
    model_json = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model_json["merges"]]
    tokenizer = CLIPTokenizer(vocab=model_json["vocab"], merges=merges)  # type: ignore[arg-type]
    vocab_size = len(tokenizer)
    config = CLIPConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "vocab_size": vocab_size,
            "max_position_embeddings": 16,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 16,
        },
        projection_dim=16,
    )
    model = CLIPModel(config).eval()
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def build_tiny_yolo(directory: Path) -> Path:
    """Save a random YOLOv8n (from its yaml, nothing downloaded) as ``directory/tiny-yolo.pt``."""
    from agent._ultralytics import import_ultralytics

    import_ultralytics()
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    model = YOLO("yolov8n.yaml")
    # An untrained head scores every anchor near 1e-8; spread the class biases so some anchors pass a
    # confidence threshold and a detector has boxes to report.
    # Likewise make the box distributions prefer short distances, so boxes are person-sized, not frame-sized.
    network: Any = model.model
    head = network.model[-1]
    for branch in head.cv3:
        branch[-1].bias.data = torch.empty_like(branch[-1].bias).uniform_(-5.0, 1.0)
    for branch in head.cv2:
        branch[-1].weight.data *= 0.2
        branch[-1].bias.data = (-0.6 * torch.arange(head.reg_max, dtype=torch.float32)).repeat(4)
    path = directory / "tiny-yolo.pt"
    model.save(str(path))
    return path


def export_tiny_clip(directory: Path, model: Path, precision: str) -> None:
    """Export the tiny CLIP at ``precision`` into ``directory`` (INT8 calibrated on the sample video)."""
    from export.clip import ClipExportConfig, export_clip

    export_clip(
        ClipExportConfig(
            model=str(model),
            out=directory,
            precision=precision,
            calibration=SAMPLE_VIDEO if precision == "int8" else None,
            calibration_frames=16,
            calibration_crops=64,
            max_batch=16,
        )
    )


def build_tiny_siglip(directory: Path) -> None:
    """Save a random tiny SigLIP (no attention mask, fixed-size bilinear resize) with a fast BPE tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, SiglipConfig, SiglipImageProcessor, SiglipModel

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.normalizer = normalizers.Lowercase()
    bpe.pre_tokenizer = pre_tokenizers.Metaspace()
    bpe.train_from_iterator(
        CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "</s>", "<unk>"])
    )
    bpe.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", bpe.token_to_id("</s>"))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=16
    )
    layers = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = SiglipConfig(
        text_config={
            **layers,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 16,
            "pad_token_id": 0,
        },
        vision_config={**layers, "image_size": 32, "patch_size": 16},
    )
    torch.manual_seed(0)
    SiglipModel(config).eval().save_pretrained(directory)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
