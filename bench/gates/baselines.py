"""Baseline files of the timing gates: one JSON file per hardware fingerprint, one entry per gate.

A file `BASELINE_DIR/<hardware fingerprint>.json` contains

    {"hardware_fingerprint": ..., "fingerprint_inputs": {cpu_model, core counts, timing packages},
     "benchmarks": {GATE_NAME: {"median_s": ..., "threads": ..., "recorded_at": ..., "command": ...}}}

`median_s` is the median of the rounds' CPU seconds per call. A run is compared only with the file of its
own fingerprint, so timings from another CPU or another onnxruntime, torch or tensorflow release are
never compared.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.measure.environment import TIMING_PACKAGES
from bench.store import write_json_atomic

DEFAULT_BASELINE_DIR = Path(__file__).resolve().parents[2] / "tests" / "benchmarks" / "baselines"

# Environment variables read by the pytest plugin. RECORD_ENV=1 writes this run's medians as the
# baselines instead of comparing; BASELINE_DIR_ENV replaces DEFAULT_BASELINE_DIR; THREADS_ENV sets the
# intra-op thread count of every timed runtime.
RECORD_ENV = "TWINBENCH_GATES_RECORD"
BASELINE_DIR_ENV = "TWINBENCH_GATES_BASELINE_DIR"
THREADS_ENV = "TWINBENCH_GATES_THREADS"

# Settings that must be equal in a measurement and its baseline for the medians to be comparable.
COMPARABLE_SETTINGS = ("clock", "batch_size", "threads")

# The clock of every gate measurement: CPU seconds of the process that runs the inference, all threads.
CPU_CLOCK = "process_cpu_time"


@dataclass(frozen=True)
class Machine:
    """A hardware fingerprint and the values it was computed from (bench.measure.hardware_fingerprint)."""

    fingerprint: str
    inputs: dict[str, Any]

    @classmethod
    def from_environment(cls, environment: dict[str, Any]) -> Machine:
        """Build from the dict of bench.measure.environment()."""
        packages = environment.get("packages") or {}
        inputs = {
            "cpu_model": environment.get("cpu_model"),
            "logical_cores": environment.get("logical_cores"),
            "physical_cores": environment.get("physical_cores"),
            "timing_packages": {name: packages.get(name) for name in TIMING_PACKAGES},
        }
        return cls(environment["hardware_fingerprint"], inputs)


def this_machine() -> Machine:
    from bench.measure import environment

    return Machine.from_environment(environment())


@dataclass(frozen=True)
class Measurement:
    """One gate's timing in this run: the median seconds per call and the settings behind it."""

    name: str
    median_s: float
    rounds: int
    iterations: int
    calls_per_iteration: int
    batch_size: int
    threads: int
    # Robust coefficient of variation (1.4826 MAD / median) of the rounds' values, None for < 2 rounds.
    robust_cv: float | None = None
    clock: str = CPU_CLOCK
    # The median of each attempt, in the order timed. median_s is the lowest of them in a compared run and
    # their median in a recorded baseline (see bench.gates.pytest_plugin).
    attempt_medians_s: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.median_s > 0:
            raise ValueError(f"median_s of gate {self.name!r} must be > 0 seconds, got {self.median_s}")
        for name in ("rounds", "iterations", "calls_per_iteration", "batch_size", "threads"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"{name} of gate {self.name!r} must be >= 1, got {value}")


