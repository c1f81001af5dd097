"""pytest plugin of the timing gates: the `timing_gate` fixture and a summary of every comparison.

tests/benchmarks/conftest.py imports these names; another test session loads the plugin with
`-p bench.gates.pytest_plugin`. A test hands the fixture a callable:

    def test_something(timing_gate):
        timing_gate.measure("onnxruntime/torch-export/batch1", run_one_inference, batch_size=1)

With timing enabled, `measure` calibrates the iterations of a round, times ROUNDS rounds with
pytest-benchmark and compares the median per call with the baseline of this machine's hardware
fingerprint. Rounds are timed in CPU seconds of the process that runs the inference, not in wall-clock
seconds: on a shared machine, time spent waiting while other processes run would otherwise double a
median (measured on the 2-core reference machine), and a regression in the inference code costs CPU
time all the same. A slowdown that only waits (a sleep, a lock) is not seen.

The test fails when the median is slower than the baseline by more than RUN_TO_RUN_THRESHOLD. It is
skipped, naming the command that records a baseline, when there is none. Under `--benchmark-disable`
the callable runs once, as a smoke check, and nothing is compared. With TWINBENCH_GATES_RECORD=1 the
medians are written as the new baselines instead.
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import pytest

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
    format_seconds,
    load_baselines,
    mismatched_settings,
    record_baseline,
)
from bench.measure import (
    CV_THRESHOLD,
    RUN_TO_RUN_THRESHOLD,
    calibrate_loops,
    environment,
)
from bench.measure.stats import robust_cv

# Each round lasts at least ROUND_MIN_S, so that timer resolution and the pipe round trip of a
# framework server request stay below 1% of a round. 50 rounds after 5 warmup rounds take about 1.1 s
# per gate and give a median whose run-to-run spread the README reports.
ROUND_MIN_S = 0.02
ROUNDS = 50
WARMUP_ROUNDS = 5
# A compared median above the threshold is timed again, up to this many attempts in all.
MAX_ATTEMPTS = 3

# The intra-op thread count of every timed runtime when THREADS_ENV is not set.
DEFAULT_THREADS = 1

_OUTCOMES = pytest.StashKey[list]()


class GateNoiseWarning(UserWarning):
    """A baseline was recorded while its timings were spread, so later comparisons may mislead."""


@dataclass(frozen=True)
class GateSettings:
    """Settings shared by every gate of one test session: the machine, the baseline file and the mode."""

    machine: Machine
    baseline_dir: Path
    record: bool
    threshold: float
    threads: int
    command: str
    git_commit: str | None
    git_dirty: bool | None

    @property
    def baseline_file(self) -> Path:
        return baseline_path(self.baseline_dir, self.machine.fingerprint)

    def record_hint(self) -> str:
        return (
            f"record one with `{RECORD_ENV}=1 python -m pytest tests/benchmarks --benchmark-enable` "
            f"on this machine and commit {self.baseline_file.name}"
        )


def gate_threads() -> int:
    """Return the thread count from THREADS_ENV, or DEFAULT_THREADS; raise ValueError on a bad value."""
    text = os.environ.get(THREADS_ENV)
    if text is None or text == "":
        return DEFAULT_THREADS
    try:
        threads = int(text)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(f"{THREADS_ENV} must be an integer >= 1, got {text!r}")
    return threads


def _record_requested() -> bool:
    text = os.environ.get(RECORD_ENV, "")
    if text not in ("", "0", "1"):
        raise ValueError(f"{RECORD_ENV} must be 1 (record baselines) or 0 or unset (compare), got {text!r}")
    return text == "1"


@pytest.fixture(scope="session")
def gate_settings(pytestconfig: pytest.Config) -> GateSettings:
    env = environment()
    record = _record_requested()
    threads = gate_threads()
    prefix = [f"{RECORD_ENV}=1"] if record else []
    if os.environ.get(THREADS_ENV):
        prefix.append(f"{THREADS_ENV}={threads}")
    return GateSettings(
        machine=Machine.from_environment(env),
        baseline_dir=Path(os.environ.get(BASELINE_DIR_ENV) or DEFAULT_BASELINE_DIR),
        record=record,
        threshold=RUN_TO_RUN_THRESHOLD,
        threads=threads,
        command=" ".join([*prefix, "python -m pytest", *pytestconfig.invocation_params.args]),
        git_commit=env.get("git_commit"),
        git_dirty=env.get("git_dirty"),
    )


class TimingGate:
    """Times one callable with the test's `benchmark` fixture and compares it with its baseline."""

    def __init__(self, benchmark: Any, settings: GateSettings, outcomes: list[str]):
        self.benchmark = benchmark
        self.settings = settings
        self._outcomes = outcomes

    @property
    def enabled(self) -> bool:
        """False under --benchmark-disable: callables run once and nothing is compared."""
        return bool(self.benchmark.enabled)

    @property
    def threads(self) -> int:
        return self.settings.threads

    def measure(
        self,
        name: str,
        fn: Callable[[], Any],
        *,
        batch_size: int,
        calls_per_iteration: int = 1,
        cpu_clock: Callable[[], float] = time.process_time,
    ) -> Comparison | None:
        """Time `fn` in CPU seconds and compare, record or (timing disabled) only call it once.

        `cpu_clock` returns the CPU seconds used so far by the process that runs the inference: this
        process by default, a framework server's for its runtimes. `calls_per_iteration` is the number
        of inference calls one call of `fn` makes (a server request makes many); medians are divided
        by it. Returns the comparison, or None when nothing was compared. Fails the test on a regression
        and skips it when there is no comparable baseline.
        """
        if not self.enabled:
            self.benchmark.pedantic(fn)
            return None

        # First attempt: pytest-benchmark's rounds, which its table and JSON report.
        iterations = calibrate_loops(fn, ROUND_MIN_S, cpu_clock)
        # NOTE: pytest-benchmark has no public per-test timer. Its runner reads the fixture's _timer
        # (pytest-benchmark 4 and 5), so setting it makes the rounds CPU seconds.
        self.benchmark._timer = cpu_clock
        self.benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS, iterations=iterations)
        stats = self.benchmark.stats.stats
        first = Measurement(
            name=name,
            median_s=stats.median / calls_per_iteration,
            rounds=stats.rounds,
            iterations=iterations,
            calls_per_iteration=calls_per_iteration,
            batch_size=batch_size,
            threads=self.settings.threads,
            robust_cv=robust_cv(stats.data),
        )

        def next_attempt_s() -> float:
            values_s = _time_rounds(fn, iterations, cpu_clock)
            return statistics.median(values_s) / calls_per_iteration

        if self.settings.record:
            return self._record(first, next_attempt_s)
        return self._compare(first, next_attempt_s)

    def _record(self, first: Measurement, next_attempt_s: Callable[[], float]) -> None:
        # A baseline is the middle one of MAX_ATTEMPTS attempts' medians. The lowest would keep a lucky
        # attempt, against which every later run looks slower.
        medians_s = [first.median_s] + [next_attempt_s() for _ in range(MAX_ATTEMPTS - 1)]
        measurement = replace(first, median_s=statistics.median(medians_s), attempt_medians_s=tuple(medians_s))
        self._note_measurement(measurement)
        metadata = {
            "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": self.settings.command,
            "git_commit": self.settings.git_commit,
            "git_dirty": self.settings.git_dirty,
        }
        record_baseline(self.settings.baseline_file, self.settings.machine, measurement, metadata)
        line = (
            f"recorded: gate {measurement.name}: median {format_seconds(measurement.median_s)} per call "
            f"(median of {len(medians_s)} attempts) into {self.settings.baseline_file}"
        )
        problem = self._noise_problem(measurement)
        if problem is not None:
            line += f". NOISY: {problem}"
            warnings.warn(f"gate {measurement.name}: {problem}", GateNoiseWarning, stacklevel=2)
        self._outcomes.append(line)

    def _noise_problem(self, measurement: Measurement) -> str | None:
        """Return why a recorded baseline is suspect (spread rounds or attempts, a sign of other load), or None."""
        medians_s = measurement.attempt_medians_s
        spread = (max(medians_s) - min(medians_s)) / measurement.median_s
        reasons = []
        if measurement.robust_cv is not None and measurement.robust_cv > CV_THRESHOLD:
            reasons.append(f"robust coefficient of variation of the rounds {measurement.robust_cv:.3f} > {CV_THRESHOLD:.2f}")
        if spread > self.settings.threshold / 2:
            reasons.append(f"attempt medians spread by {spread:.0%} > half the threshold")
        if not reasons:
            return None
        return f"{' and '.join(reasons)}; record again when no other work runs on this machine"

    def _compare(self, first: Measurement, next_attempt_s: Callable[[], float]) -> Comparison:
        settings = self.settings
        baseline = load_baselines(settings.baseline_file).get(first.name)
        if baseline is None:
            self._skip(
                f"no timing baseline for gate {first.name} on this machine (hardware fingerprint "
                f"{settings.machine.fingerprint}: {settings.machine.inputs.get('cpu_model')}, "
                f"{settings.machine.inputs.get('physical_cores')} physical cores) in {settings.baseline_file}"
            )
        mismatches = mismatched_settings(first, baseline)
        if mismatches:
            self._skip(
                f"baseline of gate {first.name} in {settings.baseline_file} was timed with other settings "
                f"({'; '.join(mismatches)})"
            )

        # A median above the threshold is timed again, up to MAX_ATTEMPTS in all, and the lowest counts.
        # A burst of load from other processes then passes, while a real slowdown repeats in every attempt.
        measurement = replace(first, attempt_medians_s=(first.median_s,))
        comparison = compare(measurement, baseline, settings.threshold)
        while comparison.regressed and len(measurement.attempt_medians_s) < MAX_ATTEMPTS:
            medians_s = (*measurement.attempt_medians_s, next_attempt_s())
            measurement = replace(first, median_s=min(medians_s), attempt_medians_s=medians_s)
            comparison = compare(measurement, baseline, settings.threshold)
        self._note_measurement(measurement)

        self.benchmark.extra_info.update(
            {"baseline_median_s": comparison.baseline_median_s, "baseline_ratio": comparison.ratio}
        )
        self._outcomes.append(comparison.describe())
        if comparison.regressed:
            pytest.fail(comparison.describe(), pytrace=False)
        return comparison

    def _note_measurement(self, measurement: Measurement) -> None:
        self.benchmark.extra_info.update(
            {
                "gate": measurement.name,
                "clock": measurement.clock,
                "median_s_per_call": measurement.median_s,
                "attempt_medians_s_per_call": list(measurement.attempt_medians_s),
                "calls_per_iteration": measurement.calls_per_iteration,
                "batch_size": measurement.batch_size,
                "threads": measurement.threads,
                "hardware_fingerprint": self.settings.machine.fingerprint,
            }
        )

    def _skip(self, reason: str) -> NoReturn:
        message = f"{reason}: nothing compared; {self.settings.record_hint()}"
        self._outcomes.append(f"skipped: {message}")
        pytest.skip(message)


