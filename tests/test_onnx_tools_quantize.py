"""Int8 static quantization of hand-built ONNX models with ONNX Runtime."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from bench.onnx_tools import int8_runtime, quantize_onnx_static
from bench.onnx_tools import quantize as quantize_module
from bench.onnx_tools.quantize import ACTIVATION_TYPES
from tests.test_onnx_tools_graphs import (
    CHANNELS,
    SIZE,
    gemm_classifier,
    matmul_classifier,
    random_images,
    save,
)

REPOSITORY = Path(__file__).resolve().parents[1]
CALIBRATION_SAMPLES = 128


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """The Gemm classifier in float and int8, with the quantizer's report and its calibration images."""
    directory = tmp_path_factory.mktemp("quantize")
    fp32_path = save(gemm_classifier(), directory / "fp32.onnx")
    int8_path = directory / "int8.onnx"
    calibration = random_images(CALIBRATION_SAMPLES, seed=1)
    report = quantize_onnx_static(fp32_path, int8_path, calibration)
    return {"fp32": fp32_path, "int8": int8_path, "report": report, "calibration": calibration}


def _logits(path: Path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": images})[0]


def test_int8_labels_agree_with_fp32(quantized):
    images = random_images(200, seed=2)

    reference = _logits(quantized["fp32"], images)
    approximation = _logits(quantized["int8"], images)
    agreement = float(np.mean(reference.argmax(axis=1) == approximation.argmax(axis=1)))
    errors = np.abs(reference - approximation)

    assert agreement >= 0.9
    # Inputs outside the calibrated range are clipped at the output QuantizeLinear, so the check on
    # new inputs uses the 99th percentile. Observed here: about 1% of the largest logit.
    assert np.percentile(errors, 99) <= 0.05 * np.abs(reference).max()


def test_int8_error_small_on_calibration_images(quantized):
    images = quantized["calibration"]

    reference = _logits(quantized["fp32"], images)
    approximation = _logits(quantized["int8"], images)

    assert np.abs(reference - approximation).max() <= 0.05 * np.abs(reference).max()


def test_int8_file_smaller_with_int8_weights(quantized):
    report = quantized["report"]
    model = onnx.load(str(quantized["int8"]))
    weight_types = {tensor.name: tensor.data_type for tensor in model.graph.initializer}

    assert report["size_int8_onnx_bytes"] == quantized["int8"].stat().st_size
    assert report["size_fp32_onnx_bytes"] == quantized["fp32"].stat().st_size
    assert report["size_int8_onnx_bytes"] < report["size_fp32_onnx_bytes"]
    assert weight_types["conv.weight_quantized"] == onnx.TensorProto.INT8
    assert weight_types["fc.weight_quantized"] == onnx.TensorProto.INT8


def test_coverage_lists_conv_and_gemm(quantized):
    report = quantized["report"]

    assert report["quantized_nodes"] == [
        {"node": "conv", "op_type": "Conv", "activations_quantized": True},
        {"node": "fc", "op_type": "Gemm", "activations_quantized": True},
    ]
    assert report["not_quantized_nodes"] == []


def test_report_settings(quantized):
    report = quantized["report"]

    assert report["weight_type"] == "QInt8"
    assert report["activation_type"] in ACTIVATION_TYPES
    assert report["per_channel"] is True
    assert isinstance(report["reduce_range"], bool)
    assert report["calibration_method"] == "MinMax"
    assert report["calibration_samples"] == CALIBRATION_SAMPLES
    assert report["preprocessed"] is True


def test_matmul_coverage_and_options(tmp_path):
    fp32_path = save(matmul_classifier(), tmp_path / "fp32.onnx")

    report = quantize_onnx_static(
        fp32_path,
        tmp_path / "int8.onnx",
        random_images(16, seed=1),
        per_channel=False,
        activation_type="QInt8",
        reduce_range=False,
    )

    # Pre-processing fuses MatMul + Add into one Gemm, and the coverage names the nodes it quantized.
    assert [(node["node"], node["op_type"]) for node in report["quantized_nodes"]] == [
        ("conv", "Conv"),
        ("fc/MatMulAddFusion", "Gemm"),
    ]
    assert report["per_channel"] is False
    assert report["activation_type"] == "QInt8"
    assert report["reduce_range"] is False


def test_excluded_node_reported_as_float(tmp_path, monkeypatch):
    fp32_path = save(gemm_classifier(), tmp_path / "fp32.onnx")
    original = quantize_module.quantize_static

    def quantize_without_fc(*args, **kwargs):
        return original(*args, nodes_to_exclude=["fc"], **kwargs)

    monkeypatch.setattr(quantize_module, "quantize_static", quantize_without_fc)
    report = quantize_onnx_static(fp32_path, tmp_path / "int8.onnx", random_images(16, seed=1))

    assert [node["node"] for node in report["quantized_nodes"]] == ["conv"]
    assert report["not_quantized_nodes"] == [{"node": "fc", "op_type": "Gemm"}]


def test_failed_preprocessing_falls_back(tmp_path, monkeypatch, caplog):
    fp32_path = save(gemm_classifier(), tmp_path / "fp32.onnx")

    def failing_pre_process(*args, **kwargs):
        raise RuntimeError("simulated optimizer failure")

    monkeypatch.setattr(quantize_module, "quant_pre_process", failing_pre_process)
    with caplog.at_level(logging.WARNING, logger="bench.onnx_tools.quantize"):
        report = quantize_onnx_static(fp32_path, tmp_path / "int8.onnx", random_images(16, seed=1))

    assert report["preprocessed"] is False
    assert len(report["quantized_nodes"]) == 2
    assert "simulated optimizer failure" in caplog.text


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((4, 3, SIZE, SIZE), np.float32), r"dimension 1 must be 2"),
        (np.zeros((4, CHANNELS, SIZE, SIZE + 1), np.float32), r"dimension 3 must be 10"),
        (np.zeros((4, CHANNELS, SIZE, SIZE), np.float64), r"dtype float64"),
        (np.zeros((0, CHANNELS, SIZE, SIZE), np.float32), r"calibration_images is empty"),
        (np.zeros((CHANNELS, SIZE, SIZE), np.float32), r"expected 4 dimensions"),
        (np.full((2, CHANNELS, SIZE, SIZE), np.nan, np.float32), r"NaN or infinite"),
    ],
    ids=["channels", "width", "dtype", "empty", "rank", "nan"],
)
def test_invalid_calibration_images_raise(tmp_path, images, message):
    fp32_path = save(gemm_classifier(), tmp_path / "fp32.onnx")

    with pytest.raises(ValueError, match=message):
        quantize_onnx_static(fp32_path, tmp_path / "int8.onnx", images)

    assert not (tmp_path / "int8.onnx").exists()


