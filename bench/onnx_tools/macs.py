"""Multiply-accumulate (MAC) counts of an ONNX graph per sample, dense and adjusted for zero weights.

Counted ops: Conv, ConvTranspose, Gemm, MatMul and their integer forms ConvInteger, QLinearConv,
MatMulInteger, QLinearMatMul and com.microsoft QGemm (what ONNX Runtime's QOperator quantizer makes
of a Gemm). Bias additions, activations and pooling are not counted, which is the usual convention
for MAC counts of convolutional networks.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

log = logging.getLogger(__name__)

Shape = tuple[int | None, ...]

# Input positions of the data and weight operands. The weight of a Conv is its second input, but
# QLinearConv and QLinearMatMul put scales and zero points between the two operands.
_CONV_OPERANDS = {"Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3), "ConvTranspose": (0, 1)}
_MATMUL_OPERANDS = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3)}
_GEMM_OPERANDS = {"Gemm": (0, 1), "QGemm": (0, 3)}

# Input positions of the zero points of integer operands, as (first operand, second operand).
_ZERO_POINT_INPUTS = {
    "ConvInteger": (2, 3),
    "QLinearConv": (2, 5),
    "MatMulInteger": (2, 3),
    "QLinearMatMul": (2, 5),
    "QGemm": (2, 5),
}

# Compute-heavy ops of the default domain that this counter does not count.
_UNCOUNTED_OPS = {"Einsum", "RNN", "LSTM", "GRU", "Attention", "DeformConv"}
# Ops of other domains that are counted, and name parts that mark an uncounted op of another domain
# as a compute op worth a note. Element-wise ops such as com.microsoft QLinearAdd get no note.
_DEFAULT_DOMAINS = ("", "ai.onnx")
_COUNTED_CONTRIB_OPS = {("com.microsoft", "QGemm")}
_COMPUTE_NAME_PARTS = ("Conv", "Gemm", "MatMul", "Attention", "LSTM", "GRU", "RNN")

# Ops between initializers and a weight operand that are folded when reading the weight. Mul covers
# a pruning mask exported unfolded, as weight_orig * weight_mask.
_WEIGHT_CHAIN_OPS = {
    "Identity", "Cast", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "DequantizeLinear", "Mul"
}
_MAX_CHAIN_DEPTH = 16


@dataclass
class _Graph:
    """One inferred graph: tensor shapes, constant tensors and the node that produces each tensor."""

    shapes: dict[str, Shape]
    initializers: dict[str, onnx.TensorProto]
    producers: dict[str, onnx.NodeProto]
    constant_cache: dict[str, np.ndarray | None] = field(default_factory=dict)


@dataclass
class _LayerCount:
    macs: int
    weight: np.ndarray | None


def count_macs(model: str | Path | onnx.ModelProto) -> dict[str, Any]:
    """Count the multiply-accumulate operations of one sample (batch 1) through an ONNX model.

    A symbolic batch dimension of the graph inputs is set to 1 before ONNX shape inference. A graph
    with a fixed batch size B has its counts divided by B. Weights are read from initializers and
    Constant nodes, also behind Identity, Cast, Transpose, Reshape, Squeeze, Unsqueeze, Mul and
    DequantizeLinear nodes, so the QDQ models of ONNX Runtime's quantizer count the same as their
    float originals.

    `macs_effective` of a layer is its dense count times the fraction of nonzero weights. For
    unstructured sparsity this is exact if a kernel skips every product with a zero weight and does
    all other products as the dense schedule would. Dense kernels, ONNX Runtime's CPU kernels among
    them, run all `macs_dense` products whatever the weights are.

    Returns {"macs_dense": int, "macs_effective": int, "layers": [...], "notes": [...]}. Each layer is
    {"node", "op_type", "macs_dense", "macs_effective", "weight_density"}, where `weight_density` is
    the nonzero fraction of a constant weight operand, or None when no operand is constant. The notes
    list every node that was skipped or only partly understood.
    """
    proto = _load_model(model)
    notes: list[str] = []

    batch_size = _set_batch_dimension(proto, notes)
    inferred = _infer_shapes(proto, notes)
    graph = _index_graph(inferred)

    layers = []
    for index, node in enumerate(inferred.graph.node):
        layer = _count_node(node, index, graph, notes)
        if layer is not None:
            layers.append(layer)

    layers = [_per_sample(layer, batch_size) for layer in layers]
    result = {
        "macs_dense": sum(layer["macs_dense"] for layer in layers),
        "macs_effective": sum(layer["macs_effective"] for layer in layers),
        "layers": layers,
        "notes": notes,
    }
    log.debug("counted %d dense MACs per sample in %d layers", result["macs_dense"], len(layers))
    return result


def theoretical_speedup(baseline_macs: float, macs: float) -> float:
    """Return baseline_macs / macs, the speedup if run time were proportional to MACs."""
    if not math.isfinite(baseline_macs) or baseline_macs <= 0:
        raise ValueError(f"baseline_macs must be a positive number, got {baseline_macs!r}")
    if not math.isfinite(macs) or macs <= 0:
        raise ValueError(
            f"macs must be a positive number, got {macs!r}; "
            "a model with no counted MACs has no finite speedup"
        )
    return float(baseline_macs) / float(macs)


def _load_model(model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy

    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    return onnx.load(str(path))


def _set_batch_dimension(model: onnx.ModelProto, notes: list[str]) -> int:
    """Set a symbolic first dimension of every graph input to 1 and return the batch size to divide by.

    The batch size is the first dimension of the first graph input, 1 when it was symbolic.
    """
    initializer_names = {tensor.name for tensor in model.graph.initializer}
    batch_sizes = []
    for value in model.graph.input:
        if value.name in initializer_names or not value.type.tensor_type.HasField("shape"):
            continue
        dims = value.type.tensor_type.shape.dim
        if not dims:
            continue
        if dims[0].HasField("dim_value") and dims[0].dim_value > 0:
            batch_sizes.append(dims[0].dim_value)
            continue
        dims[0].Clear()
        dims[0].dim_value = 1
        batch_sizes.append(1)

    if not batch_sizes:
        notes.append("no graph input has a shape; counts assume the graph processes one sample")
        return 1
    if batch_sizes[0] > 1:
        notes.append(f"graph input has a fixed batch size of {batch_sizes[0]}; counts are divided by it")
    return batch_sizes[0]


def _infer_shapes(model: onnx.ModelProto, notes: list[str]) -> onnx.ModelProto:
    # Stored intermediate shapes can carry the old symbolic batch, so inference starts without them.
    stripped = onnx.ModelProto()
    stripped.CopyFrom(model)
    del stripped.graph.value_info[:]

    # data_prop=True propagates shape values through Shape/Gather/Concat chains, which tf2onnx emits
    # in front of the Reshape that flattens the features. Without it that Reshape's output is unknown.
    try:
        return shape_inference.infer_shapes(stripped, data_prop=True)
    except (shape_inference.InferenceError, onnx.checker.ValidationError, ValueError) as error:
        log.warning("ONNX shape inference failed (%s); counting from the shapes stored in the model", error)
        notes.append(f"shape inference failed ({error}); layers without stored shapes are not counted")
        return model


def _index_graph(model: onnx.ModelProto) -> _Graph:
    shapes: dict[str, Shape] = {}
    for value in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        shape = _value_shape(value)
        if shape is not None:
            shapes[value.name] = shape

    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    for name, tensor in initializers.items():
        shapes[name] = tuple(int(dim) for dim in tensor.dims)

    producers = {output: node for node in model.graph.node for output in node.output if output}
    return _Graph(shapes=shapes, initializers=initializers, producers=producers)


def _value_shape(value: onnx.ValueInfoProto) -> Shape | None:
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return tuple(dim.dim_value if dim.HasField("dim_value") else None for dim in tensor_type.shape.dim)


def _count_node(node: onnx.NodeProto, index: int, graph: _Graph, notes: list[str]) -> dict[str, Any] | None:
    name = node.name or f"{node.op_type}_{index}"
    _note_unhandled(node, name, notes)
    if node.domain not in _DEFAULT_DOMAINS and (node.domain, node.op_type) not in _COUNTED_CONTRIB_OPS:
        return None

    if node.op_type in _CONV_OPERANDS:
        count = _count_conv(node, graph)
    elif node.op_type in _MATMUL_OPERANDS:
        count = _count_matmul(node, graph)
    elif node.op_type in _GEMM_OPERANDS:
        count = _count_gemm(node, graph)
    else:
        return None

    if count is None:
        message = f"{node.op_type} node {name!r} not counted: its operand or output shapes are unknown"
        log.warning("%s", message)
        notes.append(message)
        return None

    density = _density(count.weight)
    effective = count.macs if density is None else round(count.macs * density)
    return {
        "node": name,
        "op_type": node.op_type,
        "macs_dense": count.macs,
        "macs_effective": effective,
        "weight_density": density,
    }


def _note_unhandled(node: onnx.NodeProto, name: str, notes: list[str]) -> None:
    subgraph_types = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    if any(attribute.type in subgraph_types for attribute in node.attribute):
        notes.append(f"{node.op_type} node {name!r} has subgraphs; the nodes inside them are not counted")
    elif node.domain not in _DEFAULT_DOMAINS:
        if (node.domain, node.op_type) in _COUNTED_CONTRIB_OPS:
            return
        if any(part in node.op_type for part in _COMPUTE_NAME_PARTS):
            notes.append(f"node {name!r} of op type {node.domain}.{node.op_type} is not counted")
    elif node.op_type in _UNCOUNTED_OPS:
        notes.append(f"{node.op_type} node {name!r} is not counted")


def _per_sample(layer: dict[str, Any], batch_size: int) -> dict[str, Any]:
    if batch_size == 1:
        return layer
    return {
        **layer,
        "macs_dense": round(layer["macs_dense"] / batch_size),
        "macs_effective": round(layer["macs_effective"] / batch_size),
    }


def _count_conv(node: onnx.NodeProto, graph: _Graph) -> _LayerCount | None:
    """Count a convolution: each output element of Conv (each input element of ConvTranspose)
    takes prod(weight.shape[1:]) MACs, which is (channels / group) x kernel size."""
    data_index, weight_index = _CONV_OPERANDS[node.op_type]
    weight = _weight_operand(node, weight_index, graph)
    weight_shape = _operand_shape(node, weight_index, graph, weight)

    # ConvTranspose scatters each input element, so its work scales with the input, not the output.
    if node.op_type == "ConvTranspose":
        scaled_shape = _operand_shape(node, data_index, graph, None)
    else:
        scaled_shape = graph.shapes.get(node.output[0])

    if not _is_known(weight_shape) or not _is_known(scaled_shape):
        return None
    return _LayerCount(macs=math.prod(scaled_shape) * math.prod(weight_shape[1:]), weight=weight)


def _count_matmul(node: onnx.NodeProto, graph: _Graph) -> _LayerCount | None:
    """Count a matrix product: every output element takes K MACs, K being the shared dimension."""
    left_index, right_index = _MATMUL_OPERANDS[node.op_type]
    right = _weight_operand(node, right_index, graph)
    left = None if right is not None else _weight_operand(node, left_index, graph)

    left_shape = _operand_shape(node, left_index, graph, left)
    right_shape = _operand_shape(node, right_index, graph, right)
    inner = _inner_dimension(left_shape, right_shape)
    output_shape = graph.shapes.get(node.output[0])

    if inner is None or not _is_known(output_shape):
        return None
    return _LayerCount(macs=math.prod(output_shape) * inner, weight=right if right is not None else left)


def _count_gemm(node: onnx.NodeProto, graph: _Graph) -> _LayerCount | None:
    """Count a Gemm as M x N x K from its 2-D operands, with the output shape as a fallback for M and N.

    The operand shapes come first because ONNX shape inference has no rule for com.microsoft QGemm.
    """
    left_index, right_index = _GEMM_OPERANDS[node.op_type]
    right = _weight_operand(node, right_index, graph)
    left = None if right is not None else _weight_operand(node, left_index, graph)

    # Orient both operands as (M, K) and (K, N).
    left_shape = _operand_shape(node, left_index, graph, left)
    right_shape = _operand_shape(node, right_index, graph, right)
    left_shape = _matrix_shape(left_shape, _int_attribute(node, "transA", 0))
    right_shape = _matrix_shape(right_shape, _int_attribute(node, "transB", 0))
    output_shape = graph.shapes.get(node.output[0]) or (None, None)
    if len(output_shape) != 2:
        output_shape = (None, None)

    rows = _first_known(left_shape[0], output_shape[0])
    columns = _first_known(right_shape[1], output_shape[1])
    inner = _first_known(left_shape[1], right_shape[0])
    if rows is None or columns is None or inner is None:
        return None
    return _LayerCount(macs=rows * columns * inner, weight=right if right is not None else left)


def _matrix_shape(shape: Shape | None, transposed: int) -> tuple[int | None, int | None]:
    if shape is None or len(shape) != 2:
        return (None, None)
    return (shape[1], shape[0]) if transposed else (shape[0], shape[1])


def _first_known(*dims: int | None) -> int | None:
    return next((dim for dim in dims if dim is not None), None)


def _inner_dimension(left: Shape | None, right: Shape | None) -> int | None:
    """Return K of an (..., M, K) x (..., K, N) product, from whichever operand's shape is known."""
    left_inner = left[-1] if left else None
    right_inner = None
    if right:
        # A 1-D right operand is a vector of length K.
        right_inner = right[-2] if len(right) >= 2 else right[0]
    return _first_known(left_inner, right_inner)