def _time_rounds(fn: Callable[[], Any], iterations: int, clock: Callable[[], float]) -> list[float]:
    """Time WARMUP_ROUNDS discarded and ROUNDS kept rounds of `iterations` calls like pytest-benchmark.

    Returns the kept rounds' clock seconds per call of `fn`.
    """
    values_s = []
    for round_index in range(WARMUP_ROUNDS + ROUNDS):
        start_s = clock()
        for _ in range(iterations):
            fn()
        if round_index >= WARMUP_ROUNDS:
            values_s.append((clock() - start_s) / iterations)
    return values_s


@pytest.fixture
def timing_gate(request: pytest.FixtureRequest, benchmark: Any, gate_settings: GateSettings) -> TimingGate:
    outcomes = request.config.stash.setdefault(_OUTCOMES, [])
    return TimingGate(benchmark, gate_settings, outcomes)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    outcomes = config.stash.get(_OUTCOMES, [])
    if not outcomes:
        return
    terminalreporter.section("timing gates")
    terminalreporter.write_line(
        f"threshold: {RUN_TO_RUN_THRESHOLD * 100:.0f}% slower than the baseline median "
        "(bench.measure.RUN_TO_RUN_THRESHOLD)"
    )
    for line in outcomes:
        terminalreporter.write_line(line)
