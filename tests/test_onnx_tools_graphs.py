"""Small hand-built ONNX models shared by the onnx_tools tests. This module contains no tests itself.

Both classifiers take (batch, 2, 10, 10) float32 images named "input" and return (batch, 10) "logits":
Conv 16@3x3 with padding 1, Relu, MaxPool 2x2, then a 400 -> 10 dense layer, as Flatten+Gemm in
`gemm_classifier` and as Reshape+MatMul+Add in `matmul_classifier`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CHANNELS, SIZE, FILTERS, KERNEL, CLASSES = 2, 10, 16, 3, 10
FEATURES = FILTERS * (SIZE // 2) * (SIZE // 2)  # 16 filters on a 5x5 map after pooling: 400

# Hand count per sample. The conv has padding 1, so each filter produces a 10x10 map, and each
# output element takes CHANNELS x 3 x 3 = 18 MACs: 16 * 10 * 10 * 18 = 28,800. The dense layer
# takes 400 x 10 = 4,000.
CONV_MACS = FILTERS * SIZE * SIZE * CHANNELS * KERNEL * KERNEL
DENSE_MACS = FEATURES * CLASSES
TOTAL_MACS = CONV_MACS + DENSE_MACS

OPSET = 18


def classifier_weights(seed: int = 0, conv_zero_fraction: float = 0.0) -> dict[str, np.ndarray]:
    """He-scaled random weights. With `conv_zero_fraction`, that exact fraction of conv weights is 0.

    Nonzero conv weights keep at least a fifth of the largest magnitude, so int8 quantization, whose
    step is 1/127 of the largest magnitude, rounds none of them to zero and the zero count stays exact.
    """
    rng = np.random.default_rng(seed)
    shape = (FILTERS, CHANNELS, KERNEL, KERNEL)
    # Magnitudes uniform in [0.2, 1) average 0.6, so dividing by 0.6 gives the He scale on average.
    conv = rng.uniform(0.2, 1.0, shape) * rng.choice([-1.0, 1.0], shape)
    conv *= np.sqrt(2.0 / (CHANNELS * KERNEL * KERNEL)) / 0.6

    zero_count = round(conv.size * conv_zero_fraction)
    zero_positions = rng.permutation(conv.size)[:zero_count]
    conv.reshape(-1)[zero_positions] = 0.0

    return {
        "conv.weight": conv.astype(np.float32),
        "conv.bias": rng.normal(0.0, 0.1, FILTERS).astype(np.float32),
        "fc.weight": (rng.normal(0.0, 1.0, (CLASSES, FEATURES)) * np.sqrt(2.0 / FEATURES)).astype(np.float32),
        "fc.bias": rng.normal(0.0, 0.1, CLASSES).astype(np.float32),
    }


def gemm_classifier(weights: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    weights = weights if weights is not None else classifier_weights()
    nodes = [
        *_conv_block(),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], transB=1, name="fc"),
    ]
    initializers = [numpy_helper.from_array(array, name) for name, array in weights.items()]
    return _model(nodes, initializers)


def matmul_classifier(weights: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """The same network with the dense layer as MatMul + Add on a (100, 5) kernel, as Keras stores it."""
    weights = weights if weights is not None else classifier_weights()
    nodes = [
        *_conv_block(),
        helper.make_node("Reshape", ["pooled", "flat_shape"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "fc.kernel"], ["product"], name="fc"),
        helper.make_node("Add", ["product", "fc.bias"], ["logits"], name="fc_bias"),
    ]
    initializers = [
        numpy_helper.from_array(weights["conv.weight"], "conv.weight"),
        numpy_helper.from_array(weights["conv.bias"], "conv.bias"),
        numpy_helper.from_array(np.ascontiguousarray(weights["fc.weight"].T), "fc.kernel"),
        numpy_helper.from_array(weights["fc.bias"], "fc.bias"),
        numpy_helper.from_array(np.array([-1, FEATURES], dtype=np.int64), "flat_shape"),
    ]
    return _model(nodes, initializers)


def single_node_model(
    node: onnx.NodeProto,
    inputs: list[tuple[str, list[int | str]]],
    output_name: str,
    initializers: dict[str, np.ndarray],
    extra_nodes: list[onnx.NodeProto] | None = None,
) -> onnx.ModelProto:
    """Wrap one compute node (plus optional helper nodes in front) into a model with float inputs."""
    graph = helper.make_graph(
        [*(extra_nodes or []), node],
        "single_node",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in inputs],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(array, name) for name, array in initializers.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def random_images(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.0, (count, CHANNELS, SIZE, SIZE)).astype(np.float32)


def _conv_block() -> list[onnx.NodeProto]:
    return [
        helper.make_node(
            "Conv",
            ["input", "conv.weight", "conv.bias"],
            ["conv"],
            kernel_shape=[KERNEL, KERNEL],
            pads=[1, 1, 1, 1],
            name="conv",
        ),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("MaxPool", ["relu"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
    ]


def _model(nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto]) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", CHANNELS, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        initializer=initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
