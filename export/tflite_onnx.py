"""A small TensorFlow Lite -> ONNX converter for the operators MoveNet Lightning uses.

``tflite2onnx`` stops at CAST and ``tf2onnx`` needs TensorFlow installed; MoveNet's graph uses only
nineteen builtin operators, so they are translated one by one here, reading the flatbuffer with the
pure-Python ``tflite`` package (the ``export`` extra). The graph keeps TensorFlow's NHWC layout:
each convolution is wrapped in a pair of transposes, which ONNX Runtime's optimiser cancels.
FP16 weights behind DEQUANTIZE are folded into FP32 constants (the exact values LiteRT computes with).

The converted graph has batch 1, like the TFLite model (its keypoint decoding gathers from fixed
indices). :func:`batched` wraps it in an ONNX ``Scan`` over a dynamic batch axis, so one engine call
serves all the tracks of a frame batch with per-image results identical to the single-image graph.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from export.errors import SourceModelError

# tflite TensorType -> numpy dtype
_TFLITE_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}
# ActivationFunctionType
_ACT_NONE, _ACT_RELU, _ACT_RELU6 = 0, 1, 3


def _onnx() -> tuple[Any, Any, Any]:
    import onnx
    from onnx import helper, numpy_helper

    return onnx, helper, numpy_helper


class _Converter:
    def __init__(self, model_bytes: bytes, opset: int) -> None:
        try:
            import tflite
        except ImportError as exc:
            raise SourceModelError(
                f"converting a .tflite model needs the tflite package (watchword[offline]): {exc}"
            ) from exc
        self.tflite = tflite
        self.model = tflite.Model.GetRootAsModel(model_bytes, 0)
        if self.model.SubgraphsLength() != 1:
            raise SourceModelError("only single-subgraph .tflite models are supported")
        self.graph = self.model.Subgraphs(0)
        self.opset = opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.constants: dict[int, np.ndarray] = {}
        self.names: dict[int, str] = {}
        self._counter = 0
        self._op_names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}

    # --- tensors ---------------------------------------------------------------------------

    def _name(self, index: int) -> str:
        if index not in self.names:
            self.names[index] = f"t{index}"
        return self.names[index]

    def _fresh(self, stem: str) -> str:
        self._counter += 1
        return f"{stem}_{self._counter}"

    def _dtype(self, index: int) -> np.dtype:
        tensor_type = self.graph.Tensors(index).Type()
        if tensor_type not in _TFLITE_DTYPES:
            raise SourceModelError(f"tensor {index} has unsupported tflite type {tensor_type}")
        return np.dtype(_TFLITE_DTYPES[tensor_type])

    def _buffer(self, index: int) -> np.ndarray | None:
        tensor = self.graph.Tensors(index)
        data = self.model.Buffers(tensor.Buffer()).DataAsNumpy()
        if isinstance(data, int) or len(data) == 0:
            return None
        shape = [int(d) for d in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []
        return np.frombuffer(data.tobytes(), dtype=self._dtype(index)).reshape(shape)

    def _const(self, array: np.ndarray, stem: str = "c") -> str:
        _, _, numpy_helper = _onnx()
        name = self._fresh(stem)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def _input(self, index: int) -> str:
        """The ONNX name of a tflite tensor, adding it as an initializer when it is a constant."""
        if index in self.constants and index not in self.names:
            _, _, numpy_helper = _onnx()
            self.initializers.append(numpy_helper.from_array(self.constants[index], self._name(index)))
        return self._name(index)

    def _node(self, op: str, inputs: list[str], outputs: list[str] | None = None, **attrs: Any) -> str:
        _, helper, _ = _onnx()
        outputs = outputs or [self._fresh(op.lower())]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=self._fresh(op), **attrs))
        return outputs[0]

    def _activation(self, value: str, kind: int, out: str) -> None:
        if kind == _ACT_NONE:
            self._node("Identity", [value], [out])
        elif kind == _ACT_RELU:
            self._node("Relu", [value], [out])
        elif kind == _ACT_RELU6:
            low, high = self._const(np.array(0.0, np.float32)), self._const(np.array(6.0, np.float32))
            self._node("Clip", [value, low, high], [out])
        else:
            raise SourceModelError(f"unsupported fused activation {kind}")

    # --- operators -------------------------------------------------------------------------

    def convert(self, check: bool = True) -> Any:
        onnx, helper, _ = _onnx()
        for i in range(self.graph.TensorsLength()):
            constant = self._buffer(i)
            if constant is not None:
                self.constants[i] = constant
        handlers: dict[str, Callable[[Any, list[int], list[int]], None]] = {
            "DEQUANTIZE": self._dequantize,
            "CONV_2D": self._conv,
            "DEPTHWISE_CONV_2D": self._conv,
            "ADD": self._binary("Add", "AddOptions"),
            "SUB": self._binary("Sub", "SubOptions"),
            "MUL": self._binary("Mul", "MulOptions"),
            "DIV": self._binary("Div", "DivOptions"),
            "RESHAPE": self._reshape,
            "CAST": self._cast,
            "GATHER_ND": self._gather_nd,
            "RESIZE_BILINEAR": self._resize,
            "PACK": self._pack,
            "UNPACK": self._unpack,
            "LOGISTIC": lambda op, ins, outs: self._unary("Sigmoid", ins, outs),
            "SQRT": lambda op, ins, outs: self._unary("Sqrt", ins, outs),
            "ARG_MAX": self._arg_max,
            "FLOOR_DIV": self._floor_div,
            "CONCATENATION": self._concat,
        }
        for i in range(self.graph.OperatorsLength()):
            op = self.graph.Operators(i)
            code = self.model.OperatorCodes(op.OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = self._op_names.get(builtin, str(builtin))
            handler = handlers.get(name)
            if handler is None:
                raise SourceModelError(f"operator {name} (#{i}) is not supported by this converter")
            ins = [int(j) for j in op.InputsAsNumpy()] if op.InputsLength() else []
            outs = [int(j) for j in op.OutputsAsNumpy()]
            handler(op, ins, outs)
        graph_inputs = [self._value_info(int(j)) for j in self.graph.InputsAsNumpy()]
        graph_outputs = [self._value_info(int(j)) for j in self.graph.OutputsAsNumpy()]
        graph = helper.make_graph(self.nodes, "movenet", graph_inputs, graph_outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = min(model.ir_version, 9)
        if check:
            onnx.checker.check_model(model)
        return model

    def _value_info(self, index: int) -> Any:
        onnx, helper, _ = _onnx()
        shape = [int(d) for d in self.graph.Tensors(index).ShapeAsNumpy()]
        elem = onnx.helper.np_dtype_to_tensor_dtype(self._dtype(index))
        return helper.make_tensor_value_info(self._name(index), elem, shape)

    def _options(self, op: Any, cls_name: str) -> Any:
        table = op.BuiltinOptions()
        options = getattr(self.tflite, cls_name)()
        options.Init(table.Bytes, table.Pos)
        return options

    def _dequantize(self, op: Any, ins: list[int], outs: list[int]) -> None:
        if ins[0] in self.constants:
            self.constants[outs[0]] = self.constants[ins[0]].astype(np.float32)
        else:
            self._node("Cast", [self._input(ins[0])], [self._name(outs[0])], to=1)

    def _conv(self, op: Any, ins: list[int], outs: list[int]) -> None:
        depthwise = op.BuiltinOptionsType() == self.tflite.BuiltinOptions.DepthwiseConv2DOptions
        cls = "DepthwiseConv2DOptions" if depthwise else "Conv2DOptions"
        options = self._options(op, cls)
        weight = self.constants.get(ins[1])
        if weight is None:
            raise SourceModelError("convolution weights must be constant")
        if depthwise:
            # tflite [1, kh, kw, C*m] -> ONNX [C*m, 1, kh, kw], one group per input channel
            kernel = weight.transpose(3, 0, 1, 2)
            groups = int(self.graph.Tensors(ins[0]).ShapeAsNumpy()[3])
        else:
            kernel = weight.transpose(0, 3, 1, 2)  # OHWI -> OIHW
            groups = 1
        inputs = [self._node("Transpose", [self._input(ins[0])], perm=[0, 3, 1, 2]), self._const(kernel, "w")]
        if len(ins) > 2 and ins[2] >= 0:
            inputs.append(self._const(self.constants[ins[2]].astype(np.float32), "b"))
        padding = "SAME_UPPER" if options.Padding() == self.tflite.Padding.SAME else "VALID"
        conv = self._node(
            "Conv",
            inputs,
            auto_pad=padding,
            strides=[options.StrideH(), options.StrideW()],
            dilations=[options.DilationHFactor(), options.DilationWFactor()],
            group=groups,
            kernel_shape=list(kernel.shape[2:]),
        )
        nhwc = self._node("Transpose", [conv], perm=[0, 2, 3, 1])
        self._activation(nhwc, options.FusedActivationFunction(), self._name(outs[0]))

    def _binary(self, onnx_op: str, options_cls: str) -> Callable[[Any, list[int], list[int]], None]:
        def handle(op: Any, ins: list[int], outs: list[int]) -> None:
            activation = _ACT_NONE
            if op.BuiltinOptions() is not None and hasattr(self.tflite, options_cls):
                activation = self._options(op, options_cls).FusedActivationFunction()
            value = self._node(onnx_op, [self._input(ins[0]), self._input(ins[1])])
            self._activation(value, activation, self._name(outs[0]))

        return handle

    def _unary(self, onnx_op: str, ins: list[int], outs: list[int]) -> None:
        self._node(onnx_op, [self._input(ins[0])], [self._name(outs[0])])

    def _reshape(self, op: Any, ins: list[int], outs: list[int]) -> None:
        shape = [int(d) for d in self.graph.Tensors(outs[0]).ShapeAsNumpy()]
        target = self._const(np.array(shape, np.int64), "shape")
        self._node("Reshape", [self._input(ins[0]), target], [self._name(outs[0])])

    def _cast(self, op: Any, ins: list[int], outs: list[int]) -> None:
        onnx, _, _ = _onnx()
        to = onnx.helper.np_dtype_to_tensor_dtype(self._dtype(outs[0]))
        self._node("Cast", [self._input(ins[0])], [self._name(outs[0])], to=int(to))

    def _gather_nd(self, op: Any, ins: list[int], outs: list[int]) -> None:
        indices = self._node("Cast", [self._input(ins[1])], to=7)  # int64
        self._node("GatherND", [self._input(ins[0]), indices], [self._name(outs[0])])

    def _resize(self, op: Any, ins: list[int], outs: list[int]) -> None:
        options = self._options(op, "ResizeBilinearOptions")
        if options.AlignCorners():
            mode = "align_corners"
        elif options.HalfPixelCenters():
            mode = "half_pixel"
        else:
            mode = "asymmetric"
        shape = [int(d) for d in self.graph.Tensors(outs[0]).ShapeAsNumpy()]
        sizes = self._const(np.array(shape, np.int64), "sizes")
        self._node(
            "Resize",
            [self._input(ins[0]), "", "", sizes],
            [self._name(outs[0])],
            mode="linear",
            coordinate_transformation_mode=mode,
        )

    def _pack(self, op: Any, ins: list[int], outs: list[int]) -> None:
        axis = self._options(op, "PackOptions").Axis()
        axes = self._const(np.array([axis], np.int64), "axes")
        parts = [self._node("Unsqueeze", [self._input(i), axes]) for i in ins]
        self._node("Concat", parts, [self._name(outs[0])], axis=axis)

    def _unpack(self, op: Any, ins: list[int], outs: list[int]) -> None:
        axis = self._options(op, "UnpackOptions").Axis()
        axes = self._const(np.array([axis], np.int64), "axes")
        parts = [self._fresh("split") for _ in outs]
        sizes = self._const(np.ones(len(outs), np.int64), "split")
        self._node("Split", [self._input(ins[0]), sizes], parts, axis=axis)
        for part, out in zip(parts, outs, strict=True):
            self._node("Squeeze", [part, axes], [self._name(out)])

    def _arg_max(self, op: Any, ins: list[int], outs: list[int]) -> None:
        onnx, _, _ = _onnx()
        axis = int(np.asarray(self.constants[ins[1]]).reshape(-1)[0])
        index = self._node("ArgMax", [self._input(ins[0])], axis=axis, keepdims=0, select_last_index=0)
        to = onnx.helper.np_dtype_to_tensor_dtype(self._dtype(outs[0]))
        self._node("Cast", [index], [self._name(outs[0])], to=int(to))

    def _floor_div(self, op: Any, ins: list[int], outs: list[int]) -> None:
        onnx, _, _ = _onnx()
        dtype = self._dtype(outs[0])
        a, b = self._input(ins[0]), self._input(ins[1])
        if dtype.kind in "iu":  # exact for the small integers of keypoint indices
            a, b = self._node("Cast", [a], to=11), self._node("Cast", [b], to=11)
        floored = self._node("Floor", [self._node("Div", [a, b])])
        to = onnx.helper.np_dtype_to_tensor_dtype(dtype)
        self._node("Cast", [floored], [self._name(outs[0])], to=int(to))

    def _concat(self, op: Any, ins: list[int], outs: list[int]) -> None:
        options = self._options(op, "ConcatenationOptions")
        value = self._node("Concat", [self._input(i) for i in ins], axis=options.Axis())
        self._activation(value, options.FusedActivationFunction(), self._name(outs[0]))


def convert_tflite(path: str | Path, opset: int = 17, check: bool = True) -> Any:
    """Convert a ``.tflite`` file to an ``onnx.ModelProto`` (batch 1, as the source model).

    ``check``: run ``onnx.checker`` on it (False where ONNX Runtime loads and runs it next anyway).
    """
    path = Path(path)
    if not path.is_file():
        raise SourceModelError(f"tflite model not found: {path}")
    return _Converter(path.read_bytes(), opset).convert(check)


def batched(model: Any, input_name: str = "image", output_name: str = "keypoints", check: bool = True) -> Any:
    """Wrap a batch-1 graph in a ``Scan`` over a dynamic batch axis.

    The result takes ``[N, ...]`` (the source input without its leading 1) and returns the source
    output stacked: ``[N, ...]`` with the leading 1 of each output dropped.
    """
    onnx, helper, _ = _onnx()
    source = model.graph
    (source_input,) = source.input
    (source_output,) = source.output
    in_type = source_input.type.tensor_type
    out_type = source_output.type.tensor_type
    in_shape = [d.dim_value for d in in_type.shape.dim][1:]
    out_shape = [d.dim_value for d in out_type.shape.dim][1:]
    item = "scan_item"
    axes = helper.make_tensor("scan_axes", onnx.TensorProto.INT64, [1], [0])
    body_nodes = [
        helper.make_node("Unsqueeze", [item, "scan_axes"], [source_input.name], name="scan_unsqueeze"),
        *source.node,
        helper.make_node("Squeeze", [source_output.name, "scan_axes"], ["scan_out"], name="scan_squeeze"),
    ]
    body = helper.make_graph(
        body_nodes,
        "movenet_item",
        [helper.make_tensor_value_info(item, in_type.elem_type, in_shape)],
        [helper.make_tensor_value_info("scan_out", out_type.elem_type, out_shape)],
        [*source.initializer, axes],
    )
    scan = helper.make_node("Scan", [input_name], [output_name], name="batch", body=body, num_scan_inputs=1)
    graph = helper.make_graph(
        [scan],
        "movenet_batched",
        [helper.make_tensor_value_info(input_name, in_type.elem_type, ["batch", *in_shape])],
        [helper.make_tensor_value_info(output_name, out_type.elem_type, ["batch", *out_shape])],
    )
    wrapped = helper.make_model(graph, opset_imports=list(model.opset_import))
    wrapped.ir_version = model.ir_version
    if check:
        onnx.checker.check_model(wrapped)
    return wrapped
