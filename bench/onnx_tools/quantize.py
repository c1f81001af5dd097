"""Int8 post-training static quantization of ONNX models with ONNX Runtime, and a runtime for the result.

The data types follow the `quantize_static` docstring of onnxruntime 1.32, section "Choosing
parameters for CPU inference". It recommends the QDQ format and int8 weights everywhere, with uint8
activations on x86-64 CPUs and int8 activations on ARM CPUs. On x86-64 CPUs without VNNI it also
recommends `reduce_range=True` (7-bit weights), which lowers the risk of integer saturation there.
The defaults below follow that guidance for the CPU this process runs on, so quantize on the machine
that runs the benchmark. ONNX Runtime quantizes activations asymmetrically by default, and then uint8
and int8 give the same 256 levels, so the choice changes which kernels run, not the QDQ model's
rounding.
"""

from __future__ import annotations

import logging
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from bench.backend import NativeRuntime
from bench.onnx_runtime import onnxruntime_runtime

log = logging.getLogger(__name__)

ACTIVATION_TYPES = ("QUInt8", "QInt8")
WEIGHT_TYPE = "QInt8"
CALIBRATION_METHOD = "MinMax"

_X86_MACHINES = {"x86_64", "amd64", "i386", "i686", "x86"}
_VNNI_FLAGS = {"avx512_vnni", "avx_vnni"}

# Ops whose float form gets QDQ on a weight input, by input positions that may hold the weight.
_FLOAT_COMPUTE_OPS = {"Conv": (1,), "ConvTranspose": (1,), "Gemm": (1,), "MatMul": (0, 1)}
# Ops that already compute in integers.
_INTEGER_COMPUTE_OPS = {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}
_INTEGER_TYPES = {
    onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT16, onnx.TensorProto.UINT16
}


class ImageCalibrationReader(CalibrationDataReader):
    """Feed (N, C, H, W) float32 images to ONNX Runtime's calibrator in batches of `batch_size`."""

    def __init__(self, input_name: str, images: np.ndarray, batch_size: int) -> None:
        self.input_name = input_name
        self.images = images
        self.batch_size = batch_size
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.images):
            return None
        batch = self.images[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return {self.input_name: np.ascontiguousarray(batch)}

    def rewind(self) -> None:
        self.position = 0

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)


def quantize_onnx_static(
    fp32_path: str | Path,
    int8_path: str | Path,
    calibration_images: np.ndarray,
    per_channel: bool = True,
    *,
    activation_type: str | None = None,
    reduce_range: bool | None = None,
    calibration_batch_size: int = 16,
) -> dict[str, Any]:
    """Quantize a float ONNX model to int8 QDQ form with MinMax calibration on `calibration_images`.

    The model first goes through ONNX Runtime's `quant_pre_process` (graph optimization and ONNX shape
    inference, see `_preprocess`). If that step fails, a warning is logged and the original model is
    quantized. `activation_type` ("QUInt8" or "QInt8") and `reduce_range` default to the ONNX Runtime
    guidance for this process's CPU, as the module docstring explains.

    Returns {"size_int8_onnx_bytes", "size_fp32_onnx_bytes", "quantized_nodes", "not_quantized_nodes",
    "activation_type", "weight_type", "per_channel", "reduce_range", "calibration_method",
    "calibration_samples", "preprocessed"}. `quantized_nodes` lists the compute nodes whose weights
    are dequantized from int8, each as {"node", "op_type", "activations_quantized"}. A node with
    float activations still computes in float. `not_quantized_nodes` lists the compute nodes
    ({"node", "op_type"}) that stayed in float. Both lists name the nodes of the int8 model. These
    are the nodes after pre-processing, which can fuse MatMul + Add into one Gemm named
    "<MatMul name>/MatMulAddFusion".
    """
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    _check_paths(fp32_path, int8_path)
    activation = _resolve_activation_type(activation_type)
    if reduce_range is None:
        reduce_range = _default_reduce_range()

    model = onnx.load(str(fp32_path))
    input_name, input_shape = _single_input(model, fp32_path)
    _check_calibration_images(calibration_images, input_name, input_shape)
    batch_size = _calibration_batch_size(input_shape, len(calibration_images), calibration_batch_size)
    reader = ImageCalibrationReader(input_name, calibration_images, batch_size)

    int8_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="twinbench-quantize-") as temp_dir:
        preprocessed_path = _preprocess(fp32_path, Path(temp_dir) / "preprocessed.onnx")
        quantize_static(
            model_input=str(preprocessed_path or fp32_path),
            model_output=str(int8_path),
            calibration_data_reader=reader,
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            reduce_range=reduce_range,
            activation_type=QuantType[activation],
            weight_type=QuantType[WEIGHT_TYPE],
            calibrate_method=CalibrationMethod.MinMax,
        )

    quantized, not_quantized = weight_quantization_coverage(onnx.load(str(int8_path)))
    if not_quantized:
        names = [entry["node"] for entry in not_quantized]
        log.warning("%d compute nodes stayed in float: %s", len(names), names)
    log.info("quantized %s to %s: %d compute nodes with int8 weights", fp32_path, int8_path, len(quantized))

    return {
        "size_int8_onnx_bytes": int8_path.stat().st_size,
        "size_fp32_onnx_bytes": fp32_path.stat().st_size,
        "quantized_nodes": quantized,
        "not_quantized_nodes": not_quantized,
        "activation_type": activation,
        "weight_type": WEIGHT_TYPE,
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "calibration_method": CALIBRATION_METHOD,
        "calibration_samples": len(calibration_images),
        "preprocessed": preprocessed_path is not None,
    }


