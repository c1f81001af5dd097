"""Each framework's native int8 path (PT2E + Inductor, TensorFlow Lite) against its own float model.

Importing TensorFlow and torch's compiler stack in one process crashes. So every check runs the
framework in a subprocess that prints one JSON line of measurements, and this process imports neither.
The model is LeNet-5 with the canonical seed-0 initial weights, calibrated on 256 random-normal images
and evaluated on 64 others.
"""

import importlib.util
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULT_PREFIX = "NATIVE_INT8_RESULT "
LENET5_PARAMETERS = 61_706
QUANTIZED_LAYERS = ("conv1", "conv2", "fc1", "fc2", "fc3")
MIN_LABEL_AGREEMENT = 0.9
# Bound on max |int8 - float logits| / max |float logits|, which allows a few quantization steps.
MAX_RELATIVE_LOGIT_ERROR = 0.1

HAS_TORCHAO = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("torchao") is not None
HAS_TF = importlib.util.find_spec("tensorflow") is not None
HAS_CXX = shutil.which("g++") is not None or shutil.which("c++") is not None

needs_torchao = pytest.mark.skipif(
    not HAS_TORCHAO, reason="needs PyTorch and torchao: pip install -e '.[torch]'"
)
needs_tf = pytest.mark.skipif(not HAS_TF, reason="TensorFlow is not installed: pip install -e '.[tf]'")

# Runs in the subprocess after a framework-specific preamble that defines `backend`, `quantize_native`
# and `extra()` (framework-specific measurements).
MEASURE = """
import json, tempfile
from pathlib import Path
import numpy as np
from bench.spec import initial_weights, lenet5

backend.configure(1, 0)
spec = lenet5()
model = backend.build(spec)
backend.set_weights(model, spec, initial_weights(spec, 0))
rng = np.random.default_rng(0)
calibration = rng.standard_normal((256, *spec.input_shape)).astype(np.float32)
images = rng.standard_normal((64, *spec.input_shape)).astype(np.float32)
float_before = backend.predict(model, images)

try:
    quantize_native(model, spec, calibration[:, :, :16], Path(tempfile.mkdtemp()), 1)
    bad_shape_error = ""
except ValueError as error:
    bad_shape_error = str(error)

artifacts = Path(tempfile.mkdtemp())
result = quantize_native(model, spec, calibration, artifacts, 1)
runtime = result.runtime
float_after = backend.predict(model, images)

prepared_one = [runtime.prepare(images[i : i + 1]) for i in range(16)]
prepared_all = runtime.prepare(images)
graphs_before_run = compiled_graphs()
batch_one = np.concatenate([runtime.to_numpy(runtime.run(prepared)) for prepared in prepared_one])
batch_all = runtime.to_numpy(runtime.run(prepared_all))
batch_all_again = runtime.to_numpy(runtime.run(prepared_all))
graphs_compiled_by_run = compiled_graphs() - graphs_before_run

scale = float(np.abs(float_before).max())
files = {path.name: path.stat().st_size for path in artifacts.iterdir()}
measured = {
    "runtime_name": result.runtime_name,
    "runtime_description": runtime.description,
    "description": result.description,
    "size_bytes": result.size_bytes,
    "files": files,
    "setup_seconds": result.setup_seconds,
    "runtime_setup_seconds": runtime.setup_seconds,
    "coverage": result.coverage,
    "bad_shape_error": bad_shape_error,
    "float_model_changed": float(np.abs(float_after - float_before).max()),
    "output_dtype": str(batch_all.dtype),
    "output_shape": list(batch_all.shape),
    "label_agreement_batch_64": float((batch_all.argmax(1) == float_before.argmax(1)).mean()),
    "label_agreement_batch_1": float((batch_one.argmax(1) == float_before[:16].argmax(1)).mean()),
    "relative_logit_error": float(np.abs(batch_all - float_before).max()) / scale,
    "batch_1_vs_batch_64": float(np.abs(batch_one - batch_all[:16]).max()),
    "repeat_run_diff": float(np.abs(batch_all_again - batch_all).max()),
    "graphs_compiled_by_run": graphs_compiled_by_run,
    **extra(),
}
print(PREFIX + json.dumps(measured))
"""

TORCH_PREAMBLE = """
import torch
from impl_torch.backend import TorchBackend
from impl_torch.quantize import quantize_native

backend = TorchBackend()

def compiled_graphs():
    from torch._dynamo.utils import counters
    return int(counters["stats"]["unique_graphs"])

def extra():
    return {}
"""

