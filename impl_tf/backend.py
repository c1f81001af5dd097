"""TFBackend: the bench.backend.Backend contract implemented with TensorFlow 2 and Keras 3 (CPU)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from bench.backend import (
    EpochReport,
    InputRange,
    MasksForEpoch,
    NativeRuntime,
    TrainData,
    TrainOptions,
    TrainResult,
    unavailable_runtime,
)
from bench.spec import ModelSpec, TrainRecipe, Weights
from impl_tf import adversarial, export, models, peft, train, weights


def to_nhwc(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1))


class TFBackend:
    name = "tf"

    def configure(self, threads: int, seed: int) -> dict[str, Any]:
        # Thread pools must be sized before TensorFlow's runtime starts.
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.experimental.enable_op_determinism()
        # TensorFloat-32 only changes GPU matmuls and convolutions; off so that a GPU row stays float32.
        tf.config.experimental.enable_tensor_float_32_execution(False)
        keras.utils.set_random_seed(seed)
        return {
            "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "tf_op_determinism": True,
            "tf_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on for x86 CPU)"),
            "tf32": tf.config.experimental.tensor_float_32_execution_enabled(),
            "tf_xla": {"jit_compile": True, "runtime": "tf-xla", "auto_jit": os.environ.get("TF_XLA_FLAGS")},
            "gpus_visible": len(tf.config.list_physical_devices("GPU")),
            "device": "cpu",
        }

    def versions(self) -> dict[str, str]:
        return {"tensorflow": tf.__version__, "keras": keras.__version__, "tf2onnx": _tf2onnx_version()}

    def build(self, spec: ModelSpec) -> keras.Model:
        return models.build_model(spec)

    def set_weights(self, model: keras.Model, spec: ModelSpec, weights_: Weights) -> None:
        weights.set_weights(model, spec, weights_)

    def get_weights(self, model: keras.Model, spec: ModelSpec) -> Weights:
        return weights.get_weights(model, spec)

    def count_parameters(self, model: keras.Model) -> int:
        return int(model.count_params())

    def set_trainable(self, model: keras.Model, spec: ModelSpec, names: set[str]) -> None:
        peft.set_trainable(model, spec, names)

    def count_trainable(self, model: keras.Model) -> int:
        return peft.count_trainable(model)

    def train(
        self,
        model: keras.Model,
        spec: ModelSpec,
        recipe: TrainRecipe,
        data: TrainData,
        on_epoch: Callable[[EpochReport], None],
        masks_for_epoch: MasksForEpoch | None = None,
        options: TrainOptions | None = None,
    ) -> TrainResult:
        return train.train_model(model, spec, recipe, data, on_epoch, masks_for_epoch, options)

    def attack(
        self, model: keras.Model, images: np.ndarray, labels: np.ndarray, attack, input_range: InputRange, batch_size: int = 1000
    ) -> np.ndarray:
        height, width, channels = model.input_shape[1:]
        signature = [tf.TensorSpec((None, height, width, channels), tf.float32), tf.TensorSpec([None], tf.int64)]
        perturb = tf.function(lambda x, y: adversarial.perturb(model, x, y, attack, input_range), input_signature=signature)
        outputs = []
        for start in range(0, len(images), batch_size):
            batch = tf.constant(to_nhwc(images[start : start + batch_size]))
            target = tf.constant(labels[start : start + batch_size].astype(np.int64))
            outputs.append(perturb(batch, target).numpy().transpose(0, 3, 1, 2))
        return np.ascontiguousarray(np.concatenate(outputs))

    def distillation_loss(self, student_logits: np.ndarray, teacher_logits: np.ndarray, labels: np.ndarray, distill) -> float:
        loss = train.distillation_loss(
            tf.constant(student_logits), tf.constant(teacher_logits), tf.constant(labels), distill.temperature, distill.alpha
        )
        return float(loss)

    def predict(self, model: keras.Model, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        infer = _compiled_inference(model)
        outputs = [
            infer(tf.constant(to_nhwc(images[start : start + batch_size]))).numpy()
            for start in range(0, len(images), batch_size)
        ]
        return np.concatenate(outputs)

    def export_onnx(self, model: keras.Model, spec: ModelSpec, path: Path) -> None:
        export.export_onnx(model, spec, path)

    def quantize_native(
        self, model: keras.Model, spec: ModelSpec, calibration_images: np.ndarray, artifacts_dir: Path, threads: int
    ):
        """Full-integer TensorFlow Lite conversion, run in the LiteRT interpreter: "tflite-int8"."""
        from impl_tf.quantize import quantize_native

        return quantize_native(model, spec, calibration_images, artifacts_dir, threads)

    def runtimes(self, model: keras.Model, spec: ModelSpec) -> dict[str, NativeRuntime]:
        """Return eager, tf.function and XLA inference on the CPU, and the GPU variants where TensorFlow lists a GPU."""
        runtimes = {}
        gpus = tf.config.list_physical_devices("GPU")
        no_gpu = None if gpus else "no GPU visible to TensorFlow (tensorflow-cpu, or no CUDA device)"
        for device in ("cpu", "gpu"):
            suffix = "" if device == "cpu" else "-gpu"
            if device == "gpu" and no_gpu is not None:
                for name in ("tf-function", "tf-xla"):
                    runtimes[name + suffix] = unavailable_runtime(f"{name} on the GPU", no_gpu)
                continue
            placement = "/CPU:0" if device == "cpu" else "/GPU:0"
            if device == "cpu":
                runtimes["tf-eager"] = NativeRuntime(
                    prepare=_prepare_on(placement),
                    run=lambda batch: model(batch, training=False),
                    to_numpy=lambda output: output.numpy(),
                    description="Keras 3 model called eagerly, CPU, float32",
                )
            runtimes["tf-function" + suffix] = NativeRuntime(
                prepare=_prepare_on(placement),
                run=_on_device(_compiled_inference(model), placement),
                to_numpy=lambda output: output.numpy(),
                description=f"Keras 3 model inside tf.function (graph mode, no XLA), {device.upper()}, float32",
            )
            runtimes["tf-xla" + suffix] = _xla_runtime(model, placement, device)
        return runtimes


def _prepare_on(placement: str) -> Callable[[np.ndarray], tf.Tensor]:
    def prepare(images: np.ndarray) -> tf.Tensor:
        with tf.device(placement):
            return tf.identity(tf.constant(to_nhwc(images)))

    return prepare


def _on_device(function: Callable[[tf.Tensor], tf.Tensor], placement: str) -> Callable[[tf.Tensor], tf.Tensor]:
    if placement == "/CPU:0":
        return function

    def run(batch: tf.Tensor) -> tf.Tensor:
        with tf.device(placement):
            return function(batch)

    return run


def _xla_runtime(model: keras.Model, placement: str, device: str) -> NativeRuntime:
    """tf.function with jit_compile=True: XLA compiles one executable per batch size, in `prepare`."""
    xla = tf.function(lambda batch: model(batch, training=False), jit_compile=True)
    run = _on_device(xla, placement)
    compile_seconds: dict[int, float] = {}
    prepare_tensor = _prepare_on(placement)

    def prepare(images: np.ndarray) -> tf.Tensor:
        batch = prepare_tensor(images)
        size = int(batch.shape[0])
        if size not in compile_seconds:
            started = time.perf_counter()
            run(batch).numpy()  # traces and compiles for this shape
            compile_seconds[size] = time.perf_counter() - started
        return batch

    return NativeRuntime(
        prepare=prepare,
        run=run,
        to_numpy=lambda output: output.numpy(),
        description=f"Keras 3 model inside tf.function(jit_compile=True), XLA, one executable per batch size, {device.upper()}, float32",
        compile_seconds=compile_seconds,
    )


def _compiled_inference(model: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
    height, width, channels = model.input_shape[1:]
    signature = [tf.TensorSpec((None, height, width, channels), tf.float32)]
    return tf.function(lambda batch: model(batch, training=False), input_signature=signature)


def _tf2onnx_version() -> str:
    import tf2onnx

    return tf2onnx.__version__
