"""Native int8 post-training static quantization for TensorFlow: TensorFlow Lite full-integer conversion.

The Keras model is exported as a SavedModel (inference call, dynamic batch) and converted by
tf.lite.TFLiteConverter with optimizations DEFAULT, a representative dataset of calibration images and
target_spec.supported_ops = [TFLITE_BUILTINS_INT8], so conversion fails instead of leaving an op in float.
Weights and activations are int8; the converter quantizes conv weights per output channel.

The model's input and output stay float32 because inference_input_type and inference_output_type keep
their float32 default. The graph starts with a QUANTIZE op and ends with a DEQUANTIZE op, so this runtime
takes the same float images and returns the same float logits as every other runtime.

Inference uses the LiteRT interpreter from the ai_edge_litert package when it is installed, and
tf.lite.Interpreter otherwise, which TensorFlow 2.21 still ships but marks as deprecated. Both apply the
XNNPACK delegate by default.
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from bench.backend import NativeInt8, check_calibration_images, native_int8
from bench.spec import ModelSpec

log = logging.getLogger(__name__)

RUNTIME_NAME = "tflite-int8"
CALIBRATION_BATCH_SIZE = 32

# TFLite ops that convert between float32 and int8 at the model's edges. They belong to no layer.
_BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}


def quantize_native(
    model: keras.Model,
    spec: ModelSpec,
    calibration_images: np.ndarray,
    artifacts_dir: Path,
    threads: int,
) -> NativeInt8:
    """Convert `model` to a full-integer TFLite model calibrated on canonical NCHW float32 images.

    Writes `<spec.name>-int8.tflite` to `artifacts_dir`. The interpreters run with `threads` threads.
    """
    images = check_calibration_images(spec, calibration_images)
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")

    started = time.perf_counter()
    flatbuffer = _convert(model, spec, _to_nhwc(images))
    setup_seconds = time.perf_counter() - started

    artifacts_dir.mkdir(parents=True, exist_ok=True)
    path = artifacts_dir / f"{spec.name}-int8.tflite"
    path.write_bytes(flatbuffer)
    log.debug("saved the int8 model to %s (%d bytes)", path, len(flatbuffer))

    interpreter_class, interpreter_source = _interpreter_class()
    runner = _InterpreterRunner(flatbuffer, threads, interpreter_class)
    coverage = _layer_coverage(runner.interpreter_for(1), spec)
    coverage["interpreter"] = interpreter_source

    description = (
        f"TensorFlow Lite full-integer int8 post-training quantization (int8 weights and activations, "
        f"calibrated on {len(images)} images, float32 input and output), {interpreter_source} with "
        f"{threads} thread(s) and the default XNNPACK delegate, one interpreter per batch size, CPU"
    )
    log.info("%s: %s (%.1f s)", RUNTIME_NAME, description, setup_seconds)
    return native_int8(
        RUNTIME_NAME, runner.prepare, runner.run, lambda output: output, description, setup_seconds, path, coverage
    )


def _to_nhwc(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1), dtype=np.float32)


def _convert(model: keras.Model, spec: ModelSpec, calibration_nhwc: np.ndarray) -> bytes:
    """Return the full-integer TFLite flatbuffer for `model`."""
    channels, height, width = spec.input_shape
    signature = [tf.TensorSpec((None, height, width, channels), tf.float32, name="input")]

    def representative_dataset() -> Iterator[list[np.ndarray]]:
        for start in range(0, len(calibration_nhwc), CALIBRATION_BATCH_SIZE):
            yield [calibration_nhwc[start : start + CALIBRATION_BATCH_SIZE]]

    # A concrete function over the live Keras model keeps its weights as resource variables, which the
    # calibrator cannot read, so the model goes through a SavedModel, as from_keras_model does internally.
    with tempfile.TemporaryDirectory(prefix="twinbench-tflite-") as saved_model_dir:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", lambda batch: model(batch, training=False), signature)
        archive.write_out(saved_model_dir, verbose=False)

        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        with warnings.catch_warnings():
            # The converter warns that the float32 input has no quantization statistics, which is by design.
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
            return converter.convert()


def _interpreter_class() -> tuple[type, str]:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        log.info("ai_edge_litert is not installed, so the deprecated tf.lite.Interpreter runs the model")
        return tf.lite.Interpreter, f"tf.lite.Interpreter (TensorFlow {tf.__version__})"
    return Interpreter, "LiteRT Interpreter (ai_edge_litert)"


@dataclass
class _Prepared:
    """An NHWC batch and the interpreter allocated for its batch size."""

    batch: np.ndarray
    interpreter: Any
    input_index: int
    output_index: int


@dataclass
class _InterpreterRunner:
    """One allocated interpreter per batch size, so `run` never resizes a tensor."""

    flatbuffer: bytes
    threads: int
    interpreter_class: type
    interpreters: dict[int, Any] = field(default_factory=dict)

    def interpreter_for(self, batch_size: int) -> Any:
        if batch_size not in self.interpreters:
            with warnings.catch_warnings():
                # tf.lite.Interpreter warns at every construction that it is deprecated, which
                # _interpreter_class logs once.
                warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
                interpreter = self.interpreter_class(model_content=self.flatbuffer, num_threads=self.threads)
            input_index = interpreter.get_input_details()[0]["index"]
            interpreter.resize_tensor_input(input_index, [batch_size, *self._input_shape(interpreter)])
            interpreter.allocate_tensors()
            self.interpreters[batch_size] = interpreter
        return self.interpreters[batch_size]

    def prepare(self, images: np.ndarray) -> _Prepared:
        interpreter = self.interpreter_for(len(images))
        return _Prepared(
            batch=_to_nhwc(images),
            interpreter=interpreter,
            input_index=interpreter.get_input_details()[0]["index"],
            output_index=interpreter.get_output_details()[0]["index"],
        )

    @staticmethod
    def run(prepared: _Prepared) -> np.ndarray:
        interpreter = prepared.interpreter
        interpreter.set_tensor(prepared.input_index, prepared.batch)
        interpreter.invoke()
        return interpreter.get_tensor(prepared.output_index)  # a copy, so the next invoke cannot change it

    @staticmethod
    def _input_shape(interpreter: Any) -> list[int]:
        return [int(size) for size in interpreter.get_input_details()[0]["shape_signature"][1:]]


def _layers_in_name(tensor_name: str, layer_names: set[str]) -> set[str]:
    """Find the spec layers in a TFLite tensor name, such as "lenet5_1/relu1_1/Relu;lenet5_1/conv1_1/convolution".

    A fused op's tensor name joins several scopes with ";". Keras 3 name scopes add a "_<n>" suffix to
    layer names, and a padded Conv2D has an extra "<name>_padding" layer (impl_tf.models), which belongs to
    the conv layer.
    """
    found = set()
    for segment in re.split(r"[;/]", tensor_name):
        unsuffixed = re.sub(r"_\d+$", "", segment)
        for candidate in (segment, unsuffixed, unsuffixed.removesuffix("_padding")):
            if candidate in layer_names:
                found.add(candidate)
                break
    return found


def _layer_coverage(interpreter: Any, spec: ModelSpec) -> dict[str, Any]:
    """Classify each spec layer by the dtype its TFLite ops compute in.

    An op belongs to the layers named in its output tensors and its constant (weight) inputs. Ops that
    return int32 compute shapes (the dynamic batch of Flatten) and are listed but not classified.
    """
    # NOTE: _get_ops_details is private in TensorFlow 2.21 and in ai_edge_litert 2.3. It lists the
    # flatbuffer's ops with operand and result dtypes, followed by one entry per delegate partition.
    ops = interpreter._get_ops_details()
    tensors = {detail["index"]: detail for detail in interpreter.get_tensor_details()}
    graph_inputs = {detail["index"] for detail in interpreter.get_input_details()}
    produced = {int(index) for op in ops if op["op_name"] != "DELEGATE" for index in op["outputs"]}

    layer_names = {layer.name for layer in spec.layers}
    int8_ops: dict[str, list[bool]] = {}
    op_rows = []
    for op in ops:
        name = op["op_name"]
        if name == "DELEGATE":
            continue
        # Tensors that no op produces and that are not the model input are constants, such as weights.
        constant_inputs = [
            int(index)
            for index in op["inputs"]
            if index >= 0 and index not in produced and index not in graph_inputs
        ]
        layers: set[str] = set()
        for index in [*map(int, op["outputs"]), *constant_inputs]:
            layers |= _layers_in_name(tensors[index]["name"], layer_names)
        input_dtype = np.dtype(op["operand_types"][0]).name if op["operand_types"] else "none"
        result_dtype = np.dtype(op["result_types"][0]).name if op["result_types"] else "none"
        op_rows.append({"op": name, "input_dtype": input_dtype, "layers": sorted(layers)})
        if name in _BOUNDARY_OPS or result_dtype == "int32":
            continue
        for layer in layers:
            int8_ops.setdefault(layer, []).append(input_dtype == "int8")

    ordered = [layer.name for layer in spec.layers]
    return {
        "int8_layers": [name for name in ordered if name in int8_ops and all(int8_ops[name])],
        "float_layers": [name for name in ordered if name in int8_ops and not all(int8_ops[name])],
        # Layers that convert to no op at inference, such as dropout.
        "no_op_layers": [name for name in ordered if name not in int8_ops],
        "weights": _weight_granularity(ops, tensors, produced, graph_inputs, layer_names),
        "activations": "int8 per tensor, affine",
        "ops": op_rows,
        "delegate_partitions": sum(1 for op in ops if op["op_name"] == "DELEGATE"),
    }


def _weight_granularity(
    ops: list[dict[str, Any]],
    tensors: dict[int, dict[str, Any]],
    produced: set[int],
    graph_inputs: set[int],
    layer_names: set[str],
) -> dict[str, str]:
    granularity = {}
    for op in ops:
        if op["op_name"] not in {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}:
            continue
        weight_index = int(op["inputs"][1])
        if weight_index in produced or weight_index in graph_inputs:
            continue
        weight = tensors[weight_index]
        scales = weight["quantization_parameters"]["scales"]
        dtype = np.dtype(weight["dtype"]).name
        kind = "per channel" if len(scales) > 1 else "per tensor"
        for layer in _layers_in_name(weight["name"], layer_names):
            granularity[layer] = f"{dtype} {kind}"
    return granularity