def test_calibration_list_raises_type_error(tmp_path):
    fp32_path = save(gemm_classifier(), tmp_path / "fp32.onnx")

    with pytest.raises(TypeError, match="numpy array, got list"):
        quantize_onnx_static(fp32_path, tmp_path / "int8.onnx", [[0.0]])


def test_invalid_arguments_raise(tmp_path):
    fp32_path = save(gemm_classifier(), tmp_path / "fp32.onnx")
    images = random_images(4, seed=1)

    with pytest.raises(ValueError, match="is the float model itself"):
        quantize_onnx_static(fp32_path, fp32_path, images)
    with pytest.raises(ValueError, match="activation_type 'QInt4' is invalid"):
        quantize_onnx_static(fp32_path, tmp_path / "int8.onnx", images, activation_type="QInt4")
    with pytest.raises(ValueError, match="calibration_batch_size must be at least 1, got 0"):
        quantize_onnx_static(fp32_path, tmp_path / "int8.onnx", images, calibration_batch_size=0)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        quantize_onnx_static(tmp_path / "missing.onnx", tmp_path / "int8.onnx", images)


def test_fixed_batch_model_needs_whole_batches(tmp_path):
    model = gemm_classifier()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 4
    fp32_path = save(model, tmp_path / "fp32.onnx")

    with pytest.raises(ValueError, match="pass a multiple of 4 images"):
        quantize_onnx_static(fp32_path, tmp_path / "int8.onnx", random_images(6, seed=1))

    report = quantize_onnx_static(fp32_path, tmp_path / "int8.onnx", random_images(8, seed=1))
    assert report["calibration_samples"] == 8


def test_int8_runtime_matches_session(quantized):
    images = random_images(8, seed=3)
    runtime = int8_runtime(quantized["int8"], threads=1)

    output = runtime.to_numpy(runtime.run(runtime.prepare(images)))

    np.testing.assert_allclose(output, _logits(quantized["int8"], images), rtol=1e-5, atol=1e-6)
    assert "int8 QDQ model" in runtime.description
    assert runtime.setup_seconds is not None


def test_int8_runtime_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="quantize_onnx_static"):
        int8_runtime(tmp_path / "missing.onnx", threads=1)


def test_tools_import_no_framework(tmp_path):
    """Quantizing and counting must not import torch or tensorflow, even where they are installed."""
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path

        from bench.onnx_tools import count_macs, quantize_onnx_static
        from tests.test_onnx_tools_graphs import gemm_classifier, random_images, save

        directory = Path(sys.argv[1])
        fp32_path = save(gemm_classifier(), directory / "fp32.onnx")
        quantize_onnx_static(fp32_path, directory / "int8.onnx", random_images(8, seed=1))
        count_macs(directory / "int8.onnx")
        loaded = sorted({"torch", "tensorflow", "keras"} & set(sys.modules))
        print("frameworks loaded:", loaded)
        sys.exit(1 if loaded else 0)
        """
    )

    completed = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
