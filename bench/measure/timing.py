"""Time a Python callable: latency and throughput with calibrated loops, warmup and validity checks.

Terms used throughout this package:

- A *call* is one invocation of the function under test.
- A *value* is the mean duration of one call over `loops` back-to-back calls. `loops` is calibrated so
  that the `loops` calls of one value last at least `TimingSpec.min_value_s`, which keeps clock
  resolution and clock-read overhead small next to the measured time.
- *Warmup* values are measured exactly like values and then discarded.
- The *first call* is timed on its own before anything else, because it contains one-time costs such as
  the first inference of a freshly loaded session.

`time_function` runs the phases in this order: first call, calibration, warmup, values. It collects
values until both `min_values` values and `min_duration_s` seconds of timed calls are reached. The
whole measurement, from the first call on, stops at `TimingSpec.max_duration_s`. That deadline is checked
between values, so a run can overshoot it by one value.

A `TimingResult` keeps every value, reports outliers by Tukey's fences without removing them, and lists
why it is invalid, if it is (see `TimingResult.invalid_reasons`). Percentiles follow MLPerf LoadGen:
sorted values indexed at floor(n * p), without interpolation (see bench.measure.stats).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.measure.stats import (
    P90_MIN_VALUES,
    P99_MIN_VALUES,
    mlperf_percentile,
    robust_cv,
    tukey_outlier_count,
)
from bench.spec.profile import TimingSpec

log = logging.getLogger(__name__)

# A result whose robust coefficient of variation (1.4826 * MAD / median of the values) is above this is
# invalid. The 10% limit is a judgment call, not a derived bound: with more spread in the bulk of the
# values, differences of a few percent between strategies cannot be trusted. The plain std / mean is
# reported too, but a handful of preempted values can push it past 10% while p50 is stable, so it
# does not decide validity.
CV_THRESHOLD = 0.10

# Calibration stops doubling `loops` here, even if one value is still shorter than min_value_s.
DEFAULT_MAX_LOOPS = 2**20

Clock = Callable[[], float]


def time_calls_s(fn: Callable[[], Any], loops: int, clock: Clock) -> float:
    """Call `fn` `loops` times back to back and return the elapsed seconds for all calls.

    The `for` loop's own overhead (tens of nanoseconds per call in CPython) is part of the time.
    """
    start_s = clock()
    for _ in range(loops):
        fn()
    return clock() - start_s


def calibrate_loops(
    fn: Callable[[], Any],
    min_value_s: float,
    clock: Clock,
    max_loops: int = DEFAULT_MAX_LOOPS,
) -> int:
    """Return the loop count for one value: start at 1 and double until `loops` calls last >= min_value_s.

    Returns `max_loops` when even that many calls are shorter than `min_value_s`. The calibration calls
    are not kept as values.
    """
    if min_value_s <= 0:
        raise ValueError(f"min_value_s must be > 0 seconds, got {min_value_s}")
    if max_loops < 1:
        raise ValueError(f"max_loops must be >= 1, got {max_loops}")

    loops = 1
    while True:
        duration_s = time_calls_s(fn, loops, clock)
        if duration_s >= min_value_s or loops >= max_loops:
            log.debug(
                "calibrated %d loops: %.3g s for one value (min_value_s %.3g)", loops, duration_s, min_value_s
            )
            return loops
        loops = min(loops * 2, max_loops)


@dataclass
class TimingResult:
    """Values of one timed function, the settings they were collected with, and their statistics.

    Statistics are computed from `values_s` on access. Only `values_s` is required, so a result can also be
    built from known values, for example in tests.
    """

    values_s: list[float]
    loops: int = 1
    # Warmup values run. Fewer than requested when max_duration_s stopped the warmup.
    warmup_values: int = 0
    first_call_s: float | None = None
    # Seconds spent in the kept values: the sum of loops * value.
    total_s: float = 0.0
    # Wall-clock seconds of the whole measurement: first call, calibration, warmup and values.
    elapsed_s: float = 0.0
    min_values: int = 1
    min_duration_s: float = 0.0
    max_duration_s: float | None = None
    min_value_s: float | None = None
    max_loops: int = DEFAULT_MAX_LOOPS
    stopped_at_max_duration: bool = False
    cv_threshold: float = CV_THRESHOLD

    @property
    def n_values(self) -> int:
        return len(self.values_s)

    @property
    def mean_s(self) -> float | None:
        return float(np.mean(self.values_s)) if self.values_s else None

    @property
    def std_s(self) -> float | None:
        """Sample standard deviation (ddof=1), or None for fewer than 2 values."""
        return float(np.std(self.values_s, ddof=1)) if self.n_values >= 2 else None

    @property
    def cv(self) -> float | None:
        """Coefficient of variation std_s / mean_s, or None when std_s is None or the mean is 0."""
        mean_s = self.mean_s
        std_s = self.std_s
        if std_s is None or not mean_s:
            return None
        return std_s / mean_s

    @property
    def robust_cv(self) -> float | None:
        """Robust coefficient of variation, 1.4826 * MAD / median (see bench.measure.stats.robust_cv)."""
        return robust_cv(self.values_s)

    @property
    def min_s(self) -> float | None:
        return min(self.values_s) if self.values_s else None

    @property
    def max_s(self) -> float | None:
        return max(self.values_s) if self.values_s else None

    @property
    def p50_s(self) -> float | None:
        return mlperf_percentile(self.values_s, 0.50) if self.values_s else None

    @property
    def p90_s(self) -> float | None:
        """MLPerf-rule p90, or None for fewer than P90_MIN_VALUES values."""
        return mlperf_percentile(self.values_s, 0.90) if self.n_values >= P90_MIN_VALUES else None

    @property
    def p99_s(self) -> float | None:
        """MLPerf-rule p99, or None for fewer than P99_MIN_VALUES values."""
        return mlperf_percentile(self.values_s, 0.99) if self.n_values >= P99_MIN_VALUES else None

    @property
    def outliers(self) -> int:
        """Number of values outside Tukey's 1.5 IQR fences. They stay in every statistic."""
        return tukey_outlier_count(self.values_s)

    @property
    def invalid_reasons(self) -> list[str]:
        """Problems that make the numbers untrustworthy, each with a remedy. Empty when valid.

        A result is invalid when max_duration_s stopped it, when it has fewer than min_values values,
        when its robust coefficient of variation is above cv_threshold, or when calibration hit max_loops and
        a value is still shorter than min_value_s. A missing p90 or p99 is not a reason, it is a note.
        """
        reasons = []
        if self.stopped_at_max_duration:
            reasons.append(self._stopped_reason())
        elif self.n_values < self.min_values:
            reasons.append(
                f"only {self.n_values} values, fewer than min_values {self.min_values}. "
                "Collect more values or lower min_values."
            )

        spread = self.robust_cv
        if spread is not None and spread > self.cv_threshold:
            reasons.append(
                f"robust coefficient of variation (1.4826 MAD / median) {spread:.2f} above "
                f"{self.cv_threshold:.2f}: the machine is noisy. "
                "Close other programs, pin the benchmark to idle cores, "
                "or raise timing.min_value_s so that each value averages more calls."
            )

        short_value_reason = self._short_value_reason()
        if short_value_reason is not None:
            reasons.append(short_value_reason)
        return reasons

    @property
    def valid(self) -> bool:
        return not self.invalid_reasons

    @property
    def notes(self) -> list[str]:
        """Statistics that could not be computed from this many values. They do not make a result invalid."""
        return self.missing_statistics(tail_percentiles=True)

    def missing_statistics(self, *, tail_percentiles: bool) -> list[str]:
        """List the statistics that need more values, leaving out p90 and p99 unless `tail_percentiles`."""
        notes = []
        if self.n_values < 2:
            notes.append(f"only {self.n_values} values, std and cv need >= 2")
        if not tail_percentiles:
            return notes
        for name, min_values in (("p90", P90_MIN_VALUES), ("p99", P99_MIN_VALUES)):
            if self.n_values < min_values:
                notes.append(
                    f"only {self.n_values} values, {name} needs >= {min_values}: raise timing.min_values"
                )
        return notes

    def summary(self) -> dict[str, Any]:
        """Return the settings and statistics as a JSON-serializable dict, in seconds per call."""
        return {
            "n_values": self.n_values,
            "loops": self.loops,
            "warmup_values": self.warmup_values,
            "first_call_s": self.first_call_s,
            "total_s": self.total_s,
            "elapsed_s": self.elapsed_s,
            "mean_s": self.mean_s,
            "std_s": self.std_s,
            "cv": self.cv,
            "robust_cv": self.robust_cv,
            "min_s": self.min_s,
            "max_s": self.max_s,
            "p50_s": self.p50_s,
            "p90_s": self.p90_s,
            "p99_s": self.p99_s,
            "outliers": self.outliers,
            "valid": self.valid,
            "invalid_reasons": self.invalid_reasons,
            "notes": self.notes,
        }

    def _stopped_reason(self) -> str:
        if self.n_values < self.min_values:
            return (
                f"stopped at max_duration_s before min_values: {self.n_values} of {self.min_values} values "
                f"after {self.elapsed_s:.3g} s. Raise timing.max_duration_s or lower timing.min_values "
                "(timing.throughput_min_values for throughput)."
            )
        return (
            f"stopped at max_duration_s before min_duration_s: {self.total_s:.3g} of "
            f"{self.min_duration_s:.3g} timed seconds after {self.elapsed_s:.3g} s. "
            "Raise timing.max_duration_s or lower timing.min_duration_s "
            "(timing.throughput_min_duration_s for throughput)."
        )

    def _short_value_reason(self) -> str | None:
        if self.min_value_s is None or self.loops < self.max_loops or not self.values_s:
            return None
        shortest_value_s = min(self.values_s) * self.loops
        if shortest_value_s >= self.min_value_s:
            return None
        return (
            f"value {shortest_value_s * 1e3:.3g} ms under min_value_s {self.min_value_s * 1e3:.3g} ms "
            f"at max_loops {self.max_loops}: clock resolution and loop overhead dominate such short values. "
            "Time a larger batch or raise max_loops."
        )


