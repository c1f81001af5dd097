"""torch.compile for inference: Inductor with freezing, one static-shape graph per batch size.

`compiled_runtime` returns the `torch-compile` runtime. Compilation happens in `prepare`, once per
batch size, and its seconds go into `NativeRuntime.compile_seconds`, so steady-state latency never
contains a compile. A compile failure propagates: the cell records the runtime as failed with the
error, rather than timing an uncompiled fallback under the compiled runtime's name.
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from bench.backend import NativeRuntime

log = logging.getLogger(__name__)

RUNTIME_NAME = "torch-compile"
# Settings of the compiled runtime, for the record's fairness settings and the report.
COMPILE_SETTINGS = {"backend": "inductor", "mode": "default", "freezing": True, "dynamic": False, "fullgraph": True}


def missing_compiler() -> str | None:
    """Return why Inductor cannot build CPU kernels here (no C++ compiler), or None when it can."""
    from torch._inductor import cpp_builder

    try:
        cpp_builder.get_cpp_compiler()
    except Exception as error:  # noqa: BLE001 - any failure to find a compiler means the same thing
        return f"Inductor found no C++ compiler ({type(error).__name__}: {error}); install g++ to measure torch.compile"
    return None


@dataclass
class Prepared:
    """A batch tensor and the callable compiled for its batch size."""

    batch: torch.Tensor
    forward: Callable[[torch.Tensor], torch.Tensor]


@dataclass
class _CompiledRunner:
    """Compiler of one module copy per batch size, run under torch.inference_mode."""

    module: nn.Module
    device: str
    compile_seconds: dict[int, float]
    compiled: dict[tuple[int, bool], Callable[[torch.Tensor], torch.Tensor]] = field(default_factory=dict)

    def prepare(self, images: np.ndarray) -> Prepared:
        batch = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(self.device)
        # Dynamo guards on whether the input is an inference tensor, so that is part of the cache key.
        key = (batch.shape[0], batch.is_inference())
        if key not in self.compiled:
            self.compiled[key] = self._compile_for(batch)
        return Prepared(batch=batch, forward=self.compiled[key])

    def run(self, prepared: Prepared) -> torch.Tensor:
        with torch.inference_mode():
            output = prepared.forward(prepared.batch)
        if self.device != "cpu":
            torch.cuda.synchronize()
        return output

    def _compile_for(self, batch: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        import torch._inductor.config as inductor_config

        # A copy per batch size: each has its own generated code and its own dynamo cache, so the
        # recompile limit (counted per code object) never caps the number of batch sizes.
        compiled = torch.compile(copy.deepcopy(self.module), dynamic=False, fullgraph=True)
        started = time.perf_counter()
        # Freezing must be on while dynamo traces, so that weights become constants. The first call
        # traces and compiles.
        with inductor_config.patch(freezing=True), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="To copy construct from a tensor")
            self.run(Prepared(batch=batch, forward=compiled))
        seconds = time.perf_counter() - started
        self.compile_seconds[int(batch.shape[0])] = seconds
        log.debug("%s: compiled for batch size %d in %.1f s", RUNTIME_NAME, batch.shape[0], seconds)
        return compiled


def compiled_runtime(model: nn.Module, device: str = "cpu") -> NativeRuntime:
    """Wrap the model in torch.compile (Inductor, freezing, static shapes) on `device`."""
    reason = missing_compiler() if device == "cpu" else None
    module = copy.deepcopy(model).eval().to(device)
    compile_seconds: dict[int, float] = {}
    runner = _CompiledRunner(module, device, compile_seconds)
    return NativeRuntime(
        prepare=runner.prepare,
        run=runner.run,
        to_numpy=lambda output: output.cpu().numpy(),
        description=(
            f"torch.compile (Inductor, freezing, static shapes, one graph per batch size), {device.upper()}, float32"
        ),
        compile_seconds=compile_seconds,
        unavailable=reason,
    )
