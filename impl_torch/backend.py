"""TorchBackend: the bench.backend.Backend contract implemented with PyTorch (CPU, eager)."""

from __future__ import annotations

import copy
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

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
from impl_torch import adversarial, compiled, export, models, peft, train, weights


class TorchBackend:
    name = "torch"

    def configure(self, threads: int, seed: int) -> dict[str, Any]:
        # Inter-op threads can only be set before the first parallel work in the process.
        torch.set_num_interop_threads(1)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        # Deterministic cuBLAS needs a fixed workspace; it has no effect on the CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        return {
            "torch_intra_op_threads": torch.get_num_threads(),
            "torch_inter_op_threads": torch.get_num_interop_threads(),
            "torch_deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "torch_tf32": False,
            "torch_float32_matmul_precision": torch.get_float32_matmul_precision(),
            "torch_mkldnn_enabled": torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled,
            "torch_compile": dict(compiled.COMPILE_SETTINGS),
            "cuda_available": torch.cuda.is_available(),
            "device": "cpu",
        }

    def versions(self) -> dict[str, str]:
        import onnxscript
        import torchvision

        return {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "onnxscript": onnxscript.__version__,
        }

    def build(self, spec: ModelSpec) -> nn.Module:
        return models.build_model(spec)

    def set_weights(self, model: nn.Module, spec: ModelSpec, weights_: Weights) -> None:
        weights.set_weights(model, spec, weights_)

    def get_weights(self, model: nn.Module, spec: ModelSpec) -> Weights:
        return weights.get_weights(model, spec)

    def count_parameters(self, model: nn.Module) -> int:
        return sum(parameter.numel() for parameter in model.parameters())

    def set_trainable(self, model: nn.Module, spec: ModelSpec, names: set[str]) -> None:
        peft.set_trainable(model, spec, names)

    def count_trainable(self, model: nn.Module) -> int:
        return peft.count_trainable(model)

    def train(
        self,
        model: nn.Module,
        spec: ModelSpec,
        recipe: TrainRecipe,
        data: TrainData,
        on_epoch: Callable[[EpochReport], None],
        masks_for_epoch: MasksForEpoch | None = None,
        options: TrainOptions | None = None,
    ) -> TrainResult:
        return train.train_model(model, recipe, data, on_epoch, masks_for_epoch, options)

    def attack(self, model: nn.Module, images: np.ndarray, labels: np.ndarray, attack, input_range: InputRange, batch_size: int = 1000) -> np.ndarray:
        outputs = []
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
            target = torch.from_numpy(np.ascontiguousarray(labels[start : start + batch_size]))
            outputs.append(adversarial.perturb(model, batch, target, attack, input_range).numpy())
        return np.concatenate(outputs)

    def distillation_loss(self, student_logits: np.ndarray, teacher_logits: np.ndarray, labels: np.ndarray, distill) -> float:
        loss = train.distillation_loss(
            torch.from_numpy(student_logits),
            torch.from_numpy(teacher_logits),
            torch.from_numpy(labels),
            distill.temperature,
            distill.alpha,
        )
        return float(loss)

    def predict(self, model: nn.Module, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        model.eval()
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
                outputs.append(model(batch).numpy())
        return np.concatenate(outputs)

    def export_onnx(self, model: nn.Module, spec: ModelSpec, path: Path) -> None:
        export.export_onnx(model, spec, path)

    def quantize_native(
        self, model: nn.Module, spec: ModelSpec, calibration_images: np.ndarray, artifacts_dir: Path, threads: int
    ):
        """int8 through PT2E (torchao's X86InductorQuantizer), compiled by Inductor: "torch-int8-pt2e"."""
        from impl_torch.quantize import quantize_native

        return quantize_native(model, spec, calibration_images, artifacts_dir, threads)

    def runtimes(self, model: nn.Module, spec: ModelSpec) -> dict[str, NativeRuntime]:
        """Eager and compiled inference on the CPU, and the same on CUDA where a GPU is present."""
        model.eval()
        runtimes = {
            "torch-eager": _eager_runtime(model, "cpu"),
            compiled.RUNTIME_NAME: compiled.compiled_runtime(model, "cpu"),
        }
        no_gpu = None if torch.cuda.is_available() else "no CUDA device: torch.cuda.is_available() is False"
        for name, build in (("torch-eager-cuda", _eager_runtime), (f"{compiled.RUNTIME_NAME}-cuda", compiled.compiled_runtime)):
            if no_gpu is None:
                runtimes[name] = build(model, "cuda")
            else:
                runtimes[name] = unavailable_runtime(f"{name} on the GPU", no_gpu)
        return runtimes


def _eager_runtime(model: nn.Module, device: str) -> NativeRuntime:
    """Run the model in eager mode under torch.inference_mode on `device` (a copy for a GPU)."""
    module = model if device == "cpu" else copy.deepcopy(model).to(device)

    def run_eager(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            output = module(batch)
        if device != "cpu":
            torch.cuda.synchronize()
        return output

    return NativeRuntime(
        prepare=lambda images: torch.from_numpy(np.ascontiguousarray(images)).to(device),
        run=run_eager,
        to_numpy=lambda output: output.cpu().numpy(),
        description=f"PyTorch eager mode under torch.inference_mode, {device.upper()}, float32",
    )
