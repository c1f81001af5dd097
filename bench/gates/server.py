"""A framework's inference in a child process, driven over pipes, for the timing gates.

The pytest process never imports torch or tensorflow, so each framework's gates talk to one child:

    python -m bench.gates.server FRAMEWORK OUT_DIR THREADS

At start-up the child configures the backend (thread counts, seed 0), builds LeNet-5 from the canonical
initial weights of seed 0, and exports it to OUT_DIR/FRAMEWORK.onnx. Then it reads one JSON request
per line from stdin and writes one JSON reply per line:

    {"op": "calibrate", "runtime": NAME, "batch_size": N, "min_seconds": S} -> {"status": "ok", "calls": C, ...}
    {"op": "run", "runtime": NAME, "batch_size": N, "calls": C}              -> {"status": "ok", "seconds": ...}
    {"op": "cpu_seconds"}                                                     -> {"status": "ok", "cpu_seconds": ...}

"cpu_seconds" is the child's time.process_time(): the CPU seconds of all its threads so far, which the
gates use as their clock.
A "run" request makes C inference calls back to back, so the pipe round trip (tens of microseconds)
is small next to a request that lasts `min_seconds`. A failed request gets {"status": "failed",
"error": {...}} and the child goes on. The protocol uses a copy of the original stdout. Libraries that
print to stdout (exporters do) print to stderr, which goes to OUT_DIR/FRAMEWORK-server.log.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

log = logging.getLogger(__name__)

MODEL = "lenet5"
SEED = 0
# The largest batch a request may ask for. Every batch is a prefix of one array of this many images.
MAX_BATCH_SIZE = 256
# Calibration stops doubling the calls of one request here.
MAX_CALLS = 2**16

STARTUP_TIMEOUT_S = 300.0
# A request may compile (torch.compile, XLA) before it runs, which takes seconds on a small CPU.
REQUEST_TIMEOUT_S = 300.0


def gate_images(batch_size: int) -> np.ndarray:
    """Return the timed input batch: standard-normal float32 images in the canonical NCHW layout."""
    from bench.spec import get_model

    shape = get_model(MODEL).input_shape
    return np.random.default_rng([SEED, 3]).standard_normal((batch_size, *shape)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# Child side


@dataclass
class _ServerState:
    backend: Any
    runtimes: dict[str, Any]
    images: np.ndarray
    prepared: dict[tuple[str, int], Any] = field(default_factory=dict)


def _start(framework: str, out_dir: Path, threads: int) -> tuple[_ServerState, dict[str, Any]]:
    """Configure the backend, build and export the model; return the state and the ready message."""
    from bench.backend import load_backend
    from bench.spec import get_model, initial_weights

    spec = get_model(MODEL)
    backend = load_backend(framework)
    settings = backend.configure(threads=threads, seed=SEED)
    model = backend.build(spec)
    backend.set_weights(model, spec, initial_weights(spec, SEED))

    onnx_path = out_dir / f"{framework}.onnx"
    started = time.perf_counter()
    backend.export_onnx(model, spec, onnx_path)
    export_seconds = time.perf_counter() - started

    runtimes = backend.runtimes(model, spec)
    images = gate_images(MAX_BATCH_SIZE)
    ready = {
        "status": "ready",
        "framework": framework,
        "onnx_path": str(onnx_path),
        "export_seconds": export_seconds,
        "settings": settings,
        "versions": backend.versions(),
        "runtimes": {name: {"description": r.description, "unavailable": r.unavailable} for name, r in runtimes.items()},
    }
    return _ServerState(backend, runtimes, images), ready


def _prepared_input(state: _ServerState, runtime_name: str, batch_size: int) -> tuple[Any, Any]:
    """Return (runtime, prepared batch), preparing (and compiling, where the runtime does) on first use."""
    runtime = state.runtimes.get(runtime_name)
    if runtime is None:
        raise KeyError(f"unknown runtime {runtime_name!r}; this backend has: {', '.join(state.runtimes)}")
    if runtime.unavailable is not None:
        raise RuntimeError(f"runtime {runtime_name!r} is unavailable: {runtime.unavailable}")
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be in [1, {MAX_BATCH_SIZE}], got {batch_size}")

    key = (runtime_name, batch_size)
    if key not in state.prepared:
        batch = runtime.prepare(state.images[:batch_size])
        runtime.run(batch)  # the first call, kept out of every timed request
        state.prepared[key] = batch
    return runtime, state.prepared[key]


def _run_calls(runtime: Any, batch: Any, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        runtime.run(batch)
    return time.perf_counter() - started


def _handle(state: _ServerState, request: dict[str, Any]) -> dict[str, Any]:
    op = request.get("op")
    if op == "calibrate":
        started = time.perf_counter()
        runtime, batch = _prepared_input(state, request["runtime"], int(request["batch_size"]))
        prepare_seconds = time.perf_counter() - started
        calls = 1
        while True:
            seconds = _run_calls(runtime, batch, calls)
            if seconds >= float(request["min_seconds"]) or calls >= MAX_CALLS:
                break
            calls = min(calls * 2, MAX_CALLS)
        return {"status": "ok", "calls": calls, "seconds": seconds, "prepare_seconds": prepare_seconds}
    if op == "run":
        calls = int(request["calls"])
        if calls < 1:
            raise ValueError(f"calls must be >= 1, got {calls}")
        runtime, batch = _prepared_input(state, request["runtime"], int(request["batch_size"]))
        return {"status": "ok", "seconds": _run_calls(runtime, batch, calls)}
    if op == "cpu_seconds":
        return {"status": "ok", "cpu_seconds": time.process_time()}
    raise ValueError(f"unknown op {op!r}; valid ops: calibrate, run, cpu_seconds")


def _send(channel: IO[str], message: dict[str, Any]) -> None:
    channel.write(json.dumps(message, default=str) + "\n")
    channel.flush()


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m bench.gates.server FRAMEWORK OUT_DIR THREADS", file=sys.stderr)
        return 2
    framework, out_dir, threads = argv[0], Path(argv[1]), int(argv[2])

    # Keep the protocol on a private copy of stdout and send everything else printed to stderr.
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)

    from bench.worker import error_info, quiet_library_loggers

    quiet_library_loggers()
    try:
        state, ready = _start(framework, out_dir, threads)
    except Exception as error:  # any start-up failure goes to the parent with its traceback
        log.exception("%s inference server failed to start", framework)
        _send(channel, {"status": "failed", "error": error_info(error)})
        return 1
    _send(channel, ready)
    log.info("%s inference server ready, %d threads", framework, threads)

    for line in sys.stdin:
        try:
            reply = _handle(state, json.loads(line))
        except Exception as error:  # noqa: BLE001 - a failed request is reported, and the server goes on
            log.error("request %s failed: %s: %s", line.strip(), type(error).__name__, error)
            reply = {"status": "failed", "error": error_info(error)}
        _send(channel, reply)
    return 0


# ---------------------------------------------------------------------------------------------------
# Parent side


class ServerError(RuntimeError):
    """The inference server failed to start, failed a request, died or timed out."""


class InferenceServer:
    """The parent's handle on one framework's server process; the parent imports no framework."""

    def __init__(self, framework: str, out_dir: Path, threads: int, env: dict[str, str] | None = None):
        self.framework = framework
        self.out_dir = Path(out_dir)
        self.threads = threads
        self.log_path = self.out_dir / f"{framework}-server.log"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("w", encoding="utf-8")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.gates.server", framework, str(self.out_dir), str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            env=env,
            text=True,
            encoding="utf-8",
        )
        self._replies: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read_replies, daemon=True)
        self._reader.start()
        self._ready: dict[str, Any] | None = None

    def ready(self, timeout_s: float = STARTUP_TIMEOUT_S) -> dict[str, Any]:
        """Wait for start-up and return the ready message (onnx_path, settings, runtimes)."""
        if self._ready is None:
            message = self._receive(timeout_s, "start-up")
            if message.get("status") != "ready":
                raise ServerError(self._failure_text("failed to start", message))
            self._ready = message
        return self._ready

    @property
    def onnx_path(self) -> Path:
        return Path(self.ready()["onnx_path"])

    def calibrate(self, runtime: str, batch_size: int, min_seconds: float) -> int:
        """Return the number of calls that makes one request last at least `min_seconds`."""
        reply = self._request({"op": "calibrate", "runtime": runtime, "batch_size": batch_size, "min_seconds": min_seconds})
        return int(reply["calls"])

    def run(self, runtime: str, batch_size: int, calls: int) -> float:
        """Make `calls` inference calls in the child; return the seconds the child measured for them."""
        reply = self._request({"op": "run", "runtime": runtime, "batch_size": batch_size, "calls": calls})
        return float(reply["seconds"])

    def cpu_seconds(self) -> float:
        """Return the CPU seconds the server process has used so far, all threads together."""
        return float(self._request({"op": "cpu_seconds"})["cpu_seconds"])

    def close(self) -> None:
        """Close stdin, which ends the server's loop, and kill it if it has not exited after 10 s."""
        if self._process.stdin is not None and not self._process.stdin.closed:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._log_file.close()

    def _request(self, request: dict[str, Any]) -> dict[str, Any]:
        self.ready()
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
        except BrokenPipeError as error:
            raise ServerError(self._failure_text(f"exited before request {request}", None)) from error
        reply = self._receive(REQUEST_TIMEOUT_S, f"request {request}")
        if reply.get("status") != "ok":
            raise ServerError(self._failure_text(f"failed request {request}", reply))
        return reply

    def _read_replies(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._replies.put(line)
        self._replies.put(None)

    def _receive(self, timeout_s: float, waiting_for: str) -> dict[str, Any]:
        try:
            line = self._replies.get(timeout=timeout_s)
        except queue.Empty:
            self._process.kill()
            raise ServerError(self._failure_text(f"timed out after {timeout_s:.0f} s waiting for {waiting_for}", None)) from None
        if line is None:
            self._process.wait()
            raise ServerError(
                self._failure_text(f"exited with code {self._process.returncode} during {waiting_for}", None)
            )
        return json.loads(line)

    def _failure_text(self, failure: str, message: dict[str, Any] | None) -> str:
        parts = [f"{self.framework} inference server {failure}"]
        error = (message or {}).get("error")
        if error:
            parts.append(f"{error.get('type')}: {error.get('message')}\n{error.get('traceback', '')}")
        parts.append(f"last lines of {self.log_path}:\n{_tail(self.log_path)}")
        return "\n".join(parts)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "".join(path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return ""


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
