"""Native int8 post-training static quantization for torch: PT2E with the x86 Inductor quantizer.

The flow is torch.export (dynamic batch) -> torchao's prepare_pt2e with X86InductorQuantizer ->
calibration -> convert_pt2e -> torch.compile with Inductor freezing, which lowers the
quantize/dequantize patterns around conv and linear to oneDNN int8 kernels (qconv, qlinear).
The quantizer's default config uses uint8 activations (per tensor, affine, histogram observer) and int8
weights (per output channel, symmetric).

The PT2E APIs live in torchao (tested with torchao 0.18.0 and torch 2.14.1), not in torch.ao.
NOTE: importing torchao's x86_inductor_quantizer changes Inductor for the whole process: it registers the
int8 freezing patterns and sets torch._inductor.config.pre_grad_custom_pass to its quant_lift_up pass.

Compilation uses static shapes, one compiled copy per batch size, built when `prepare` first receives
a batch of that size. With a dynamic batch, torch 2.14's Inductor declares the output of a quantized
conv over a 1-channel input as contiguous while the oneDNN kernel writes channels-last, so the compiled
program fails its size/stride assertion on LeNet-5's first layer.
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from bench.backend import NativeInt8, check_calibration_images, native_int8
from bench.spec import ModelSpec
from impl_torch.compiled import Prepared

log = logging.getLogger(__name__)

RUNTIME_NAME = "torch-int8-pt2e"
CALIBRATION_BATCH_SIZE = 256

# Ops are matched by str() name because the quantized_decomposed namespace exists only after torchao
# is imported.
_CONV_AND_LINEAR = {"aten.conv2d.default", "aten.linear.default"}
_QUANTIZE_OPS = {
    "quantized_decomposed.quantize_per_tensor.default",
    "quantized_decomposed.quantize_per_channel.default",
}
_DEQUANTIZE_PER_CHANNEL = "quantized_decomposed.dequantize_per_channel.default"
_DEQUANTIZE_OPS = {"quantized_decomposed.dequantize_per_tensor.default", _DEQUANTIZE_PER_CHANNEL}


def quantize_native(
    model: nn.Module,
    spec: ModelSpec,
    calibration_images: np.ndarray,
    artifacts_dir: Path,
    threads: int,
) -> NativeInt8:
    """Quantize `model` to int8 with PT2E, calibrated on canonical NCHW float32 images.

    Writes `<spec.name>-int8-pt2e.pt2` (a torch.export archive of the converted program, loadable with
    torch.export.load) to `artifacts_dir`. `threads` sets torch's intra-op thread count, which is
    process-wide, before compiling, because Inductor's C++ kernels take their thread count at compile time.
    """
    images = check_calibration_images(spec, calibration_images)
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if torch.get_num_threads() != threads:
        log.info("setting torch intra-op threads from %d to %d", torch.get_num_threads(), threads)
        torch.set_num_threads(threads)

    started = time.perf_counter()
    converted = _quantize_pt2e(model, images)
    removed = _remove_unused_tensors(converted)
    log.debug("removed float tensors the int8 program does not use: %s", ", ".join(removed))

    artifacts_dir.mkdir(parents=True, exist_ok=True)
    path = artifacts_dir / f"{spec.name}-int8-pt2e.pt2"
    _save_program(converted, images, path)

    coverage = _layer_coverage(converted, spec)
    runner = _CompiledRunner(converted, coverage)
    # Compiling batch 1 here decides between the compiled and the uncompiled path, and puts the cost of
    # the first compile into setup_seconds.
    runner.prepare(images[:1])
    setup_seconds = time.perf_counter() - started

    description = _describe(runner, len(images))
    log.info("%s: %s (%.1f s)", RUNTIME_NAME, description, setup_seconds)
    return native_int8(
        RUNTIME_NAME, runner.prepare, runner.run, lambda output: output.numpy(), description, setup_seconds, path, coverage
    )


def _export_example(images: np.ndarray) -> tuple[torch.Tensor]:
    # torch.export specializes a dimension whose example size is 0 or 1, so the example batch has 2 images.
    return (torch.from_numpy(np.ascontiguousarray(np.resize(images, (2, *images.shape[1:])))),)


def _dynamic_batch() -> tuple[dict[int, Any]]:
    return ({0: torch.export.Dim("batch", min=1)},)


def _quantize_pt2e(model: nn.Module, images: np.ndarray) -> fx.GraphModule:
    """Export, annotate, calibrate and convert `model` into a q/dq GraphModule, leaving `model` unchanged."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    model.eval()
    exported = torch.export.export(model, _export_example(images), dynamic_shapes=_dynamic_batch())
    quantizer = X86InductorQuantizer()
    quantizer.set_global(get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(exported.module(), quantizer)

    with torch.no_grad():
        for start in range(0, len(images), CALIBRATION_BATCH_SIZE):
            prepared(torch.from_numpy(images[start : start + CALIBRATION_BATCH_SIZE]))
    return convert_pt2e(prepared)


def _remove_unused_tensors(module: fx.GraphModule) -> list[str]:
    """Delete parameters and buffers no graph node reads, such as the float weights convert_pt2e replaced."""
    used = {node.target for node in module.graph.nodes if node.op == "get_attr"}
    named = [*module.named_parameters(), *module.named_buffers()]
    removed = []
    for name, _ in named:
        if name in used:
            continue
        owner_path, _, attribute = name.rpartition(".")
        owner = module.get_submodule(owner_path) if owner_path else module
        delattr(owner, attribute)
        removed.append(name)
    return removed


def _save_program(converted: fx.GraphModule, images: np.ndarray, path: Path) -> None:
    program = torch.export.export(converted, _export_example(images), dynamic_shapes=_dynamic_batch())
    torch.export.save(program, path)
    log.debug("saved the int8 program to %s (%d bytes)", path, path.stat().st_size)


def _layer_name(node: fx.Node, layer_names: set[str]) -> str | None:
    for path, _ in node.meta.get("nn_module_stack", {}).values():
        if path in layer_names:
            return path
    return None


def _op(node: fx.Node) -> str:
    return str(node.target)


def _reads_int8(node: fx.Node) -> bool:
    inputs = [arg for arg in node.args if isinstance(arg, fx.Node)]
    if _op(node) in _CONV_AND_LINEAR:
        # Both the activation and the weight must come out of a dequantize.
        return len(inputs) >= 2 and all(_op(arg) in _DEQUANTIZE_OPS for arg in inputs[:2])
    return any(_op(arg) in _DEQUANTIZE_OPS for arg in inputs)


def _writes_int8(node: fx.Node) -> bool:
    return bool(node.users) and all(_op(user) in _QUANTIZE_OPS for user in node.users)


def _weight_granularity(weight: fx.Node) -> str:
    if _op(weight) == _DEQUANTIZE_PER_CHANNEL:
        return "int8 per channel"
    if _op(weight) in _DEQUANTIZE_OPS:
        return "int8 per tensor"
    return "float32"


def _layer_coverage(converted: fx.GraphModule, spec: ModelSpec) -> dict[str, Any]:
    """Classify each spec layer by the converted q/dq graph.

    A layer counts as int8 when every op it traced to reads dequantized int8 input or feeds a quantize
    op. Inductor turns those q/dq islands into int8 kernels with fused ReLU and requantization.
    """
    layer_names = {layer.name for layer in spec.layers}
    int8_ops: dict[str, list[bool]] = {}
    weight_granularity: dict[str, str] = {}
    for node in converted.graph.nodes:
        if node.op != "call_function" or _op(node) in _QUANTIZE_OPS | _DEQUANTIZE_OPS:
            continue
        name = _layer_name(node, layer_names)
        if name is None:
            continue
        int8_ops.setdefault(name, []).append(_reads_int8(node) or _writes_int8(node))
        if _op(node) in _CONV_AND_LINEAR and isinstance(node.args[1], fx.Node):
            weight_granularity[name] = _weight_granularity(node.args[1])

    ordered = [layer.name for layer in spec.layers]
    return {
        "int8_layers": [name for name in ordered if name in int8_ops and all(int8_ops[name])],
        "float_layers": [name for name in ordered if name in int8_ops and not all(int8_ops[name])],
        # Layers that trace to no op at inference, such as dropout.
        "no_op_layers": [name for name in ordered if name not in int8_ops],
        "weights": weight_granularity,
        "activations": "uint8 per tensor, affine",
        "compiled": None,  # set by _CompiledRunner after the batch-1 compile
        "kernels": "",
        "inductor_lowered_ops": {},
        "compile_seconds": {},
        "uncompiled_batch_sizes": [],
    }


def _inductor_lowering_counts() -> dict[str, int]:
    # NOTE: torch._dynamo.utils.counters is internal to torch (2.14). It counts pattern rewrites per process.
    from torch._dynamo.utils import counters

    return {key: value for key, value in counters["inductor"].items() if key.endswith("_lower_count")}


@dataclass
class _CompiledRunner:
    """Compiles the converted module once per batch size and runs it under torch.inference_mode."""

    converted: fx.GraphModule
    coverage: dict[str, Any]
    compiled: dict[tuple[int, bool], Callable[[torch.Tensor], torch.Tensor]] = field(default_factory=dict)
    compile_error: str | None = None

    def prepare(self, images: np.ndarray) -> Prepared:
        batch = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        # Dynamo guards on whether the input is an inference tensor, so that is part of the cache key.
        key = (batch.shape[0], batch.is_inference())
        if key not in self.compiled:
            self.compiled[key] = self._compile_for(batch)
        return Prepared(batch=batch, forward=self.compiled[key])

    def run(self, prepared: Prepared) -> torch.Tensor:
        with torch.inference_mode():
            return prepared.forward(prepared.batch)

    def _compile_for(self, batch: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        size = batch.shape[0]
        if self.compile_error is not None:
            self.coverage["uncompiled_batch_sizes"].append(size)
            return self.converted
        import torch._inductor.config as inductor_config

        # Each copy has its own generated forward code, so dynamo keeps one cache per batch size, and its
        # recompile limit, which counts per code object, does not cap the number of batch sizes.
        compiled = torch.compile(copy.deepcopy(self.converted), dynamic=False)
        counts_before = _inductor_lowering_counts()
        started = time.perf_counter()
        try:
            # Freezing must be on while dynamo traces, so that weights become constants and the weight
            # prepack passes run. The first call below traces and compiles.
            with inductor_config.patch(freezing=True), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="To copy construct from a tensor")
                with torch.inference_mode():
                    compiled(batch)
        except Exception as error:  # noqa: BLE001 - compile errors of every type (C++ compiler, lowering, dynamo) fall back
            return self._fall_back(size, error)
        seconds = time.perf_counter() - started
        self.coverage["compile_seconds"][str(size)] = round(seconds, 3)
        if self.coverage["compiled"] is None:
            self._record_lowering(counts_before)
        log.debug("compiled %s for batch size %d in %.1f s", RUNTIME_NAME, size, seconds)
        return compiled

    def _fall_back(self, size: int, error: Exception) -> Callable[[torch.Tensor], torch.Tensor]:
        log.warning(
            "%s: torch.compile failed for batch size %d (%s: %s). Running the converted q/dq module "
            "uncompiled, which simulates int8 in float32 and is slower than the float model",
            RUNTIME_NAME,
            size,
            type(error).__name__,
            error,
        )
        self.coverage["uncompiled_batch_sizes"].append(size)
        if self.coverage["compiled"] is None:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            self.compile_error = f"{type(error).__name__}: {first_line[:200]}"
            self.coverage["compiled"] = False
            self.coverage["kernels"] = (
                "reference quantize/dequantize ops around float32 conv and linear (torch.compile failed)"
            )
        return self.converted

    def _record_lowering(self, counts_before: dict[str, int]) -> None:
        counts_after = _inductor_lowering_counts()
        lowered = {
            key.removesuffix("_lower_count"): counts_after[key] - counts_before.get(key, 0)
            for key in counts_after
            if counts_after[key] > counts_before.get(key, 0)
        }
        self.coverage["compiled"] = True
        self.coverage["inductor_lowered_ops"] = lowered
        if lowered:
            self.coverage["kernels"] = "oneDNN int8 kernels from Inductor freezing passes"
        else:
            self.coverage["kernels"] = "Inductor code without int8 kernels: no q/dq pattern was lowered"
            log.warning(
                "%s: Inductor lowered no quantized pattern, so the compiled model computes in float", RUNTIME_NAME
            )


def _describe(runner: _CompiledRunner, calibration_count: int) -> str:
    quantization = (
        f"PT2E int8 static quantization (torchao X86InductorQuantizer: uint8 activations per tensor, "
        f"int8 weights per channel, histogram calibration on {calibration_count} images)"
    )
    if runner.compile_error is None:
        return (
            f"{quantization}, torch.compile with Inductor freezing to oneDNN int8 kernels, "
            "one static-shape graph per batch size, CPU"
        )
    return (
        f"{quantization}, converted q/dq module run uncompiled because torch.compile failed "
        f"({runner.compile_error}); int8 is simulated in float32, CPU"
    )