def time_function(
    fn: Callable[[], Any],
    timing: TimingSpec,
    *,
    min_values: int,
    min_duration_s: float,
    clock: Clock = time.perf_counter,
    max_loops: int = DEFAULT_MAX_LOOPS,
) -> TimingResult:
    """Time `fn`: first call, loop calibration, warmup values, then values until both minimums are met.

    `timing` supplies warmup_values, min_value_s and max_duration_s. `min_values` and `min_duration_s` are
    separate arguments because latency and throughput use different minimums. `fn` takes no arguments,
    so the caller binds the input. Exceptions from `fn` propagate.
    """
    if min_values < 1:
        raise ValueError(f"min_values must be >= 1, got {min_values}")
    if min_duration_s < 0:
        raise ValueError(f"min_duration_s must be >= 0 seconds, got {min_duration_s}")

    start_s = clock()
    deadline_s = start_s + timing.max_duration_s
    first_call_s = time_calls_s(fn, 1, clock)
    loops = calibrate_loops(fn, timing.min_value_s, clock, max_loops)
    warmup_values = _run_warmup(fn, loops, timing.warmup_values, clock, deadline_s)
    # When the warmup ran into the deadline, _collect_values returns at once with stopped=True.
    values_s, total_s, stopped = _collect_values(fn, loops, min_values, min_duration_s, clock, deadline_s)

    result = TimingResult(
        values_s=values_s,
        loops=loops,
        warmup_values=warmup_values,
        first_call_s=first_call_s,
        total_s=total_s,
        elapsed_s=clock() - start_s,
        min_values=min_values,
        min_duration_s=min_duration_s,
        max_duration_s=timing.max_duration_s,
        min_value_s=timing.min_value_s,
        max_loops=max_loops,
        stopped_at_max_duration=stopped,
    )
    if stopped:
        log.warning(
            "timing stopped at max_duration_s %.3g s with %d values", timing.max_duration_s, len(values_s)
        )
    log.debug("timed %d values of %d loops in %.3g s", result.n_values, loops, result.elapsed_s)
    return result


