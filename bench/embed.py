"""Crop embedding throughput on this CPU, measured side by side in one run.

A ViT-B/32-sized CLIP image encoder (random weights: the timing does not depend on them) embeds person
crops from the sample video four ways: torch eager one crop at a time, torch batched, ONNX Runtime
batched in fp32, and ONNX Runtime batched in INT8 (static quantization calibrated on other crops of
the same video). It prints crops/s, the speed-ups the issue targets, and the cosine of the INT8
embeddings against fp32.

    python bench/embed.py [--crops 64] [--batch 16] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SAMPLE_VIDEO = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def _crops(count: int, seed: int) -> list[np.ndarray]:
    from export.calibration import person_crops, read_frames

    frames = read_frames(SAMPLE_VIDEO, 24)
    return person_crops(frames, count, np.random.default_rng(seed))


def _rate(run: Callable[[], object], items: int, repeats: int = 2) -> float:
    run()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return items / best


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--crops", type=int, default=64, help="crops embedded per measurement")
    parser.add_argument("--batch", type=int, default=16, help="batch size of the batched runs")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="CPU threads for torch and ORT"
    )
    parser.add_argument("--calibration-crops", type=int, default=64)
    args = parser.parse_args()
    if not SAMPLE_VIDEO.is_file():
        print(f"needs the sample video {SAMPLE_VIDEO} (Debian package opencv-doc)")
        return 2

    import torch

    from agent.embedding.preprocess import ImagePreprocessing
    from bench.random_models import clip_image_encoder
    from engines import Engine, create_engine
    from export.onnx_graph import torch_to_onnx
    from export.quantize import quantize_int8
    from export.specs import clip_vision_spec

    torch.set_num_threads(args.threads)
    encoder = clip_image_encoder(patch_size=32)
    preprocessing = ImagePreprocessing(
        shortest_edge=224,
        height=None,
        width=None,
        resample="bicubic",
        resize_backend="torchvision",
        crop_height=224,
        crop_width=224,
        rescale_factor=1 / 255,
        mean=(0.48145466, 0.4578275, 0.40821073),
        std=(0.26862954, 0.26130258, 0.27577711),
    )
    crops = [c[:, :, ::-1].copy() for c in _crops(args.crops, seed=1)]
    started = time.perf_counter()
    pixels = preprocessing(crops)
    preprocess_rate = len(crops) / (time.perf_counter() - started)
    batches = [pixels[i : i + args.batch] for i in range(0, len(pixels), args.batch)]

    def torch_single() -> None:
        with torch.inference_mode():
            for row in pixels:
                encoder(torch.from_numpy(row[None]))

    def torch_batched() -> np.ndarray:
        with torch.inference_mode():
            return np.concatenate([encoder(torch.from_numpy(b)).numpy() for b in batches])

    with tempfile.TemporaryDirectory(prefix="watchword-bench-") as work:
        fp32_path, int8_path = Path(work) / "vision.onnx", Path(work) / "vision-int8.onnx"
        t0 = time.perf_counter()
        torch_to_onnx(encoder, clip_vision_spec(224, 512), fp32_path, opset=17)
        export_s = time.perf_counter() - t0
        calibration = preprocessing([c[:, :, ::-1].copy() for c in _crops(args.calibration_crops, seed=2)])
        t0 = time.perf_counter()
        quantize_int8(
            fp32_path,
            int8_path,
            ({"pixel_values": calibration[i : i + 8]} for i in range(0, len(calibration), 8)),
        )
        quantize_s = time.perf_counter() - t0
        fp32 = create_engine("onnxruntime", fp32_path, providers=["cpu"], intra_op_threads=args.threads)
        int8 = create_engine("onnxruntime", int8_path, providers=["cpu"], intra_op_threads=args.threads)

        def run(engine: Engine) -> Callable[[], np.ndarray]:
            return lambda: np.concatenate(
                [engine.infer({"pixel_values": b})["image_embeds"] for b in batches]
            )

        rates = {
            "torch eager, one crop at a time": _rate(torch_single, len(pixels), repeats=1),
            f"torch eager, batch {args.batch}": _rate(torch_batched, len(pixels)),
            f"ONNX Runtime fp32, batch {args.batch}": _rate(run(fp32), len(pixels)),
            f"ONNX Runtime int8, batch {args.batch}": _rate(run(int8), len(pixels)),
        }
        reference, a, b = torch_batched(), run(fp32)(), run(int8)()
        fp32.close()
        int8.close()

    def cosine(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))

    names = list(rates)
    print(
        f"ViT-B/32-sized CLIP image encoder, {len(pixels)} person crops of {SAMPLE_VIDEO.name}, "
        f"{args.threads} threads"
    )
    print(
        f"(export {export_s:.0f} s, INT8 calibration {quantize_s:.0f} s on {len(calibration)} crops; "
        f"numpy preprocessing {preprocess_rate:.0f} crops/s, not included below)\n"
    )
    print(f"| {'runtime':<36} | {'crops/s':>8} | {'vs torch one-at-a-time':>22} |")
    print(f"|{'-' * 38}|{'-' * 10}|{'-' * 24}|")
    for name in names:
        print(f"| {name:<36} | {rates[name]:>8.1f} | {rates[name] / rates[names[0]]:>21.2f}x |")
    ort_vs_single = rates[names[2]] / rates[names[0]]
    int8_vs_fp32 = rates[names[3]] / rates[names[2]]
    cos = cosine(b, a)
    print()
    print(
        f"ONNX Runtime batched vs torch one-at-a-time: {ort_vs_single:.2f}x (target >= 1.5x) "
        f"{'PASS' if ort_vs_single >= 1.5 else 'MISS'}"
    )
    print(
        f"INT8 vs fp32 (ONNX Runtime):                 {int8_vs_fp32:.2f}x (target >= 1.5x) "
        f"{'PASS' if int8_vs_fp32 >= 1.5 else 'MISS'}"
    )
    print(
        f"cosine INT8 vs fp32: min {cos.min():.4f}, mean {cos.mean():.4f} (target min >= 0.99) "
        f"{'PASS' if cos.min() >= 0.99 else 'MISS'}"
    )
    print(f"cosine fp32 ONNX vs torch: min {cosine(a, reference).min():.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
