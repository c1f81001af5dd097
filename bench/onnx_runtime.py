"""ONNX Runtime as one more runtime of a cell, with the same thread settings as the frameworks."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.backend import NativeRuntime


def create_session(onnx_path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def onnxruntime_runtime(onnx_path: Path, threads: int) -> NativeRuntime:
    start = time.perf_counter()
    session = create_session(onnx_path, threads)
    session_seconds = time.perf_counter() - start
    input_name = session.get_inputs()[0].name

    return NativeRuntime(
        prepare=lambda images: {input_name: np.ascontiguousarray(images, dtype=np.float32)},
        run=lambda feed: session.run(None, feed)[0],
        to_numpy=lambda output: output,
        description=f"ONNX Runtime {ort.__version__} CPUExecutionProvider, all graph optimizations",
        setup_seconds=session_seconds,
    )