def _run_warmup(
    fn: Callable[[], Any],
    loops: int,
    warmup_values: int,
    clock: Clock,
    deadline_s: float,
) -> int:
    """Run up to `warmup_values` values and discard them. Returns how many ran before the deadline."""
    for index in range(warmup_values):
        if clock() >= deadline_s:
            return index
        time_calls_s(fn, loops, clock)
    return warmup_values


def _collect_values(
    fn: Callable[[], Any],
    loops: int,
    min_values: int,
    min_duration_s: float,
    clock: Clock,
    deadline_s: float,
) -> tuple[list[float], float, bool]:
    """Collect values until both minimums are met. Returns (per-call values, timed seconds, stopped)."""
    values_s: list[float] = []
    total_s = 0.0
    while len(values_s) < min_values or total_s < min_duration_s:
        if clock() >= deadline_s:
            return values_s, total_s, True
        duration_s = time_calls_s(fn, loops, clock)
        values_s.append(duration_s / loops)
        total_s += duration_s
    return values_s, total_s, False


def latency_summary(result: TimingResult, batch_size: int) -> dict[str, Any]:
    """Return latency statistics in milliseconds per call, each call processing `batch_size` samples.

    Percentiles that need more values (see TimingResult.notes) are None.
    """
    return {
        "batch_size": batch_size,
        "n_values": result.n_values,
        "loops": result.loops,
        "latency_ms_mean": _to_ms(result.mean_s),
        "latency_ms_std": _to_ms(result.std_s),
        "latency_ms_p50": _to_ms(result.p50_s),
        "latency_ms_p90": _to_ms(result.p90_s),
        "latency_ms_p99": _to_ms(result.p99_s),
        "latency_ms_min": _to_ms(result.min_s),
        "latency_ms_max": _to_ms(result.max_s),
        "cv": result.cv,
        "robust_cv": result.robust_cv,
        "outliers": result.outliers,
        "first_call_ms": _to_ms(result.first_call_s),
        "valid": result.valid,
        "invalid_reasons": result.invalid_reasons,
        "notes": result.notes,
    }