def _operand_shape(node: onnx.NodeProto, index: int, graph: _Graph, value: np.ndarray | None) -> Shape | None:
    if value is not None:
        return tuple(value.shape)
    if index >= len(node.input) or not node.input[index]:
        return None
    return graph.shapes.get(node.input[index])


def _is_known(shape: Shape | None) -> bool:
    return shape is not None and all(dim is not None for dim in shape)


def _weight_operand(node: onnx.NodeProto, index: int, graph: _Graph) -> np.ndarray | None:
    """Return the constant operand at `index`, minus its zero point for integer ops, or None when the
    operand is computed from graph inputs. Only which entries are zero matters to the caller."""
    if index >= len(node.input) or not node.input[index]:
        return None
    value = _constant_value(node.input[index], graph, depth=0)
    if value is None:
        return None

    zero_point_inputs = _ZERO_POINT_INPUTS.get(node.op_type)
    if zero_point_inputs is None:
        return value
    zero_point_index = zero_point_inputs[0] if index == 0 else zero_point_inputs[1]
    zero_point = _optional_constant(node, zero_point_index, graph)
    if zero_point is None:
        return value

    return value.astype(np.float64) - _broadcast_along(zero_point, value.ndim, _zero_point_axis(node, index))


def _zero_point_axis(node: onnx.NodeProto, index: int) -> int:
    """Return the axis of per-channel zero points: output channels of a weight, rows of a left operand."""
    if node.op_type in _CONV_OPERANDS or index == 0:
        return 0
    if node.op_type in _GEMM_OPERANDS and _int_attribute(node, "transB", 0):
        return 0
    return -1


