"""What the two-step cloze costs beside the one-step call: the same crops, the same backend, one run.

Person crops come from the sample video (the detector's boxes). Each round re-ranks all of them
with ``cloze_scheme: one_step`` and then ``two_step`` (interleaved rounds, median taken), through a
real transformers backend: the model directory given, or else the tiny random Qwen2-VL the tests
use (its answers are noise; its cost is what a small model's prompt and decode cost). Counted per
candidate: requests (through the backend's request gate, as the budget counts them), prompt tokens
(the attention mask given to ``model.generate``), generated tokens, and wall milliseconds.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.detection import Detector
from agent.rerank.backends.base import LmmBackend
from agent.rerank.config import RerankConfig, TransformersBackendConfig
from agent.rerank.reranker import Reranker, RerankItem

SCHEMES = ("one_step", "two_step")


@dataclass
class SchemeCost:
    """Totals over one scheme's runs; ``seconds`` holds one wall time per round."""

    scheme: str
    candidates: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    new_tokens: int = 0
    seconds: list[float] = field(default_factory=list)

    def per_candidate(self, total: int) -> float:
        return total / max(1, self.candidates)

    @property
    def ms_per_candidate(self) -> float:
        rounds = max(1, len(self.seconds))
        return 1000.0 * statistics.median(self.seconds) / max(1, self.candidates // rounds)


def person_crops(video: Path, detector: Detector, count: int, padding: float = 0.15) -> list[np.ndarray]:
    """Up to ``count`` person crops: the most confident box of frames spread over the video."""
    capture = cv2.VideoCapture(str(video))
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or 1
    crops: list[np.ndarray] = []
    try:
        for index in np.linspace(0, frames - 1, count * 2).astype(int).tolist():
            if len(crops) >= count:
                break
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = capture.read()
            if not ok:
                continue
            [found] = detector.detect([frame])
            people = [i for i in range(len(found.xyxy)) if int(found.class_id[i]) == 0]
            if not people:
                continue
            best = max(people, key=lambda i: float(found.confidence[i]))
            x1, y1, x2, y2 = (float(v) for v in found.xyxy[best])
            pad_x, pad_y = (x2 - x1) * padding, (y2 - y1) * padding
            top, left = max(0, int(y1 - pad_y)), max(0, int(x1 - pad_x))
            crop = frame[top : int(y2 + pad_y), left : int(x2 + pad_x)]
            if crop.size:
                crops.append(np.ascontiguousarray(crop))
    finally:
        capture.release()
    return crops


class _Counting:
    """Counts what reaches the model: requests through the gate, prompt tokens through ``generate``."""

    def __init__(self, backend: Any) -> None:
        self.requests = 0
        self.prompt_tokens = 0
        self.new_tokens = 0
        backend.request_gate = self._gate
        generate: Callable[..., Any] = backend.model.generate
        pad_id = backend.tokenizer.pad_token_id

        def counted(**kwargs: Any) -> Any:
            self.prompt_tokens += int(kwargs["attention_mask"].sum())
            output = generate(**kwargs)
            self.new_tokens += int((output.sequences[:, kwargs["input_ids"].shape[1] :] != pad_id).sum())
            return output

        backend.model.generate = counted

    def _gate(self, requests: int) -> None:
        self.requests += requests


def build_backend(model: Path | None, max_new_tokens: int, device: str) -> tuple[LmmBackend, str]:
    """The transformers backend on ``model``, or on the tiny random Qwen2-VL built in a temp folder."""
    from agent.rerank.backends.transformers_backend import TransformersBackend

    label = str(model) if model is not None else "tiny random Qwen2-VL (tests/fixtures)"
    if model is None:
        from tests.fixtures.tiny_qwen2vl import build_tiny_qwen2vl

        model = build_tiny_qwen2vl(Path(tempfile.mkdtemp(prefix="bench-qwen2vl-")))
    config = TransformersBackendConfig(
        type="transformers", model=model, device=device, max_new_tokens=max_new_tokens, max_batch_size=4
    )
    return TransformersBackend(config), label


def measure(backend: LmmBackend, query: str, crops: list[np.ndarray], rounds: int) -> dict[str, SchemeCost]:
    """Re-rank every crop under each scheme, ``rounds`` interleaved times."""
    counter = _Counting(backend)
    costs = {scheme: SchemeCost(scheme) for scheme in SCHEMES}
    items = [RerankItem(query, 0.5, (crop,)) for crop in crops]
    rerankers = {s: Reranker(RerankConfig(cloze_scheme=s), backend) for s in SCHEMES}
    rerankers["one_step"].rerank_items(items[:1])  # warm up
    for _ in range(rounds):
        for scheme in SCHEMES:
            cost = costs[scheme]
            requests, prompt, new = counter.requests, counter.prompt_tokens, counter.new_tokens
            started = time.perf_counter()
            rerankers[scheme].rerank_items(items)
            cost.seconds.append(time.perf_counter() - started)
            cost.candidates += len(items)
            cost.requests += counter.requests - requests
            cost.prompt_tokens += counter.prompt_tokens - prompt
            cost.new_tokens += counter.new_tokens - new
    return costs


def report(costs: dict[str, SchemeCost]) -> list[str]:
    """The side-by-side table as lines."""
    one, two = costs["one_step"], costs["two_step"]
    lines = [
        f"{'per candidate':24s} {'one_step':>10s} {'two_step':>10s} {'two/one':>8s}",
    ]
    rows = [
        ("requests", one.per_candidate(one.requests), two.per_candidate(two.requests)),
        ("prompt tokens", one.per_candidate(one.prompt_tokens), two.per_candidate(two.prompt_tokens)),
        ("generated tokens", one.per_candidate(one.new_tokens), two.per_candidate(two.new_tokens)),
        ("wall ms (median round)", one.ms_per_candidate, two.ms_per_candidate),
    ]
    for name, a, b in rows:
        lines.append(f"{name:24s} {a:10.1f} {b:10.1f} {b / a if a else float('nan'):8.2f}")
    return lines