def throughput_summary(result: TimingResult, batch_size: int) -> dict[str, Any]:
    """Return throughput as batch_size divided by the median seconds per call.

    The median is p50 by the MLPerf rule, so for an even number of values it is the upper middle value.

    throughput_samples_per_s is None when there are no values or the median call took 0 seconds. The
    notes leave out p90 and p99, which throughput does not report.
    """
    p50_s = result.p50_s
    throughput_samples_per_s = batch_size / p50_s if p50_s else None
    return {
        "batch_size": batch_size,
        "n_values": result.n_values,
        "loops": result.loops,
        "throughput_samples_per_s": throughput_samples_per_s,
        "batch_ms_p50": _to_ms(p50_s),
        "first_call_ms": _to_ms(result.first_call_s),
        "cv": result.cv,
        "robust_cv": result.robust_cv,
        "valid": result.valid,
        "invalid_reasons": result.invalid_reasons,
        "notes": result.missing_statistics(tail_percentiles=False),
    }


def measure_latency(
    fn: Callable[[], Any],
    timing: TimingSpec,
    clock: Clock = time.perf_counter,
) -> dict[str, Any]:
    """Time `fn` with the latency minimums of `timing` and return `latency_summary`.

    `fn` must run one batch of `timing.latency_batch_size` samples per call.
    """
    result = time_function(
        fn,
        timing,
        min_values=timing.min_values,
        min_duration_s=timing.min_duration_s,
        clock=clock,
    )
    return latency_summary(result, timing.latency_batch_size)


def measure_throughput(
    fn: Callable[[], Any],
    timing: TimingSpec,
    clock: Clock = time.perf_counter,
) -> dict[str, Any]:
    """Time `fn` with the throughput minimums of `timing` and return `throughput_summary`.

    `fn` must run one batch of `timing.throughput_batch_size` samples per call.
    """
    result = time_function(
        fn,
        timing,
        min_values=timing.throughput_min_values,
        min_duration_s=timing.throughput_min_duration_s,
        clock=clock,
    )
    return throughput_summary(result, timing.throughput_batch_size)


def _to_ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


# Fewer epochs than this, after the first, give no spread worth judging; the check is then left
# undecided (None).
MIN_EPOCHS_FOR_SPREAD = 3


def epoch_timing_validity(epoch_seconds: list[float], cv_threshold: float = CV_THRESHOLD) -> dict[str, Any]:
    """Judge training epoch times like timing values: invalid when their robust spread is above the threshold.

    Every epoch of a run does the same work, so epochs that differ by more than `cv_threshold` (robust
    coefficient of variation, as for latency) make train s/epoch untrustworthy. The first epoch is left
    out of the check, like a warmup value, because it also traces or compiles the training step (in tf,
    by about 1 s here). `valid` is None with fewer than MIN_EPOCHS_FOR_SPREAD epochs after the first.
    """
    judged = list(epoch_seconds[1:])
    spread = robust_cv(judged)
    if len(judged) < MIN_EPOCHS_FOR_SPREAD or spread is None:
        return {"robust_cv": spread, "valid": None, "invalid_reasons": []}
    reasons = []
    if spread > cv_threshold:
        reasons.append(
            f"epoch times after the first vary: robust coefficient of variation {spread:.2f} above "
            f"{cv_threshold:.2f} (fastest {min(judged):.2f} s, slowest {max(judged):.2f} s). "
            "Rerun on an idle machine; if the spread stays, the epochs do unequal work."
        )
    return {"robust_cv": spread, "valid": not reasons, "invalid_reasons": reasons}
