"""MAC counts and int8 quantization of the LeNet-5 ONNX exports of both frameworks.

Each export runs in its own subprocess, so this pytest process never imports torch or TensorFlow.
Loading both frameworks into one process is not supported here, and the tools under test import
neither.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from bench.onnx_tools import count_macs, quantize_onnx_static
from tests.frameworks import needs_tf, needs_torch

REPOSITORY = Path(__file__).resolve().parents[1]

# Per sample: conv1 6 x 28 x 28 outputs x 25, conv2 16 x 10 x 10 outputs x (6 x 25),
# fc1 400 x 120, fc2 120 x 84, fc3 84 x 10.
LENET5_LAYER_MACS = [6 * 28 * 28 * 25, 16 * 10 * 10 * 150, 400 * 120, 120 * 84, 84 * 10]
LENET5_MACS = 416_520

EXPORT_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from bench.spec import initial_weights, lenet5

    framework, path = sys.argv[1], Path(sys.argv[2])
    if framework == "torch":
        from impl_torch.backend import TorchBackend as Backend
    else:
        from impl_tf.backend import TFBackend as Backend

    backend = Backend()
    spec = lenet5()
    model = backend.build(spec)
    backend.set_weights(model, spec, initial_weights(spec, 0))
    backend.export_onnx(model, spec, path)
    """
)

FRAMEWORKS = [
    pytest.param("torch", marks=[needs_torch, pytest.mark.torch, pytest.mark.slow]),
    pytest.param("tf", marks=[needs_tf, pytest.mark.tf, pytest.mark.slow]),
]


@pytest.fixture(scope="module", params=FRAMEWORKS)
def lenet5_onnx(request, tmp_path_factory) -> Path:
    """LeNet-5 with seed-0 initial weights, exported to ONNX by one framework in a subprocess."""
    framework = request.param
    path = tmp_path_factory.mktemp(f"lenet5-{framework}") / "lenet5.onnx"
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

    completed = subprocess.run(
        [sys.executable, "-c", EXPORT_SCRIPT, framework, str(path)],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert completed.returncode == 0, f"{framework} export failed:\n{completed.stderr[-4000:]}"
    assert path.is_file()
    return path


def test_lenet5_dense_macs(lenet5_onnx):
    result = count_macs(lenet5_onnx)

    assert sum(LENET5_LAYER_MACS) == LENET5_MACS
    assert result["macs_dense"] == LENET5_MACS
    assert [layer["macs_dense"] for layer in result["layers"]] == LENET5_LAYER_MACS
    assert result["macs_effective"] == LENET5_MACS
    assert result["notes"] == []


def test_lenet5_int8_agrees_with_fp32(lenet5_onnx, tmp_path):
    int8_path = tmp_path / "lenet5-int8.onnx"
    calibration = np.random.default_rng(1).normal(size=(64, 1, 32, 32)).astype(np.float32)
    images = np.random.default_rng(2).normal(size=(256, 1, 32, 32)).astype(np.float32)

    report = quantize_onnx_static(lenet5_onnx, int8_path, calibration)
    reference = ort.InferenceSession(str(lenet5_onnx)).run(None, {"input": images})[0]
    approximation = ort.InferenceSession(str(int8_path)).run(None, {"input": images})[0]
    agreement = float(np.mean(reference.argmax(axis=1) == approximation.argmax(axis=1)))

    assert agreement >= 0.95
    assert len(report["quantized_nodes"]) == 5
    assert report["not_quantized_nodes"] == []
    assert report["size_int8_onnx_bytes"] < report["size_fp32_onnx_bytes"]
    assert count_macs(int8_path)["macs_dense"] == LENET5_MACS