@dataclass(frozen=True)
class Comparison:
    """This run's median next to the baseline's, and whether it is slower by more than `threshold`."""

    name: str
    median_s: float
    baseline_median_s: float
    threshold: float
    baseline: dict[str, Any] = field(default_factory=dict)
    attempt_medians_s: tuple[float, ...] = ()

    @property
    def ratio(self) -> float:
        """This run's median divided by the baseline's: 1.25 is 25% slower, 0.8 is 20% faster."""
        return self.median_s / self.baseline_median_s

    @property
    def regressed(self) -> bool:
        return self.ratio > 1.0 + self.threshold

    def describe(self) -> str:
        """Return one summary line. For a regression it also names when and how the baseline was recorded."""
        change = (self.ratio - 1.0) * 100.0
        direction = "slower" if change >= 0 else "faster"
        attempts = ""
        if len(self.attempt_medians_s) > 1:
            ratios = ", ".join(f"{median_s / self.baseline_median_s:.3f}" for median_s in self.attempt_medians_s)
            attempts = f" (lowest of {len(self.attempt_medians_s)} attempts at {ratios} x the baseline)"
        text = (
            f"gate {self.name}: median {format_seconds(self.median_s)} per call{attempts} is {abs(change):.1f}% "
            f"{direction} than the baseline {format_seconds(self.baseline_median_s)}"
        )
        if not self.regressed:
            return f"ok: {text}"
        return (
            f"REGRESSION: {text}, more than the threshold of {self.threshold * 100:.0f}%. Baseline recorded "
            f"{self.baseline.get('recorded_at', 'at an unknown time')} by `{self.baseline.get('command', '?')}`."
        )


def baseline_path(directory: Path, fingerprint: str) -> Path:
    return Path(directory) / f"{fingerprint}.json"


def load_baselines(path: Path) -> dict[str, dict[str, Any]]:
    """Return the gate entries of a baseline file by gate name, or {} when the file does not exist.

    Raises ValueError naming the file when it is not valid JSON or not a baseline file.
    """
    path = Path(path)
    if not path.exists():
        return {}
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"baseline file {path} is not valid JSON ({error}); delete it and record again") from error
    benchmarks = content.get("benchmarks") if isinstance(content, dict) else None
    if not isinstance(benchmarks, dict):
        raise ValueError(  # noqa: TRY004 - the file's content is invalid, not an argument's type
            f"baseline file {path} has no 'benchmarks' object; delete it and record again"
        )
    return benchmarks


def record_baseline(path: Path, machine: Machine, measurement: Measurement, metadata: dict[str, Any]) -> None:
    """Write `measurement` as the baseline of its gate into `path`, keeping the other gates' entries.

    `metadata` (recorded_at, command, git commit) is stored with the entry. Raises ValueError when
    the file belongs to another hardware fingerprint.
    """
    path = Path(path)
    benchmarks = load_baselines(path)
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8")).get("hardware_fingerprint")
        if stored != machine.fingerprint:
            raise ValueError(
                f"baseline file {path} belongs to hardware fingerprint {stored!r}, not to this machine's "
                f"{machine.fingerprint!r}; record into {baseline_path(path.parent, machine.fingerprint)}"
            )

    entry = asdict(measurement)
    del entry["name"]
    benchmarks[measurement.name] = {**entry, **metadata}
    write_json_atomic(
        path,
        {
            "hardware_fingerprint": machine.fingerprint,
            "fingerprint_inputs": machine.inputs,
            "benchmarks": dict(sorted(benchmarks.items())),
        },
    )


def mismatched_settings(measurement: Measurement, baseline: dict[str, Any]) -> list[str]:
    """List the COMPARABLE_SETTINGS whose value differs between `measurement` and its baseline entry."""
    return [
        f"{name} {baseline.get(name)!r} in the baseline, {getattr(measurement, name)!r} now"
        for name in COMPARABLE_SETTINGS
        if baseline.get(name) != getattr(measurement, name)
    ]


def compare(measurement: Measurement, baseline: dict[str, Any], threshold: float) -> Comparison:
    """Compare a measurement with its baseline entry. `threshold` is the allowed slowdown fraction."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be a fraction in (0, 1), got {threshold}")
    baseline_median_s = baseline.get("median_s")
    if not isinstance(baseline_median_s, (int, float)) or not baseline_median_s > 0:
        raise ValueError(
            f"baseline of gate {measurement.name!r} has no positive median_s (got {baseline_median_s!r}); "
            "record it again"
        )
    return Comparison(
        measurement.name,
        measurement.median_s,
        float(baseline_median_s),
        threshold,
        baseline,
        measurement.attempt_medians_s,
    )


def format_seconds(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f} ms"
    return f"{seconds * 1e6:.2f} us"