# torch.compile that returns a callable which fails the way a compile error does, on its first call.
TORCH_COMPILE_FAILS = """
def failing_compile(module, **options):
    def call(*args):
        raise RuntimeError("C++ compiler not found (simulated)")
    return call

torch.compile = failing_compile
"""

# Tensor names from the converter, mapped to spec layers by impl_tf.quantize._layers_in_name.
TENSOR_NAME_LAYERS = {
    "lenet5_1/relu1_1/Relu;lenet5_1/conv1_1/convolution": ["conv1", "relu1"],
    "lenet5_1/conv1_padding_1/Pad": ["conv1"],
    "lenet5_1/fc_1_1/MatMul": ["fc_1"],
    "lenet5_1/fc_1/MatMul": ["fc_1"],
    "StatefulPartitionedCall_1:01": [],
}

TF_PREAMBLE = f"""
from impl_tf.backend import TFBackend
from impl_tf.quantize import _layers_in_name, quantize_native

backend = TFBackend()

def compiled_graphs():
    return 0

def extra():
    layer_names = {{"conv1", "relu1", "fc", "fc_1"}}
    names = {list(TENSOR_NAME_LAYERS)!r}
    return {{"tensor_name_layers": {{name: sorted(_layers_in_name(name, layer_names)) for name in names}}}}
"""

# Importing ai_edge_litert raises ImportError, as when it is not installed.
TF_WITHOUT_LITERT = """
import sys
sys.modules["ai_edge_litert"] = None
"""


