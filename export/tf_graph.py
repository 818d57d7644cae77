"""Reading TensorFlow graphs without TensorFlow: a ``.pbtxt`` text graph and a frozen ``GraphDef``.

The offline demo's SSD ships as TensorFlow files (a frozen graph and OpenCV's text graph of it).
TensorFlow is not installed at run time, and OpenCV 5 no longer reads TensorFlow, so the two files
are read here: the text graph with a small parser of protobuf's text format, and the frozen graph
from the protobuf wire format, decoding only what the converter needs (node names, inputs and
constant tensors). Field numbers are TensorFlow's (``graph.proto``, ``node_def.proto``,
``attr_value.proto``, ``tensor.proto``, ``tensor_shape.proto``).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5
# TensorFlow DataType -> numpy dtype (the ones a frozen detection graph's constants use)
_TF_DTYPES: dict[int, Any] = {
    1: np.float32,
    2: np.float64,
    3: np.int32,
    4: np.uint8,
    6: np.int8,
    9: np.int64,
    10: np.bool_,
    19: np.float16,
}


class GraphFormatError(ValueError):
    """The bytes or text are not a TensorFlow graph this reader understands."""


# --- protobuf wire format ------------------------------------------------------------------------


Buffer = bytes | memoryview


def varint(data: Buffer, at: int) -> tuple[int, int]:
    """The varint starting at byte ``at``: (value, offset after it)."""
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise GraphFormatError(f"truncated or overlong varint at byte {at}")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def wire_fields(data: Buffer) -> list[tuple[int, int, int, int, int]]:
    """Every top-level field of a message: (number, wire type, start, payload start, end) offsets."""
    fields = []
    at = 0
    while at < len(data):
        start = at
        key, at = varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            _, end = varint(data, at)
            payload = at
        elif wire == _LENGTH_DELIMITED:
            length, payload = varint(data, at)
            end = payload + length
        elif wire in (_FIXED64, _FIXED32):
            payload, end = at, at + (8 if wire == _FIXED64 else 4)
        else:
            raise GraphFormatError(f"unsupported wire type {wire} at byte {start}")
        if end > len(data):
            raise GraphFormatError(f"field {number} at byte {start} runs past the end")
        fields.append((number, wire, start, payload, end))
        at = end
    return fields


def node_name(node: Buffer) -> str:
    """``NodeDef.name`` (field 1) of a serialised node."""
    if len(node) and node[0] == (1 << 3 | _LENGTH_DELIMITED):  # written first, as TensorFlow does
        length, payload = varint(node, 1)
        if payload + length <= len(node):
            return bytes(node[payload : payload + length]).decode("utf-8")
    for number, wire, _start, payload, end in wire_fields(node):
        if number == 1 and wire == _LENGTH_DELIMITED:
            return bytes(node[payload:end]).decode("utf-8")
    raise GraphFormatError("a node without a name")


def _packed_varints(data: Buffer) -> list[int]:
    values, at = [], 0
    while at < len(data):
        value, at = varint(data, at)
        values.append(value - (1 << 64) if value >= 1 << 63 else value)
    return values


def _tensor(data: Buffer) -> np.ndarray:
    """A ``TensorProto``: dtype (1), tensor_shape (2), tensor_content (4), float_val (5), int_val (7)."""
    dtype_code, dims, content = 0, [], memoryview(b"")
    floats: list[float] = []
    ints: list[int] = []
    for number, wire, _start, payload, end in wire_fields(data):
        chunk = data[payload:end]
        if number == 1 and wire == _VARINT:
            dtype_code = varint(data, payload)[0]
        elif number == 2 and wire == _LENGTH_DELIMITED:
            for dim_number, _w, _s, dim_payload, dim_end in wire_fields(chunk):
                if dim_number == 2:  # TensorShapeProto.dim -> Dim.size (1)
                    for size_number, size_wire, _s2, size_at, _e in wire_fields(chunk[dim_payload:dim_end]):
                        if size_number == 1 and size_wire == _VARINT:
                            dims.append(_packed_varints(chunk[dim_payload:dim_end][size_at:_e])[0])
        elif number == 4 and wire == _LENGTH_DELIMITED:
            content = memoryview(chunk)
        elif number == 5:
            floats.extend(
                struct.unpack(f"<{len(chunk) // 4}f", bytes(chunk))
                if wire == _LENGTH_DELIMITED
                else [struct.unpack("<f", bytes(chunk))[0]]
            )
        elif number == 7:
            ints.extend(_packed_varints(chunk) if wire == _LENGTH_DELIMITED else [varint(data, payload)[0]])
    if dtype_code not in _TF_DTYPES:
        raise GraphFormatError(f"unsupported tensor dtype {dtype_code}")
    dtype = np.dtype(_TF_DTYPES[dtype_code])
    count = int(np.prod(dims)) if dims else 1
    if len(content):
        # a read-only view of the graph file's bytes (which it keeps alive): every use converts or
        # folds it into a new array, and a copy here cost a tenth of a second on the 67 MB SSD
        array = np.frombuffer(content, dtype=dtype)
    else:
        values = floats if dtype.kind == "f" else ints
        array = np.asarray(values, dtype=dtype)
        if array.size == 1 and count > 1:  # TensorFlow repeats a single value over the shape
            array = np.full(count, array[0], dtype=dtype)
    if array.size != count:
        raise GraphFormatError(f"tensor of shape {dims} holds {array.size} values")
    return array.reshape(dims)


def frozen_constants(graph: bytes, names: set[str]) -> dict[str, np.ndarray]:
    """The ``Const`` nodes named in ``names``, decoded from a frozen ``GraphDef``.

    Other nodes are skipped after reading their name, so a 70 MB graph of 8,000 nodes is read in a
    fraction of a second.
    """
    constants: dict[str, np.ndarray] = {}
    frozen = memoryview(graph)  # slices of a memoryview are views: no copy of the 70 MB per node
    for number, wire, _start, payload, end in wire_fields(frozen):
        if number != 1 or wire != _LENGTH_DELIMITED:  # GraphDef.node
            continue
        node = frozen[payload:end]
        if node_name(node) not in names:
            continue
        name, op, value = "", "", None
        for field_number, field_wire, _s, at, stop in wire_fields(node):
            if field_number == 1:
                name = bytes(node[at:stop]).decode("utf-8")
            elif field_number == 2:
                op = bytes(node[at:stop]).decode("utf-8")
            elif field_number == 5 and field_wire == _LENGTH_DELIMITED:  # attr map entry
                entry = node[at:stop]
                key, attr = "", memoryview(b"")
                for entry_number, _w, _s2, entry_at, entry_stop in wire_fields(entry):
                    if entry_number == 1:
                        key = bytes(entry[entry_at:entry_stop]).decode("utf-8")
                    elif entry_number == 2:
                        attr = entry[entry_at:entry_stop]
                if key == "value":
                    for attr_number, _w, _s3, attr_at, attr_stop in wire_fields(attr):
                        if attr_number == 8:  # AttrValue.tensor
                            value = _tensor(attr[attr_at:attr_stop])
        if op != "Const" or value is None:
            raise GraphFormatError(f"node {name!r} is a {op or 'nameless'} node, not a constant")
        constants[name] = value
    missing = names - constants.keys()
    if missing:
        raise GraphFormatError(f"the frozen graph has no constants {sorted(missing)[:5]}")
    return constants


# --- protobuf text format ------------------------------------------------------------------------

_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|([{}:])|([^\s{}:"]+))')


@dataclass
class TextNode:
    """One ``node { ... }`` of a text graph."""

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)


def _tokens(text: str) -> list[str]:
    tokens = []
    at = 0
    text = re.sub(r"#[^\n]*", "", text)
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None or match.end() == at:
            if text[at:].strip():
                raise GraphFormatError(f"unexpected text at character {at}: {text[at : at + 20]!r}")
            break
        tokens.append(next(group for group in match.groups() if group is not None))
        at = match.end()
    return tokens


def _message(tokens: list[str], at: int) -> tuple[list[tuple[str, Any]], int]:
    """Fields until the closing brace: ``[(name, scalar token or nested field list)]``."""
    fields: list[tuple[str, Any]] = []
    while at < len(tokens) and tokens[at] != "}":
        key = tokens[at]
        at += 1
        if at < len(tokens) and tokens[at] == ":":
            at += 1
        if at >= len(tokens):
            raise GraphFormatError(f"field {key!r} has no value")
        if tokens[at] == "{":
            nested, at = _message(tokens, at + 1)
            if at >= len(tokens):
                raise GraphFormatError(f"field {key!r} is not closed")
            fields.append((key, nested))
            at += 1
        else:
            fields.append((key, tokens[at]))
            at += 1
    return fields, at


def _scalar(token: str) -> Any:
    if token.startswith('"'):
        return bytes(token[1:-1], "utf-8").decode("unicode_escape")
    if token in ("true", "false"):
        return token == "true"
    try:
        return int(token)
    except ValueError:
        pass
    try:
        return float(token)
    except ValueError:
        return token  # an enum name such as DT_FLOAT


def _attr_value(fields: list[tuple[str, Any]]) -> Any:
    """An ``AttrValue``: a scalar (``s``, ``i``, ``f``, ``b``, ``type``), a list, or a tensor's values."""
    for key, value in fields:
        if key in ("s", "i", "f", "b", "type"):
            return _scalar(value)
        if key == "list":
            return [_scalar(item) for _k, item in value if not isinstance(item, list)]
        if key == "tensor":
            values = [_scalar(item) for k, item in value if k.endswith("_val")]
            return np.asarray(
                values, dtype=np.float32 if any(k == "float_val" for k, _ in value) else np.int64
            )
        if key == "shape":
            return [_scalar(size) for _d, dim in value for _k, size in dim if _k == "size"]
    return None


def parse_text_graph(text: str) -> list[TextNode]:
    """The nodes of a ``.pbtxt`` ``GraphDef``, in file order, with their attributes decoded."""
    fields, at = _message(_tokens(text), 0)
    if at != len(_tokens(text)):
        raise GraphFormatError("unbalanced braces in the text graph")
    nodes = []
    for key, value in fields:
        if key != "node":
            continue
        if not isinstance(value, list):
            raise GraphFormatError("a node that is not a message")
        name = op = ""
        inputs: list[str] = []
        attrs: dict[str, Any] = {}
        for node_key, node_value in value:
            if node_key == "name":
                name = _scalar(node_value)
            elif node_key == "op":
                op = _scalar(node_value)
            elif node_key == "input":
                inputs.append(_scalar(node_value))
            elif node_key == "attr":
                entry = dict(node_value)
                attrs[_scalar(entry["key"])] = _attr_value(entry.get("value", []))
        if not name or not op:
            raise GraphFormatError("a node without a name or an op")
        nodes.append(TextNode(name, op, inputs, attrs))
    return nodes
