"""Reading TensorFlow graphs without TensorFlow: the text format and the frozen graph's constants."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from export.errors import SourceModelError
from export.ssd_onnx import convert_ssd
from export.tf_graph import GraphFormatError, frozen_constants, parse_text_graph

TEXT_GRAPH = """
# a comment
node {
  name: "input"
  op: "Placeholder"
  attr { key: "dtype" value { type: DT_UINT8 } }
}
node {
  name: "conv"
  op: "Conv2D"
  input: "input"
  input: "conv/weights"
  attr { key: "padding" value { s: "SAME" } }
  attr { key: "strides" value { list { i: 1 i: 2 i: 2 i: 1 } } }
}
node {
  name: "prior"
  op: "PriorBox"
  input: "conv"
  attr { key: "clip" value { b: false } }
  attr {
    key: "width"
    value { tensor { dtype: DT_FLOAT tensor_shape { dim { size: 2 } } float_val: 30.0 float_val: 42.5 } }
  }
  attr { key: "eps" value { f: 0.001 } }
  attr { key: "label" value { s: "a \\"quoted\\" name" } }
}
"""


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _const_node(name: str, tensor: bytes, op: str = "Const") -> bytes:
    attr = _field(1, b"value") + _field(2, _field(8, tensor))
    return _field(1, name.encode()) + _field(2, op.encode()) + _field(5, attr)


def _tensor(dtype: int, dims: list[int], content: bytes = b"", floats: list[float] | None = None) -> bytes:
    shape = b"".join(_field(2, _field(1, d)) for d in dims)
    out = _field(1, dtype) + _field(2, shape)
    if content:
        out += _field(4, content)
    if floats is not None:
        out += _field(5, struct.pack(f"<{len(floats)}f", *floats))
    return out


def test_the_text_format_parser_reads_nodes_inputs_and_attributes() -> None:
    nodes = parse_text_graph(TEXT_GRAPH)
    assert [(n.name, n.op) for n in nodes] == [
        ("input", "Placeholder"),
        ("conv", "Conv2D"),
        ("prior", "PriorBox"),
    ]
    assert nodes[1].inputs == ["input", "conv/weights"]
    assert nodes[1].attrs == {"padding": "SAME", "strides": [1, 2, 2, 1]}
    prior = nodes[2].attrs
    assert prior["clip"] is False and prior["eps"] == pytest.approx(0.001)
    np.testing.assert_allclose(prior["width"], [30.0, 42.5])
    assert prior["label"] == 'a "quoted" name'
    assert nodes[0].attrs["dtype"] == "DT_UINT8"


@pytest.mark.parametrize("text", ['node { name: "a" op: "X"', 'node { name: "a" }', "node { name: }"])
def test_a_broken_text_graph_is_refused(text: str) -> None:
    with pytest.raises(GraphFormatError):
        parse_text_graph(text)


def test_constants_are_decoded_from_the_wire_format() -> None:
    weights = np.arange(6, dtype=np.float32).reshape(2, 3)
    graph = (
        _field(1, _const_node("w", _tensor(1, [2, 3], content=weights.tobytes())))
        + _field(1, _const_node("filled", _tensor(1, [2, 2], floats=[0.5])))
        + _field(1, _const_node("skipped", _tensor(1, [1], floats=[9.0])))
        + _field(4, _varint(5))  # another GraphDef field (versions) is skipped
    )
    constants = frozen_constants(graph, {"w", "filled"})
    np.testing.assert_array_equal(constants["w"], weights)
    np.testing.assert_array_equal(constants["filled"], np.full((2, 2), 0.5, np.float32))
    assert set(constants) == {"w", "filled"}


def test_missing_or_non_constant_nodes_and_truncated_bytes_are_refused() -> None:
    graph = _field(1, _const_node("w", _tensor(1, [1], floats=[1.0]), op="Identity"))
    with pytest.raises(GraphFormatError, match="not a constant"):
        frozen_constants(graph, {"w"})
    with pytest.raises(GraphFormatError, match="no constants"):
        frozen_constants(b"", {"w"})
    with pytest.raises(GraphFormatError, match=r"past the end|varint"):
        frozen_constants(graph[:-3], {"w"})


def test_the_converter_names_an_operator_it_does_not_know(tmp_path: Path) -> None:
    graph = tmp_path / "g.pbtxt"
    graph.write_text(
        'node { name: "x" op: "Placeholder" }\nnode { name: "y" op: "ResizeBilinear" input: "x" }\n'
    )
    model = tmp_path / "m.pb"
    model.write_bytes(b"")
    with pytest.raises(SourceModelError, match="ResizeBilinear"):
        convert_ssd(model, graph)


def test_a_corrupt_frozen_graph_is_called_corrupt(tmp_path: Path) -> None:
    graph = tmp_path / "g.pbtxt"
    graph.write_text(TEXT_GRAPH.replace('"PriorBox"', '"Identity"'))
    model = tmp_path / "broken.pb"
    model.write_bytes(b"\xff" * 40)
    with pytest.raises(SourceModelError, match=r"broken\.pb.*corrupt"):
        convert_ssd(model, graph)
