"""MAC counting on hand-built ONNX graphs whose counts are worked out by hand in each test."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import helper
from onnxruntime.quantization import QuantFormat, quantize_dynamic, quantize_static

from bench.onnx_tools import ImageCalibrationReader, count_macs, quantize_onnx_static, theoretical_speedup
from tests.test_onnx_tools_graphs import (
    CONV_MACS,
    DENSE_MACS,
    TOTAL_MACS,
    classifier_weights,
    gemm_classifier,
    matmul_classifier,
    random_images,
    save,
    single_node_model,
)


def _layers_by_op(result: dict) -> dict[str, dict]:
    return {layer["op_type"]: layer for layer in result["layers"]}


def test_gemm_classifier_hand_count():
    result = count_macs(gemm_classifier())

    # conv: 16 filters x 10 x 10 outputs x (2 channels x 3 x 3) = 28,800; dense: 400 x 10 = 4,000.
    assert CONV_MACS == 28_800
    assert DENSE_MACS == 4_000
    assert result["macs_dense"] == 32_800
    assert result["macs_effective"] == 32_800
    nodes = [(layer["node"], layer["op_type"]) for layer in result["layers"]]
    assert nodes == [("conv", "Conv"), ("fc", "Gemm")]
    assert [layer["macs_dense"] for layer in result["layers"]] == [CONV_MACS, DENSE_MACS]
    assert [layer["weight_density"] for layer in result["layers"]] == [1.0, 1.0]
    assert result["notes"] == []


def test_matmul_classifier_hand_count():
    result = count_macs(matmul_classifier())

    assert result["macs_dense"] == TOTAL_MACS
    assert [layer["op_type"] for layer in result["layers"]] == ["Conv", "MatMul"]
    assert [layer["macs_dense"] for layer in result["layers"]] == [CONV_MACS, DENSE_MACS]
    assert result["notes"] == []


def test_count_from_path(tmp_path):
    path = save(gemm_classifier(), tmp_path / "gemm.onnx")

    assert count_macs(path)["macs_dense"] == TOTAL_MACS
    assert count_macs(str(path))["macs_dense"] == TOTAL_MACS


def test_half_zero_conv_weights_halve_layer():
    result = count_macs(gemm_classifier(classifier_weights(conv_zero_fraction=0.5)))
    layers = _layers_by_op(result)

    assert layers["Conv"]["weight_density"] == 0.5
    assert layers["Conv"]["macs_dense"] == CONV_MACS
    assert layers["Conv"]["macs_effective"] == CONV_MACS // 2
    assert layers["Gemm"]["macs_effective"] == DENSE_MACS
    assert result["macs_dense"] == TOTAL_MACS
    assert result["macs_effective"] == CONV_MACS // 2 + DENSE_MACS


def test_qdq_model_keeps_dense_count(tmp_path):
    fp32_path = save(gemm_classifier(classifier_weights(conv_zero_fraction=0.5)), tmp_path / "fp32.onnx")
    int8_path = tmp_path / "int8.onnx"
    quantize_onnx_static(fp32_path, int8_path, random_images(32, seed=1))

    fp32 = count_macs(fp32_path)
    int8 = count_macs(int8_path)
    int8_layers = _layers_by_op(int8)

    assert int8["macs_dense"] == fp32["macs_dense"]
    assert [layer["node"] for layer in int8["layers"]] == [layer["node"] for layer in fp32["layers"]]
    # Symmetric int8 weights keep exact zeros at zero, and no nonzero weight here is small enough to
    # round to zero, so the density read through DequantizeLinear is unchanged.
    assert int8_layers["Conv"]["weight_density"] == 0.5
    assert int8_layers["Conv"]["macs_effective"] == CONV_MACS // 2
    assert int8["notes"] == []


@pytest.mark.parametrize("builder", [gemm_classifier, matmul_classifier], ids=["gemm", "matmul"])
def test_qoperator_model_keeps_dense_count(tmp_path, builder):
    fp32_path = save(builder(classifier_weights(conv_zero_fraction=0.5)), tmp_path / "fp32.onnx")
    int8_path = tmp_path / "qoperator.onnx"
    reader = ImageCalibrationReader("input", random_images(32, seed=1), batch_size=8)
    quantize_static(
        str(fp32_path), str(int8_path), reader, quant_format=QuantFormat.QOperator, per_channel=True
    )

    result = count_macs(int8_path)
    op_types = [layer["op_type"] for layer in result["layers"]]

    # Gemm becomes com.microsoft QGemm, MatMul becomes QLinearMatMul.
    assert op_types[0] == "QLinearConv"
    assert op_types[1] in ("QGemm", "QLinearMatMul")
    assert result["macs_dense"] == TOTAL_MACS
    assert result["layers"][0]["weight_density"] == 0.5


def test_dynamic_quantized_model_keeps_dense_count(tmp_path):
    fp32_path = save(matmul_classifier(classifier_weights(conv_zero_fraction=0.5)), tmp_path / "fp32.onnx")
    int8_path = tmp_path / "dynamic.onnx"
    quantize_dynamic(str(fp32_path), str(int8_path))

    result = count_macs(int8_path)

    assert [layer["op_type"] for layer in result["layers"]] == ["ConvInteger", "MatMulInteger"]
    assert result["macs_dense"] == TOTAL_MACS
    assert result["layers"][0]["weight_density"] == 0.5


CONV_CASES = [
    # (id, input shape, weight shape, attributes, expected MACs per sample)
    # group 2: 6 filters x 6 x 6 outputs x (4 / 2 channels x 3 x 3) = 216 x 18
    ("grouped", [1, 4, 8, 8], (6, 2, 3, 3), {"group": 2}, 216 * 18),
    # depthwise: 4 filters x 6 x 6 outputs x (1 channel x 3 x 3)
    ("depthwise", [1, 4, 8, 8], (4, 1, 3, 3), {"group": 4}, 4 * 36 * 9),
    # stride 2, padding 1 on 9x9: (9 + 2 - 3) // 2 + 1 = 5, so 8 x 5 x 5 outputs x 27
    ("strided", [1, 3, 9, 9], (8, 3, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}, 200 * 27),
    # dilation 2 widens 3x3 to 5x5: 7 - 5 + 1 = 3, so 2 x 3 x 3 outputs x 9
    ("dilated", [1, 1, 7, 7], (2, 1, 3, 3), {"dilations": [2, 2]}, 18 * 9),
    # a 1x1 conv, as low-rank factorizations add: 4 x 7 x 7 outputs x 16 channels
    ("pointwise", [1, 16, 7, 7], (4, 16, 1, 1), {}, 196 * 16),
    # symbolic batch: the count is per sample
    ("symbolic batch", ["n", 3, 9, 9], (8, 3, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}, 200 * 27),
]


@pytest.mark.parametrize(
    ("input_shape", "weight_shape", "attributes", "expected"),
    [case[1:] for case in CONV_CASES],
    ids=[case[0] for case in CONV_CASES],
)
def test_conv_variants(input_shape, weight_shape, attributes, expected):
    weight = np.ones(weight_shape, dtype=np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", **attributes)
    model = single_node_model(node, [("x", input_shape)], "y", {"w": weight})

    result = count_macs(model)

    assert result["macs_dense"] == expected
    assert result["layers"][0]["weight_density"] == 1.0


def test_conv_transpose_counts_per_input_element():
    # Each of the 3 x 4 x 4 input elements is scattered into (2 output channels x 3 x 3) products.
    weight = np.ones((3, 2, 3, 3), dtype=np.float32)
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], name="up")
    model = single_node_model(node, [("x", ["batch", 3, 4, 4])], "y", {"w": weight})

    result = count_macs(model)

    assert result["macs_dense"] == 48 * 18
    assert result["layers"][0]["op_type"] == "ConvTranspose"


def test_batched_matmul_counts_rows():
    # (batch, 3, 8) x (8, 6): each sample has 3 rows of 6 outputs, 8 MACs each.
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="project")
    model = single_node_model(node, [("x", ["batch", 3, 8])], "y", {"w": np.ones((8, 6), np.float32)})

    assert count_macs(model)["macs_dense"] == 3 * 6 * 8


def test_gemm_without_transposed_weight():
    node = helper.make_node("Gemm", ["x", "w"], ["y"], name="fc")
    model = single_node_model(node, [("x", ["batch", 100])], "y", {"w": np.ones((100, 5), np.float32)})

    assert count_macs(model)["macs_dense"] == 500


def test_weight_behind_transpose_gives_density():
    weight = np.ones((5, 100), dtype=np.float32)
    weight[:, :20] = 0.0
    transpose = helper.make_node("Transpose", ["w"], ["w_t"], perm=[1, 0], name="transpose")
    node = helper.make_node("MatMul", ["x", "w_t"], ["y"], name="fc")
    model = single_node_model(node, [("x", ["batch", 100])], "y", {"w": weight}, extra_nodes=[transpose])

    layer = count_macs(model)["layers"][0]

    assert layer["macs_dense"] == 500
    assert layer["weight_density"] == pytest.approx(0.8)
    assert layer["macs_effective"] == 400


def test_weight_behind_identity_and_reshape():
    weight = np.zeros((500,), dtype=np.float32)
    weight[:250] = 1.0
    nodes = [
        helper.make_node("Identity", ["w_flat"], ["w_copy"], name="identity"),
        helper.make_node("Reshape", ["w_copy", "w_shape"], ["w"], name="reshape"),
    ]
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")
    initializers = {"w_flat": weight, "w_shape": np.array([100, 5], dtype=np.int64)}
    model = single_node_model(node, [("x", ["batch", 100])], "y", initializers, extra_nodes=nodes)

    layer = count_macs(model)["layers"][0]

    assert layer["macs_dense"] == 500
    assert layer["weight_density"] == 0.5


def test_weight_behind_pruning_mask_mul():
    weight = np.ones((8, 3, 3, 3), dtype=np.float32)
    mask = np.zeros_like(weight)
    mask[:2] = 1.0
    apply_mask = helper.make_node("Mul", ["weight_orig", "weight_mask"], ["w"], name="apply_mask")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv")
    initializers = {"weight_orig": weight, "weight_mask": mask}
    model = single_node_model(node, [("x", ["batch", 3, 5, 5])], "y", initializers, extra_nodes=[apply_mask])

    layer = count_macs(model)["layers"][0]

    # 8 filters x 3 x 3 outputs x 27, of which 2 of 8 filters are kept.
    assert layer["macs_dense"] == 8 * 9 * 27
    assert layer["weight_density"] == 0.25
    assert layer["macs_effective"] == 2 * 9 * 27


def test_product_of_two_activations_has_no_density():
    node = helper.make_node("MatMul", ["a", "b"], ["y"], name="scores")
    model = single_node_model(node, [("a", ["batch", 4, 8]), ("b", ["batch", 8, 4])], "y", {})

    layer = count_macs(model)["layers"][0]

    assert layer["macs_dense"] == 4 * 4 * 8
    assert layer["weight_density"] is None
    assert layer["macs_effective"] == layer["macs_dense"]


def test_fixed_batch_divides_counts():
    model = gemm_classifier()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4

    result = count_macs(model)

    assert result["macs_dense"] == TOTAL_MACS
    assert any("fixed batch size of 4" in note for note in result["notes"])


def test_unknown_shape_is_noted():
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="opaque")
    model = single_node_model(node, [("x", ["batch", 100])], "y", {"w": np.ones((100, 5), np.float32)})
    model.graph.input[0].type.tensor_type.ClearField("shape")

    result = count_macs(model)

    assert result["layers"] == []
    assert result["macs_dense"] == 0
    assert any("'opaque'" in note and "shapes are unknown" in note for note in result["notes"])


def test_unknown_compute_op_is_noted():
    custom = helper.make_node("FancyConv", ["x"], ["y"], domain="com.example", name="custom")
    graph = helper.make_graph(
        [custom],
        "custom",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.example", 1)]
    )

    result = count_macs(model)

    assert result["macs_dense"] == 0
    assert result["notes"] == ["node 'custom' of op type com.example.FancyConv is not counted"]


def test_caller_model_left_unchanged():
    model = gemm_classifier()
    before = model.SerializeToString()

    count_macs(model)

    assert model.SerializeToString() == before


def test_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        count_macs(tmp_path / "missing.onnx")


def test_theoretical_speedup_ratio():
    assert theoretical_speedup(416_520, 208_260) == 2.0
    assert theoretical_speedup(100, 400) == 0.25


@pytest.mark.parametrize(
    ("baseline", "macs", "message"),
    [
        (0, 10, "baseline_macs must be a positive number, got 0"),
        (10, 0, "macs must be a positive number, got 0"),
        (10, -5, "macs must be a positive number, got -5"),
        (math.nan, 10, "baseline_macs must be a positive number, got nan"),
    ],
)
def test_theoretical_speedup_rejects_invalid(baseline, macs, message):
    with pytest.raises(ValueError, match=message):
        theoretical_speedup(baseline, macs)
