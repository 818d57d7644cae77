"""TensorFlow's ssd_mobilenet_v2_coco -> ONNX, from its frozen graph and OpenCV's text graph of it.

OpenCV 4 ran this model by building the network described in the text graph (``.pbtxt``: the
MobileNet v2 feature extractor and the six box predictors, 253 nodes) with the weights taken by name
from the frozen graph (``.pb``), then its own ``PriorBox`` and ``DetectionOutput`` layers. The same
split is kept here: the convolutional network becomes an ONNX graph (run by ``engines/`` like every
other model), and the anchors and the decoding with its non-maximum suppression are numpy
(:mod:`engines.ssd_processing`), configured by the text graph's ``PriorBox``/``DetectionOutput``
attributes, which the export records in its manifest.

The graph takes ``[batch, size, size, 3]`` uint8 RGB (the frame resized without letterboxing, as the
model was trained) and returns ``boxes`` ``[batch, anchors, 4]`` (the box encodings, in TensorFlow's
order) and ``scores`` ``[batch, anchors, classes]`` (sigmoid, class 0 the background). It keeps NCHW
inside: the input is transposed once, batch normalisations and biases are folded into the
convolutions, and each predictor's output is transposed back to TensorFlow's (y, x, anchor) order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export.errors import SourceModelError
from export.tf_graph import GraphFormatError, TextNode, frozen_constants, parse_text_graph

_PASS_THROUGH = {"Identity"}
_SUPPORTED = {
    "Placeholder", "Const", "Mul", "Sub", "Conv2D", "DepthwiseConv2dNative", "FusedBatchNorm", "Relu6",
    "Add", "BiasAdd", "Identity", "Flatten", "ConcatV2", "Sigmoid", "PriorBox", "DetectionOutput",
}  # fmt: skip


@dataclass
class SSDGraph:
    """A converted SSD: the ONNX model and what the numpy post-processing needs.

    Attributes:
        model: the ONNX ``ModelProto`` (input ``image``, outputs ``boxes`` and ``scores``).
        anchors: per feature map: ``feature`` (height, width cells), ``widths`` and ``heights`` of its
            anchors in input pixels (the text graph's ``PriorBox`` attributes).
        detection: the ``DetectionOutput`` attributes (thresholds, top-k, classes) and ``variance``.
        input_size: the square input side, in pixels.
    """

    model: Any
    anchors: list[dict[str, Any]]
    detection: dict[str, Any]
    input_size: int


class _Builder:
    def __init__(self, nodes: list[TextNode], constants: dict[str, np.ndarray], input_size: int) -> None:
        from onnx import helper

        self.helper = helper
        self.by_name = {node.name: node for node in nodes}
        self.constants = constants
        self.input_size = input_size
        self.onnx_nodes: list[Any] = []
        self.initializers: list[tuple[str, np.ndarray]] = []  # added to the model last, in place
        self.values: dict[str, str] = {}  # TF node -> ONNX value name
        self.shapes: dict[str, tuple[int, int, int]] = {}  # TF node -> (channels, height, width), NCHW
        self.consumers: dict[str, list[TextNode]] = {}  # TF node -> the nodes that take it as an input
        for node in nodes:
            for source in node.inputs:
                self.consumers.setdefault(source.split(":")[0].lstrip("^"), []).append(node)

    # --- helpers -----------------------------------------------------------------------------

    def _const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append((name, array))
        return name

    def _node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.onnx_nodes.append(self.helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def _source(self, node: TextNode, index: int) -> str:
        name = node.inputs[index].split(":")[0]
        while self.by_name.get(name) is not None and self.by_name[name].op in _PASS_THROUGH:
            name = self.by_name[name].inputs[0].split(":")[0]
        return name

    def _constant(self, name: str) -> np.ndarray:
        node = self.by_name.get(name)
        if node is not None and node.op == "Const":
            return np.asarray(node.attrs["value"])
        if name not in self.constants:
            raise GraphFormatError(f"no constant {name!r} in the frozen graph")
        return self.constants[name]

    # --- the network -------------------------------------------------------------------------

    def value(self, name: str) -> str:
        """The ONNX value of TF node ``name`` (NCHW float32), converting it and its inputs first."""
        if name in self.values:
            return self.values[name]
        node = self.by_name[name]
        converter = getattr(self, f"_op_{node.op}", None)
        if converter is None:
            raise GraphFormatError(f"node {name!r}: operator {node.op} is not supported")
        self.values[name] = converter(node)
        return self.values[name]

    def _op_Placeholder(self, node: TextNode) -> str:  # noqa: N802
        cast = self._node("Cast", ["image"], "image_float", to=1)
        self.shapes[node.name] = (3, self.input_size, self.input_size)
        return self._node("Transpose", [cast], "image_nchw", perm=[0, 3, 1, 2])

    def _scalar_op(self, node: TextNode, onnx_op: str) -> str:
        source = self._source(node, 0)
        operand = self._constant(node.inputs[1].split(":")[0]).astype(np.float32)
        if operand.size != 1:
            raise GraphFormatError(f"node {node.name!r}: only a scalar {node.op} is supported")
        data = self.value(source)
        self.shapes[node.name] = self.shapes[source]
        return self._node(
            onnx_op, [data, self._const(f"{node.name}/operand", operand.reshape(()))], node.name
        )

    def _op_Mul(self, node: TextNode) -> str:  # noqa: N802
        return self._scalar_op(node, "Mul")

    def _op_Sub(self, node: TextNode) -> str:  # noqa: N802
        return self._scalar_op(node, "Sub")

    def _conv(self, node: TextNode, depthwise: bool) -> str:
        source = self._source(node, 0)
        data = self.value(source)
        channels, height, width = self.shapes[source]
        kernel = self._constant(node.inputs[1].split(":")[0]).astype(np.float32, copy=False)  # HWIO/HWCM
        strides = [int(s) for s in node.attrs.get("strides", [1, 1, 1, 1])][1:3]
        dilations = [int(d) for d in node.attrs.get("dilations", [1, 1, 1, 1])][1:3]
        if dilations != [1, 1]:
            raise GraphFormatError(f"node {node.name!r}: dilated convolutions are not supported")
        kh, kw = kernel.shape[:2]
        if depthwise:
            weights = kernel.transpose(2, 3, 0, 1).reshape(-1, 1, kh, kw)  # (C*M, 1, kh, kw)
            group = channels
        else:
            weights = kernel.transpose(3, 2, 0, 1)  # (O, I, kh, kw)
            group = 1
        out_h, out_w, pads = _padding(node.attrs.get("padding", "SAME"), (height, width), (kh, kw), strides)
        bias = np.zeros(weights.shape[0], np.float32)
        weights, bias, output = self._fold_following(node, weights, bias)
        self.shapes[output] = (weights.shape[0], out_h, out_w)
        inputs = [data, self._const(f"{output}/W", weights), self._const(f"{output}/B", bias)]
        return self._node(
            "Conv", inputs, output, kernel_shape=[kh, kw], strides=strides, pads=pads, group=group
        )

    def _fold_following(
        self, node: TextNode, weights: np.ndarray, bias: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, str]:
        """Fold the batch norm or bias add that alone consumes this convolution into its weights.

        Returns the folded weights and bias and the TF node whose value the convolution now is.
        """
        followers = self.consumers.get(node.name, [])
        if len(followers) != 1:
            return weights, bias, node.name
        follower = followers[0]
        if follower.op == "FusedBatchNorm":
            gamma, beta, mean, variance = (
                self._constant(follower.inputs[i].split(":")[0]).astype(np.float64) for i in (1, 2, 3, 4)
            )
            epsilon = float(follower.attrs.get("epsilon", 1e-3))
            scale = gamma / np.sqrt(variance + epsilon)
            weights = (weights * scale.reshape(-1, 1, 1, 1)).astype(np.float32)
            bias = ((bias - mean) * scale + beta).astype(np.float32)
        elif follower.op == "BiasAdd":
            bias = (bias + self._constant(follower.inputs[1].split(":")[0])).astype(np.float32)
        else:
            return weights, bias, node.name
        self.values[node.name] = follower.name  # the raw convolution is never used on its own
        return weights, bias, follower.name

    def _op_Conv2D(self, node: TextNode) -> str:  # noqa: N802
        return self._conv(node, depthwise=False)

    def _op_DepthwiseConv2dNative(self, node: TextNode) -> str:  # noqa: N802
        return self._conv(node, depthwise=True)

    def _folded(self, node: TextNode) -> str:
        """A batch norm or bias add that was folded into the convolution before it."""
        conv = self._source(node, 0)
        if self.by_name[conv].op not in ("Conv2D", "DepthwiseConv2dNative"):
            raise GraphFormatError(f"node {node.name!r}: {node.op} after a {self.by_name[conv].op}")
        self.value(conv)
        if node.name not in self.shapes:
            raise GraphFormatError(f"node {node.name!r}: {node.op} could not be folded into {conv!r}")
        return node.name

    def _op_FusedBatchNorm(self, node: TextNode) -> str:  # noqa: N802
        return self._folded(node)

    def _op_BiasAdd(self, node: TextNode) -> str:  # noqa: N802
        return self._folded(node)

    def _op_Relu6(self, node: TextNode) -> str:  # noqa: N802
        source = self._source(node, 0)
        data = self.value(source)
        self.shapes[node.name] = self.shapes[source]
        low = self._const(f"{node.name}/min", np.array(0.0, np.float32))
        high = self._const(f"{node.name}/max", np.array(6.0, np.float32))
        return self._node("Clip", [data, low, high], node.name)

    def _op_Add(self, node: TextNode) -> str:  # noqa: N802
        a, b = self._source(node, 0), self._source(node, 1)
        left, right = self.value(a), self.value(b)
        if self.shapes[a] != self.shapes[b]:
            raise GraphFormatError(f"node {node.name!r}: Add of shapes {self.shapes[a]} and {self.shapes[b]}")
        self.shapes[node.name] = self.shapes[a]
        return self._node("Add", [left, right], node.name)

    def _op_Sigmoid(self, node: TextNode) -> str:  # noqa: N802
        return self._node("Sigmoid", [self.value(self._source(node, 0))], node.name)

    def predictor(self, name: str, per_anchor: int) -> tuple[str, tuple[int, int, int]]:
        """A box predictor's output as ``[batch, cells * anchors, per_anchor]``, TF's (y, x, anchor) order."""
        data = self.value(name)
        channels, height, width = self.shapes[name]
        if channels % per_anchor:
            raise GraphFormatError(f"{name!r}: {channels} channels are not a multiple of {per_anchor}")
        nhwc = self._node("Transpose", [data], f"{name}/nhwc", perm=[0, 2, 3, 1])
        shape = self._const(f"{name}/shape", np.array([0, -1, per_anchor], np.int64))
        return self._node("Reshape", [nhwc, shape], f"{name}/rows"), (height, width, channels // per_anchor)


def _padding(
    padding: str, size: tuple[int, int], kernel: tuple[int, int], strides: list[int]
) -> tuple[int, int, list[int]]:
    """Output height, width and ONNX pads for TensorFlow's SAME or VALID padding."""
    if padding == "VALID":
        outs = [(n - k) // s + 1 for n, k, s in zip(size, kernel, strides, strict=True)]
        return outs[0], outs[1], [0, 0, 0, 0]
    if padding != "SAME":
        raise GraphFormatError(f"padding {padding!r} is not supported")
    outs, begins, ends = [], [], []
    for n, k, s in zip(size, kernel, strides, strict=True):
        out = math.ceil(n / s)
        total = max((out - 1) * s + k - n, 0)
        outs.append(out)
        begins.append(total // 2)  # TensorFlow puts the odd pixel at the end
        ends.append(total - total // 2)
    return outs[0], outs[1], [begins[0], begins[1], ends[0], ends[1]]


def _anchor_sizes(node: TextNode) -> tuple[list[float], list[float]]:
    widths = [float(v) for v in np.asarray(node.attrs["width"]).ravel()]
    heights = [float(v) for v in np.asarray(node.attrs["height"]).ravel()]
    if len(widths) != len(heights) or not widths:
        raise GraphFormatError(f"{node.name!r}: PriorBox needs as many widths as heights")
    return widths, heights


def convert_ssd(
    model: Path, graph: Path, input_size: int = 300, opset: int = 17, check: bool = True
) -> SSDGraph:
    """Convert the frozen graph ``model`` described by the text graph ``graph`` to ONNX.

    ``check``: run ``onnx.checker`` on it (0.16 s on 67 MB; False where ONNX Runtime loads and runs
    the graph next anyway, which checks more).

    Raises:
        SourceModelError: a file that cannot be read, or a graph with operators or shapes outside
            what this converter (and OpenCV's SSD text graphs) use.
    """
    from onnx import TensorProto, checker, helper

    try:
        nodes = parse_text_graph(Path(graph).read_text(encoding="utf-8"))
        unknown = sorted({node.op for node in nodes} - _SUPPORTED)
        if unknown:
            raise GraphFormatError(f"operators {', '.join(unknown)} are not supported")
        defined = {node.name for node in nodes}
        needed = {source.split(":")[0].lstrip("^") for node in nodes for source in node.inputs} - defined
        constants = frozen_constants(Path(model).read_bytes(), needed)
        builder = _Builder(nodes, constants, input_size)
        by_name = builder.by_name
        output = next((node for node in nodes if node.op == "DetectionOutput"), None)
        if output is None or len(output.inputs) != 3:
            raise GraphFormatError("no DetectionOutput node with (boxes, scores, priors) inputs")
        num_classes = int(output.attrs.get("num_classes", 0))
        boxes_concat, scores_sigmoid, priors_concat = (by_name[i.split(":")[0]] for i in output.inputs)
        if scores_sigmoid.op != "Sigmoid":
            raise GraphFormatError("the DetectionOutput's scores are not a Sigmoid")
        scores_concat = by_name[scores_sigmoid.inputs[0].split(":")[0]]
        box_maps = [builder._source(by_name[i.split(":")[0]], 0) for i in boxes_concat.inputs[:-1]]
        score_maps = [builder._source(by_name[i.split(":")[0]], 0) for i in scores_concat.inputs[:-1]]
        prior_nodes = [by_name[i.split(":")[0]] for i in priors_concat.inputs[:-1]]
        if not (len(box_maps) == len(score_maps) == len(prior_nodes)):
            raise GraphFormatError("box, score and prior inputs differ in count")
        box_rows, score_rows, anchors = [], [], []
        for box_map, score_map, prior in zip(box_maps, score_maps, prior_nodes, strict=True):
            if builder._source(prior, 0) != box_map:
                raise GraphFormatError(f"{prior.name!r} does not follow {box_map!r}")
            widths, heights = _anchor_sizes(prior)
            rows, (height, width, count) = builder.predictor(box_map, 4)
            if count != len(widths):
                raise GraphFormatError(
                    f"{box_map!r}: {count} anchors per cell, {prior.name!r} has {len(widths)}"
                )
            score, (_h, _w, score_count) = builder.predictor(score_map, num_classes)
            if score_count != count:
                raise GraphFormatError(f"{score_map!r}: {score_count} anchors per cell, boxes have {count}")
            box_rows.append(rows)
            score_rows.append(score)
            anchors.append({"feature": [height, width], "widths": widths, "heights": heights})
            variance = [
                float(v) for v in np.asarray(prior.attrs.get("variance", [0.1, 0.1, 0.2, 0.2])).ravel()
            ]
            if prior.attrs.get("clip") or prior.attrs.get("flip"):
                raise GraphFormatError(f"{prior.name!r}: clip/flip priors are not supported")
        builder._node("Concat", box_rows, "boxes", axis=1)
        logits = builder._node("Concat", score_rows, "logits", axis=1)
        builder._node("Sigmoid", [logits], "scores")
    except (GraphFormatError, KeyError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise SourceModelError(
            f"cannot convert {Path(model).name}: it is corrupt or not the TensorFlow frozen graph that "
            f"{Path(graph).name} describes ({exc})"
        ) from exc
    onnx_graph = helper.make_graph(
        builder.onnx_nodes,
        "ssd_mobilenet",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", input_size, input_size, 3])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", None, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", None, num_classes]),
        ],
    )
    onnx_model = helper.make_model(
        onnx_graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="watchword"
    )
    onnx_model.ir_version = 8
    # The weights go straight into the model's own tensors: make_graph and make_model would each
    # copy all 67 MB of them once more (a sixth of the conversion's time).
    for name, array in builder.initializers:
        tensor = onnx_model.graph.initializer.add()
        tensor.name = name
        tensor.data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
        tensor.dims.extend(array.shape)
        # C order from any layout (a transposed kernel is copied once), little-endian as ONNX stores it
        tensor.raw_data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    if check:
        checker.check_model(onnx_model)
    detection = {
        "num_classes": num_classes,
        "background_label_id": int(output.attrs.get("background_label_id", 0)),
        "confidence_threshold": float(output.attrs.get("confidence_threshold", 0.01)),
        "nms_threshold": float(output.attrs.get("nms_threshold", 0.45)),
        "top_k": int(output.attrs.get("top_k", 100)),
        "keep_top_k": int(output.attrs.get("keep_top_k", 100)),
        "variance": variance,
        "code_type": str(output.attrs.get("code_type", "CENTER_SIZE")),
    }
    if detection["code_type"] != "CENTER_SIZE" or not output.attrs.get("share_location", True):
        raise SourceModelError("only CENTER_SIZE box codes with shared locations are supported")
    return SSDGraph(onnx_model, anchors, detection, input_size)
