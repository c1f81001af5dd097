"""Regression gates: timed inference compared with a stored baseline of the same machine.

Terms used by the gates:

- A *gate* times one callable (an ONNX Runtime session, a framework's native runtime) and compares the
  median CPU seconds per call with the *baseline* recorded on a machine with the same hardware
  fingerprint.
- A *round* is `iterations` back-to-back calls of the callable, timed together by pytest-benchmark.
  Its value is the round's CPU seconds divided by the inference calls it made.
- The gate fails when this run's median per call is slower than the baseline by more than
  bench.measure.RUN_TO_RUN_THRESHOLD.

Modules: `baselines` reads, writes and compares baseline files. `server` runs a framework's inference
in a child process, because the pytest process never imports torch or tensorflow. `pytest_plugin`
provides the `timing_gate` fixture, and `noise` measures the run-to-run spread that the threshold must
stay above.
"""

from bench.gates.baselines import (
    BASELINE_DIR_ENV,
    DEFAULT_BASELINE_DIR,
    RECORD_ENV,
    THREADS_ENV,
    Comparison,
    Machine,
    Measurement,
    baseline_path,
    compare,
    load_baselines,
    record_baseline,
    this_machine,
)

__all__ = [
    "BASELINE_DIR_ENV",
    "DEFAULT_BASELINE_DIR",
    "RECORD_ENV",
    "THREADS_ENV",
    "Comparison",
    "Machine",
    "Measurement",
    "baseline_path",
    "compare",
    "load_baselines",
    "record_baseline",
    "this_machine",
]