def int8_runtime(int8_path: str | Path, threads: int) -> NativeRuntime:
    """Open a quantized model in ONNX Runtime with the same session settings as float models."""
    path = Path(int8_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"quantized ONNX model not found: {path}; create it with quantize_onnx_static"
        )
    runtime = onnxruntime_runtime(path, threads)
    runtime.description = f"{runtime.description}, int8 QDQ model"
    return runtime


def weight_quantization_coverage(
    model: onnx.ModelProto,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split the compute nodes of a QDQ model into those with integer weights and those left in float.

    A float compute node counts as quantized when a weight input is the output of a DequantizeLinear
    node on an integer initializer. A MatMul without a constant operand counts as quantized when both
    operands come from DequantizeLinear. QLinearConv, QLinearMatMul, ConvInteger and MatMulInteger
    always count as quantized.
    """
    producers = {output: node for node in model.graph.node for output in node.output if output}
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}

    quantized: list[dict[str, Any]] = []
    not_quantized: list[dict[str, Any]] = []
    for index, node in enumerate(model.graph.node):
        if node.op_type not in _FLOAT_COMPUTE_OPS and node.op_type not in _INTEGER_COMPUTE_OPS:
            continue
        entry = {"node": node.name or f"{node.op_type}_{index}", "op_type": node.op_type}
        if node.op_type in _INTEGER_COMPUTE_OPS:
            quantized.append({**entry, "activations_quantized": True})
        elif _has_integer_weight(node, producers, initializers):
            activations = _is_dequantized(node.input[0], producers)
            quantized.append({**entry, "activations_quantized": activations})
        else:
            not_quantized.append(entry)
    return quantized, not_quantized


def _has_integer_weight(
    node: onnx.NodeProto, producers: dict[str, onnx.NodeProto], initializers: dict[str, onnx.TensorProto]
) -> bool:
    positions = [i for i in _FLOAT_COMPUTE_OPS[node.op_type] if i < len(node.input) and node.input[i]]
    for position in positions:
        producer = producers.get(node.input[position])
        if producer is None or producer.op_type != "DequantizeLinear":
            continue
        source = initializers.get(producer.input[0])
        if source is not None and source.data_type in _INTEGER_TYPES:
            return True

    # A product of two activations has no weight. It is quantized when both operands are.
    has_constant = any(node.input[i] in initializers for i in positions)
    if node.op_type == "MatMul" and not has_constant:
        return all(_is_dequantized(node.input[i], producers) for i in (0, 1))
    return False


def _is_dequantized(name: str, producers: dict[str, onnx.NodeProto]) -> bool:
    producer = producers.get(name)
    return producer is not None and producer.op_type == "DequantizeLinear"


def _check_paths(fp32_path: Path, int8_path: Path) -> None:
    if not fp32_path.is_file():
        raise FileNotFoundError(f"float ONNX model not found: {fp32_path}")
    if int8_path.resolve() == fp32_path.resolve():
        raise ValueError(f"int8_path {int8_path} is the float model itself; pass a different output path")


def _resolve_activation_type(activation_type: str | None) -> str:
    if activation_type is None:
        machine = platform.machine().lower()
        return "QUInt8" if machine in _X86_MACHINES else "QInt8"
    if activation_type not in ACTIVATION_TYPES:
        raise ValueError(f"activation_type {activation_type!r} is invalid; use one of {ACTIVATION_TYPES}")
    return activation_type


def _default_reduce_range() -> bool:
    """Return True on x86-64 CPUs without VNNI, as onnxruntime 1.32's quantize_static docstring advises."""
    if platform.machine().lower() not in _X86_MACHINES:
        return False
    flags = _cpu_flags()
    if flags is None:
        # NOTE: the CPU flags are read from /proc/cpuinfo, so only Linux can tell; elsewhere this
        # assumes no VNNI and reduces the weight range.
        log.info("CPU flags unknown on %s; quantizing weights with reduce_range=True", platform.system())
        return True
    return not (flags & _VNNI_FLAGS)


def _cpu_flags() -> set[str] | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return None


def _single_input(model: onnx.ModelProto, path: Path) -> tuple[str, tuple[int | str | None, ...]]:
    initializer_names = {tensor.name for tensor in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializer_names]
    if len(inputs) != 1:
        names = [value.name for value in inputs]
        raise ValueError(
            f"{path} has {len(inputs)} graph inputs {names}; calibration supports one image input"
        )

    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or None) for dim in dims)
    return inputs[0].name, shape