def _optional_constant(node: onnx.NodeProto, index: int, graph: _Graph) -> np.ndarray | None:
    if index >= len(node.input) or not node.input[index]:
        return None
    return _constant_value(node.input[index], graph, depth=0)


def _constant_value(name: str, graph: _Graph, depth: int) -> np.ndarray | None:
    if name in graph.constant_cache:
        return graph.constant_cache[name]

    value = None
    if name in graph.initializers:
        value = numpy_helper.to_array(graph.initializers[name])
    elif name in graph.producers and depth < _MAX_CHAIN_DEPTH:
        value = _fold_producer(graph.producers[name], graph, depth)

    graph.constant_cache[name] = value
    return value


def _fold_producer(node: onnx.NodeProto, graph: _Graph, depth: int) -> np.ndarray | None:
    """Compute the output of a Constant node, or of a layout or dequantization node on a constant."""
    if node.domain not in _DEFAULT_DOMAINS:
        return None
    if node.op_type == "Constant":
        return _constant_node_value(node)
    if node.op_type not in _WEIGHT_CHAIN_OPS:
        return None

    source = _constant_value(node.input[0], graph, depth + 1)
    if source is None:
        return None
    extra = [
        _constant_value(name, graph, depth + 1) if name else None for name in node.input[1:]
    ]
    try:
        return _apply_chain_op(node, source, extra)
    except (ValueError, IndexError) as error:
        log.debug("could not fold %s node %r onto a constant: %s", node.op_type, node.name, error)
        return None


