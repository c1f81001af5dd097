"""Backends without a deep-learning framework, to test the harness on its own.

`LinearBackend` is a real (if tiny) backend: a softmax-regression classifier trained with numpy SGD and
exported to ONNX with onnx.helper, so the runner, measurement and report run end to end. The others
fail in one specific way each.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from bench.backend import NativeRuntime, TrainResult


class LinearBackend:
    name = "fake-linear"

    def configure(self, threads, seed):
        return {"fake_threads": threads}

    def versions(self):
        return {"numpy": np.__version__}

    def build(self, spec):
        features = int(np.prod(spec.input_shape))
        return {"spec": spec, "w": np.zeros((spec.num_classes, features), np.float32), "b": np.zeros(spec.num_classes, np.float32)}

    def set_weights(self, model, spec, weights):
        model["canonical"] = dict(weights)

    def get_weights(self, model, spec):
        return model["canonical"]

    def count_parameters(self, model):
        return model["spec"].count_parameters()

    def train(self, model, spec, recipe, data, on_epoch, masks_for_epoch=None):
        from bench.backend import EpochReport

        result = TrainResult(samples_per_epoch=len(data.labels))
        flat = data.images.reshape(len(data.images), -1)
        for epoch in range(recipe.epochs):
            start = time.perf_counter()
            losses = []
            for batch in data.batch_order(epoch):
                x, y = flat[batch], data.labels[batch]
                logits = x @ model["w"].T + model["b"]
                logits -= logits.max(axis=1, keepdims=True)
                probabilities = np.exp(logits)
                probabilities /= probabilities.sum(axis=1, keepdims=True)
                losses.append(-np.log(probabilities[np.arange(len(y)), y] + 1e-12).mean())
                probabilities[np.arange(len(y)), y] -= 1
                model["w"] -= 0.01 * (probabilities.T @ x) / len(y)
                model["b"] -= 0.01 * probabilities.mean(axis=0)
            seconds = time.perf_counter() - start
            result.epoch_seconds.append(seconds)
            result.epoch_losses.append(float(np.mean(losses)))
            on_epoch(EpochReport(epoch, recipe.epochs, float(np.mean(losses)), seconds, len(data.labels)))
        return result

    def predict(self, model, images, batch_size=1024):
        return images.reshape(len(images), -1) @ model["w"].T + model["b"]

    def export_onnx(self, model, spec, path: Path):
        features = int(np.prod(spec.input_shape))
        graph = helper.make_graph(
            [
                helper.make_node("Flatten", ["input"], ["flat"], axis=1),
                helper.make_node("Gemm", ["flat", "w", "b"], ["logits"], transB=1),
            ],
            "linear",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *spec.input_shape])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", spec.num_classes])],
            initializer=[
                helper.make_tensor("w", TensorProto.FLOAT, (spec.num_classes, features), model["w"].ravel()),
                helper.make_tensor("b", TensorProto.FLOAT, (spec.num_classes,), model["b"]),
            ],
        )
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))

    def runtimes(self, model, spec):
        return {
            "numpy": NativeRuntime(
                prepare=lambda images: images,
                run=lambda images: self.predict(model, images),
                to_numpy=lambda output: output,
                description="numpy matrix product",
            )
        }


class RaisingBackend(LinearBackend):
    name = "fake-raising"

    def train(self, model, spec, recipe, data, on_epoch, masks_for_epoch=None):
        raise RuntimeError("fake training diverged")


class MissingBackend(LinearBackend):
    name = "fake-missing"

    def train(self, model, spec, recipe, data, on_epoch, masks_for_epoch=None):
        raise NotImplementedError("fake-missing backend: step 'train' is not implemented")


class DyingBackend(LinearBackend):
    name = "fake-dying"

    def train(self, model, spec, recipe, data, on_epoch, masks_for_epoch=None):
        os.kill(os.getpid(), signal.SIGKILL)


class HangingBackend(LinearBackend):
    name = "fake-hanging"

    def train(self, model, spec, recipe, data, on_epoch, masks_for_epoch=None):
        time.sleep(3600)


class SegfaultBackend(LinearBackend):
    name = "fake-segfault"

    def train(self, model, spec, recipe, data, on_epoch, masks_for_epoch=None):
        import ctypes

        ctypes.string_at(0)  # reads address 0: SIGSEGV in native code


class MemoryHogBackend(LinearBackend):
    """Touches 1 GiB, then sleeps: a cell that a memory limit below that must stop."""

    name = "fake-memory-hog"

    def train(self, model, spec, recipe, data, on_epoch, masks_for_epoch=None):
        hog = np.ones(2**30, dtype=np.uint8)
        time.sleep(60)
        del hog
        return super().train(model, spec, recipe, data, on_epoch, masks_for_epoch)


# The sleepy backend blocks in training once: when this file does not exist yet, it creates it and sleeps,
# so a test can interrupt a run in the middle of a cell and resume it afterwards.
SLEEP_MARKER_ENV = "TWINBENCH_TEST_SLEEP_MARKER"


class SleepyBackend(LinearBackend):
    name = "fake-sleepy"

    def train(self, model, spec, recipe, data, on_epoch, masks_for_epoch=None):
        marker = Path(os.environ[SLEEP_MARKER_ENV])
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            time.sleep(600)
        return super().train(model, spec, recipe, data, on_epoch, masks_for_epoch)


def probe_network(host: str) -> dict:
    """Raise the audit event a socket connection to `host` raises; no socket is opened."""
    import sys

    sys.audit("socket.connect", None, (host, 80))
    return {"reached": host}


class SleepyExportBackend(LinearBackend):
    """Like SleepyBackend, but blocks once in the ONNX export, after training (and its cache entry) finished."""

    name = "fake-sleepy-export"

    def export_onnx(self, model, spec, path: Path):
        marker = Path(os.environ[SLEEP_MARKER_ENV])
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            time.sleep(600)
        return super().export_onnx(model, spec, path)
