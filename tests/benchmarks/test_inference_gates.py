"""Timing gates of LeNet-5 inference: both ONNX exports in ONNX Runtime, and each framework's runtimes.

The model is LeNet-5 with the canonical initial weights of seed 0; untrained weights time the same as
trained ones. The ONNX exports come from the framework servers (bench.gates.server) and run in this
process, which imports onnxruntime but never torch or tensorflow. The native runtimes run in the
servers, one request making enough calls to last ROUND_MIN_S.
"""

from __future__ import annotations

import pytest

from bench.gates.pytest_plugin import ROUND_MIN_S
from bench.gates.server import ServerError, gate_images
from bench.onnx_runtime import create_session

FRAMEWORKS = ("torch", "tf")
BATCH_SIZES = (1, 256)

# The native runtimes gated, by framework. A name that the backend does not offer, or offers as
# unavailable on this machine (torch-compile without a C++ compiler), is skipped with the reason.
NATIVE_RUNTIMES = {
    "torch": ("torch-eager", "torch-compile"),
    "tf": ("tf-eager", "tf-function", "tf-xla"),
}
# NOTE: only CPU runtimes are gated. Runtimes named *-cuda or *-gpu are left out even where a GPU exists.
GPU_SUFFIXES = ("-cuda", "-gpu")

NATIVE_CASES = [(framework, runtime) for framework, names in NATIVE_RUNTIMES.items() for runtime in names]


def batch_id(batch_size: int) -> str:
    return f"batch{batch_size}"


@pytest.mark.parametrize("batch_size", BATCH_SIZES, ids=batch_id)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_onnxruntime_gate(framework, batch_size, server_for, timing_gate):
    server = server_for(framework)
    session = create_session(server.onnx_path, timing_gate.threads)
    feed = {session.get_inputs()[0].name: gate_images(batch_size)}

    logits = session.run(None, feed)[0]
    assert logits.shape == (batch_size, 10)

    timing_gate.measure(
        f"onnxruntime/{framework}-export/{batch_id(batch_size)}",
        lambda: session.run(None, feed),
        batch_size=batch_size,
    )


@pytest.mark.parametrize("batch_size", BATCH_SIZES, ids=batch_id)
@pytest.mark.parametrize(("framework", "runtime"), NATIVE_CASES, ids=[runtime for _, runtime in NATIVE_CASES])
def test_native_gate(framework, runtime, batch_size, server_for, timing_gate):
    server = server_for(framework)
    offered = server.ready()["runtimes"]
    if runtime not in offered:
        pytest.skip(f"the {framework} backend has no runtime {runtime!r}; it has: {', '.join(offered)}")
    if offered[runtime]["unavailable"] is not None:
        pytest.skip(f"runtime {runtime} is unavailable on this machine: {offered[runtime]['unavailable']}")

    calls = server.calibrate(runtime, batch_size, ROUND_MIN_S) if timing_gate.enabled else 1
    timing_gate.measure(
        f"{runtime}/{batch_id(batch_size)}",
        lambda: server.run(runtime, batch_size, calls),
        batch_size=batch_size,
        calls_per_iteration=calls,
        cpu_clock=server.cpu_seconds,
    )


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_cpu_runtime_is_gated(framework, server_for):
    offered = server_for(framework).ready()["runtimes"]
    available = [
        name
        for name, runtime in offered.items()
        if runtime["unavailable"] is None and not name.endswith(GPU_SUFFIXES)
    ]
    ungated = sorted(set(available) - set(NATIVE_RUNTIMES[framework]))
    assert not ungated, f"the {framework} backend has runtimes without a timing gate: {ungated}; add them to NATIVE_RUNTIMES"


def test_server_reports_failed_request_and_goes_on(server_for):
    server = server_for("torch")

    with pytest.raises(ServerError, match="unknown runtime 'no-such-runtime'; this backend has: torch-eager"):
        server.run("no-such-runtime", 1, 1)

    assert server.run("torch-eager", 1, 2) > 0