def _apply_chain_op(
    node: onnx.NodeProto, source: np.ndarray, extra: list[np.ndarray | None]
) -> np.ndarray | None:
    op_type = node.op_type
    if op_type in ("Identity", "Cast"):
        # NOTE: values pass a Cast unconverted. That keeps the zero entries of a cast between float
        # types, but a cast to an integer type would round small weights to zero, which this ignores.
        return source
    if op_type == "Transpose":
        permutation = _ints_attribute(node, "perm") or list(reversed(range(source.ndim)))
        return np.transpose(source, permutation)
    if op_type == "Reshape":
        return _reshape(node, source, extra)
    if op_type in ("Squeeze", "Unsqueeze"):
        return _squeeze_or_unsqueeze(node, source, extra)
    if op_type == "Mul":
        return np.multiply(source, extra[0]) if extra and extra[0] is not None else None
    return _dequantize(node, source, extra)


def _reshape(node: onnx.NodeProto, source: np.ndarray, extra: list[np.ndarray | None]) -> np.ndarray | None:
    if not extra or extra[0] is None:
        return None
    target = [int(dim) for dim in extra[0]]
    if not _int_attribute(node, "allowzero", 0):
        # With allowzero=0 a 0 in the target shape copies the input's dimension at that position.
        target = [source.shape[i] if dim == 0 else dim for i, dim in enumerate(target)]
    return source.reshape(target)


