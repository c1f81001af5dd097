"""ONNX Runtime as one more runtime of a cell, with the same thread settings as the frameworks."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.backend import NativeRuntime, unavailable_runtime

CUDA_PROVIDER = "CUDAExecutionProvider"


def create_session(onnx_path: Path, threads: int, provider: str = "CPUExecutionProvider") -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(onnx_path), options, providers=[provider])


def onnxruntime_cuda_runtime(onnx_path: Path, threads: int) -> NativeRuntime:
    """ONNX Runtime with the CUDA execution provider, or a skipped runtime where this build has none."""
    available = ort.get_available_providers()
    if CUDA_PROVIDER not in available:
        return unavailable_runtime(
            "ONNX Runtime CUDAExecutionProvider",
            f"this onnxruntime build has no {CUDA_PROVIDER} (providers: {', '.join(available)}); "
            "install onnxruntime-gpu on a machine with a CUDA device",
        )
    return onnxruntime_runtime(onnx_path, threads, CUDA_PROVIDER)


def onnxruntime_runtime(onnx_path: Path, threads: int, provider: str = "CPUExecutionProvider") -> NativeRuntime:
    start = time.perf_counter()
    session = create_session(onnx_path, threads, provider)
    session_seconds = time.perf_counter() - start
    input_name = session.get_inputs()[0].name

    return NativeRuntime(
        prepare=lambda images: {input_name: np.ascontiguousarray(images, dtype=np.float32)},
        run=lambda feed: session.run(None, feed)[0],
        to_numpy=lambda output: output,
        description=f"ONNX Runtime {ort.__version__} {provider}, all graph optimizations",
        setup_seconds=session_seconds,
    )