def _measure(*preamble: str) -> dict:
    code = "\n".join(textwrap.dedent(part) for part in (*preamble, MEASURE))
    completed = subprocess.run(
        [sys.executable, "-c", f"PREFIX = {RESULT_PREFIX!r}\n{code}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    failure = f"measurement subprocess exited with {completed.returncode}:\n{completed.stderr[-6000:]}"
    assert completed.returncode == 0, failure
    assert lines, f"measurement subprocess printed no {RESULT_PREFIX.strip()} line:\n{completed.stdout[-6000:]}"
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


@pytest.fixture(scope="module")
def torch_int8() -> dict:
    return _measure(TORCH_PREAMBLE)


@pytest.fixture(scope="module")
def torch_int8_uncompiled() -> dict:
    return _measure(TORCH_PREAMBLE, TORCH_COMPILE_FAILS)


@pytest.fixture(scope="module")
def tflite_int8() -> dict:
    return _measure(TF_PREAMBLE)


@pytest.fixture(scope="module")
def tflite_int8_without_litert() -> dict:
    return _measure(TF_WITHOUT_LITERT, TF_PREAMBLE)


def _check_runtime_outputs(measured: dict) -> None:
    assert measured["output_dtype"] == "float32"
    assert measured["output_shape"] == [64, 10]
    assert measured["label_agreement_batch_64"] >= MIN_LABEL_AGREEMENT
    assert measured["label_agreement_batch_1"] >= MIN_LABEL_AGREEMENT
    assert measured["relative_logit_error"] <= MAX_RELATIVE_LOGIT_ERROR
    assert measured["batch_1_vs_batch_64"] <= 1e-4
    assert measured["repeat_run_diff"] == 0.0


def _check_coverage(coverage: dict) -> None:
    for layer in QUANTIZED_LAYERS:
        assert layer in coverage["int8_layers"], f"{layer} not int8: {coverage}"
        assert coverage["weights"][layer].startswith("int8")
    assert coverage["float_layers"] == []


@needs_torchao
@pytest.mark.torch
@pytest.mark.slow
def test_torch_int8_matches_float_model(torch_int8):
    _check_runtime_outputs(torch_int8)
    assert torch_int8["float_model_changed"] == 0.0


@needs_torchao
@pytest.mark.torch
@pytest.mark.slow
def test_torch_int8_runtime_fields(torch_int8):
    assert torch_int8["runtime_name"] == "torch-int8-pt2e"
    assert torch_int8["description"] == torch_int8["runtime_description"]
    assert "PT2E" in torch_int8["description"]
    assert torch_int8["setup_seconds"] > 0
    assert torch_int8["runtime_setup_seconds"] == torch_int8["setup_seconds"]


@needs_torchao
@pytest.mark.torch
@pytest.mark.slow
def test_torch_int8_size_below_float(torch_int8):
    assert torch_int8["files"] == {"lenet5-int8-pt2e.pt2": torch_int8["size_bytes"]}
    assert torch_int8["size_bytes"] < 4 * LENET5_PARAMETERS


@needs_torchao
@pytest.mark.torch
@pytest.mark.slow
def test_torch_int8_coverage_names_layers(torch_int8):
    _check_coverage(torch_int8["coverage"])


@needs_torchao
@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.skipif(not HAS_CXX, reason="Inductor needs a C++ compiler (g++) to compile the int8 kernels")
def test_torch_int8_compiles_to_int8_kernels(torch_int8):
    coverage = torch_int8["coverage"]
    assert coverage["compiled"] is True
    assert coverage["inductor_lowered_ops"].get("qconv_unary") == 2
    assert coverage["inductor_lowered_ops"].get("qlinear_unary") == 3
    assert set(coverage["compile_seconds"]) == {"1", "64"}
    assert coverage["uncompiled_batch_sizes"] == []
    assert torch_int8["graphs_compiled_by_run"] == 0


@needs_torchao
@pytest.mark.torch
@pytest.mark.slow
def test_torch_int8_rejects_wrong_image_shape(torch_int8):
    assert "(N >= 1, 1, 32, 32)" in torch_int8["bad_shape_error"]
    assert "(256, 1, 16, 32)" in torch_int8["bad_shape_error"]


@needs_torchao
@pytest.mark.torch
@pytest.mark.slow
def test_torch_int8_compile_failure_falls_back(torch_int8_uncompiled):
    coverage = torch_int8_uncompiled["coverage"]
    _check_runtime_outputs(torch_int8_uncompiled)
    assert coverage["compiled"] is False
    assert coverage["uncompiled_batch_sizes"] == [1, 64]
    assert "uncompiled" in torch_int8_uncompiled["description"]
    assert "C++ compiler not found (simulated)" in torch_int8_uncompiled["description"]
    _check_coverage(coverage)


@needs_tf
@pytest.mark.tf
@pytest.mark.slow
def test_tflite_int8_matches_float_model(tflite_int8):
    _check_runtime_outputs(tflite_int8)
    assert tflite_int8["float_model_changed"] == 0.0


@needs_tf
@pytest.mark.tf
@pytest.mark.slow
def test_tflite_int8_runtime_fields(tflite_int8):
    assert tflite_int8["runtime_name"] == "tflite-int8"
    assert tflite_int8["description"] == tflite_int8["runtime_description"]
    assert "1 thread(s)" in tflite_int8["description"]
    assert tflite_int8["setup_seconds"] > 0
    assert tflite_int8["runtime_setup_seconds"] == tflite_int8["setup_seconds"]


@needs_tf
@pytest.mark.tf
@pytest.mark.slow
def test_tflite_int8_size_below_float(tflite_int8):
    assert tflite_int8["files"] == {"lenet5-int8.tflite": tflite_int8["size_bytes"]}
    assert tflite_int8["size_bytes"] < 4 * LENET5_PARAMETERS


@needs_tf
@pytest.mark.tf
@pytest.mark.slow
def test_tflite_int8_coverage_names_layers(tflite_int8):
    coverage = tflite_int8["coverage"]
    _check_coverage(coverage)
    compute_ops = [row for row in coverage["ops"] if row["op"] in {"CONV_2D", "FULLY_CONNECTED"}]
    assert len(compute_ops) == 5
    assert all(row["input_dtype"] == "int8" for row in compute_ops)


@needs_tf
@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.parametrize("tensor_name", list(TENSOR_NAME_LAYERS))
def test_tflite_tensor_name_to_layers(tflite_int8, tensor_name):
    assert tflite_int8["tensor_name_layers"][tensor_name] == TENSOR_NAME_LAYERS[tensor_name]


@needs_tf
@pytest.mark.tf
@pytest.mark.slow
def test_tflite_int8_rejects_wrong_image_shape(tflite_int8):
    assert "(N >= 1, 1, 32, 32)" in tflite_int8["bad_shape_error"]
    assert "(256, 1, 16, 32)" in tflite_int8["bad_shape_error"]


@needs_tf
@pytest.mark.tf
@pytest.mark.slow
def test_tflite_int8_without_litert_uses_tf_lite(tflite_int8_without_litert):
    assert tflite_int8_without_litert["coverage"]["interpreter"].startswith("tf.lite.Interpreter")
    _check_runtime_outputs(tflite_int8_without_litert)
    _check_coverage(tflite_int8_without_litert["coverage"])