def _squeeze_or_unsqueeze(
    node: onnx.NodeProto, source: np.ndarray, extra: list[np.ndarray | None]
) -> np.ndarray | None:
    # Opset 13 moved the axes from an attribute to the second input.
    if extra and extra[0] is not None:
        axes = [int(axis) for axis in extra[0]]
    else:
        axes = _ints_attribute(node, "axes")
    if node.op_type == "Squeeze":
        return np.squeeze(source, axis=tuple(axes)) if axes else np.squeeze(source)
    if not axes:
        return None
    rank = source.ndim + len(axes)
    return np.expand_dims(source, axis=tuple(sorted(axis % rank for axis in axes)))


def _dequantize(
    node: onnx.NodeProto, source: np.ndarray, extra: list[np.ndarray | None]
) -> np.ndarray | None:
    if _int_attribute(node, "block_size", 0):
        # NOTE: blocked quantization (opset 21) is not folded, so such weights have unknown density.
        return None
    scale = extra[0] if extra else None
    if scale is None:
        return None
    zero_point = extra[1] if len(extra) > 1 and extra[1] is not None else np.zeros(1)

    axis = _int_attribute(node, "axis", 1)
    centered = source.astype(np.float64) - _broadcast_along(zero_point, source.ndim, axis)
    return centered * _broadcast_along(scale, source.ndim, axis)


def _broadcast_along(values: np.ndarray, rank: int, axis: int) -> np.ndarray:
    """Shape a per-tensor (size 1) or per-channel (1-D) parameter to broadcast along `axis`."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 1 or rank == 0:
        return values.reshape(())
    shape = [1] * rank
    shape[axis % rank] = values.size
    return values.reshape(shape)


def _constant_node_value(node: onnx.NodeProto) -> np.ndarray | None:
    for attribute in node.attribute:
        if attribute.name == "value":
            return numpy_helper.to_array(attribute.t)
        if attribute.name in ("value_float", "value_int"):
            return np.asarray(onnx.helper.get_attribute_value(attribute))
        if attribute.name in ("value_floats", "value_ints"):
            return np.asarray(list(onnx.helper.get_attribute_value(attribute)))
    return None


def _density(weight: np.ndarray | None) -> float | None:
    if weight is None or weight.size == 0:
        return None
    return float(np.count_nonzero(weight)) / float(weight.size)


def _int_attribute(node: onnx.NodeProto, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(attribute.i)
    return default


def _ints_attribute(node: onnx.NodeProto, name: str) -> list[int]:
    for attribute in node.attribute:
        if attribute.name == name:
            return [int(value) for value in attribute.ints]
    return []