def _check_calibration_images(
    images: np.ndarray, input_name: str, input_shape: tuple[int | str | None, ...]
) -> None:
    if not isinstance(images, np.ndarray):
        raise TypeError(f"calibration_images must be a numpy array, got {type(images).__name__}")
    if images.dtype != np.float32:
        raise ValueError(
            f"calibration_images have dtype {images.dtype}; convert them with images.astype(np.float32)"
        )
    if images.ndim != 4:
        raise ValueError(f"calibration_images have shape {images.shape}; expected 4 dimensions (N, C, H, W)")
    if len(images) == 0:
        raise ValueError("calibration_images is empty; pass at least one image (N >= 1)")
    if not np.isfinite(images).all():
        raise ValueError("calibration_images contain NaN or infinite values; calibration needs finite inputs")

    if len(input_shape) != images.ndim:
        raise ValueError(f"model input {input_name!r} has shape {input_shape}; expected (N, C, H, W) images")
    for position, (actual, wanted) in enumerate(zip(images.shape, input_shape)):
        if position > 0 and isinstance(wanted, int) and wanted > 0 and actual != wanted:
            raise ValueError(
                f"calibration_images have shape {images.shape}, but model input {input_name!r} expects "
                f"{input_shape} (dimension {position} must be {wanted})"
            )


def _calibration_batch_size(input_shape: tuple[int | str | None, ...], samples: int, requested: int) -> int:
    if requested < 1:
        raise ValueError(f"calibration_batch_size must be at least 1, got {requested}")
    fixed = input_shape[0] if input_shape else None
    if not isinstance(fixed, int) or fixed <= 0:
        # MinMax keeps the running min and max of each tensor, so the batch size does not change it.
        return min(requested, samples)
    if samples % fixed:
        raise ValueError(
            f"the model has a fixed batch size of {fixed}, but {samples} calibration images do not divide "
            f"into batches of {fixed}; pass a multiple of {fixed} images"
        )
    return fixed


def _preprocess(fp32_path: Path, output_path: Path) -> Path | None:
    """Run ONNX Runtime's recommended pre-processing, or return None when it fails.

    The symbolic shape inference step is skipped: its module imports `onnxruntime.tools`, whose
    __init__ imports torch whenever torch is installed (onnxruntime 1.32), and `bench` must not import
    a framework. The graph optimization and ONNX shape inference steps still run, and ONNX shape
    inference resolves every shape of the convolutional networks exported here.
    """
    try:
        quant_pre_process(str(fp32_path), str(output_path), skip_symbolic_shape=True)
    # quant_pre_process runs ORT's optimizer and ONNX shape inference, which raise many error types.
    except Exception as error:  # noqa: BLE001
        log.warning(
            "quant_pre_process failed on %s (%s: %s); quantizing the original model",
            fp32_path,
            type(error).__name__,
            error,
        )
        return None
    return output_path
