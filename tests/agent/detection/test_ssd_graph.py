"""The SSD's frozen graph trimmed to the nodes its text graph uses: same network, read faster."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from agent.detection import build_detector
from agent.detection.config import SSDDetectorConfig
from agent.detection.ssd_graph import GraphFormatError, text_graph_names, trim_graph, trimmed_frozen_graph
from export.errors import SourceModelError
from export.ssd import opencv_reads_tensorflow, packaged_ssd_files

OPENCV_DNN = SSDDetectorConfig.model_validate({"type": "ssd-mobilenet", "engine": {"type": "opencv-dnn"}})


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _node(name: str, op: str, weights: bytes = b"") -> bytes:
    # NodeDef: name = 1, op = 2, input = 3 (the op before the name: order is free in protobuf)
    body = _field(2, op.encode()) + _field(1, name.encode())
    return _field(1, body + (_field(3, weights) if weights else b""))


def test_trim_keeps_the_named_nodes_and_every_other_field_byte_for_byte() -> None:
    version = _varint(3 << 3 | 0) + _varint(27)  # the deprecated GraphDef.version, a varint
    versions = _field(4, _varint(1 << 3 | 0) + _varint(26))  # GraphDef.versions, a message
    nodes = [
        _node("input", "Placeholder"),
        _node("unused", "Const", b"x" * 300),
        _node("conv/w", "Const", b"w"),
    ]
    graph = version + nodes[0] + versions + nodes[1] + nodes[2]
    trimmed, kept, total = trim_graph(graph, {"input", "conv/w"})
    assert (kept, total) == (2, 3)
    assert trimmed == version + nodes[0] + versions + nodes[2]
    assert trim_graph(graph, {"input", "unused", "conv/w"})[0] == graph


@pytest.mark.parametrize("garbage", [b"not a tensorflow graph" * 5, _field(1, b"\x0a\x05ab"), b"\x0a\xff"])
def test_bytes_that_are_not_a_graph_are_refused(garbage: bytes) -> None:
    with pytest.raises(GraphFormatError):
        trim_graph(garbage, set())


def test_text_graph_names_take_definitions_and_inputs() -> None:
    text = 'node {\n  name: "a/b"\n  op: "Conv2D"\n  input: "x:1"\n  input: "^ctrl"\n  input: "w"\n}\n'
    assert text_graph_names(text) == {"a/b", "x", "ctrl", "w"}


@pytest.fixture
def packaged() -> tuple[Path, Path]:
    if not opencv_reads_tensorflow():
        pytest.skip("the opencv-dnn engine needs OpenCV 4 (OpenCV 5 has no TensorFlow importer)")
    try:
        return packaged_ssd_files()
    except SourceModelError as exc:
        pytest.skip(str(exc))


def test_the_trimmed_graph_finds_the_same_people_and_is_made_once(
    packaged: tuple[Path, Path], tmp_path: Path, sample_frames: list[np.ndarray]
) -> None:
    model, graph = packaged
    cache = tmp_path / "cache"
    with build_detector(OPENCV_DNN) as full:
        expected = full.detect(sample_frames[:6])
    with build_detector(OPENCV_DNN, tmp_path) as trimmed:
        got = trimmed.detect(sample_frames[:6])
    copies = list((cache / "ssd-graph").glob("*.pb"))
    assert len(copies) == 1 and copies[0].stat().st_size < model.stat().st_size
    assert copies[0].name in trimmed.engine.name  # the network was read from the copy
    for ours, theirs in zip(got, expected, strict=True):
        np.testing.assert_array_equal(ours.xyxy, theirs.xyxy)
        np.testing.assert_array_equal(ours.confidence, theirs.confidence)
    made = copies[0].stat().st_mtime_ns
    assert trimmed_frozen_graph(model, graph, cache) == copies[0]
    assert copies[0].stat().st_mtime_ns == made  # read, not made again


def test_a_damaged_copy_is_dropped_and_the_full_graph_read(
    packaged: tuple[Path, Path], tmp_path: Path
) -> None:
    model, graph = packaged
    cache = tmp_path / "cache"
    copy = trimmed_frozen_graph(model, graph, cache)
    assert copy != model
    with open(copy, "r+b") as handle:
        handle.truncate(copy.stat().st_size // 3)
    with build_detector(OPENCV_DNN, tmp_path) as detector:
        assert detector.engine.name.startswith("opencv-dnn(frozen_inference_graph.pb")
    assert not copy.exists()
    assert trimmed_frozen_graph(model, graph, cache) == copy and copy.exists()  # made again next time


def test_an_unwritable_cache_or_a_changed_text_graph_reads_the_full_or_a_new_copy(
    packaged: tuple[Path, Path], tmp_path: Path
) -> None:
    model, graph = packaged
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert trimmed_frozen_graph(model, graph, blocker / "cache") == model
    graph_copy = Path(shutil.copy(graph, tmp_path / graph.name))
    first = trimmed_frozen_graph(model, graph_copy, tmp_path / "cache")
    stat = graph_copy.stat()
    os.utime(graph_copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = trimmed_frozen_graph(model, graph_copy, tmp_path / "cache")
    assert first != second and second.exists()
    assert not first.exists()  # the copy for the older text graph is gone
