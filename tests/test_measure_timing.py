"""Tests for bench.measure.timing and bench.measure.stats, driven by a fake clock.

Durations are powers of two, so every sum of them is exact in floating point and the stop rules can be
checked with ==.
"""

from __future__ import annotations

import random

import pytest

from bench.measure.stats import mlperf_percentile, tukey_outlier_count
from bench.measure.timing import (
    CV_THRESHOLD,
    TimingResult,
    calibrate_loops,
    epoch_timing_validity,
    latency_summary,
    measure_latency,
    measure_throughput,
    throughput_summary,
    time_function,
)
from bench.spec.profile import TimingSpec

MS_1 = 2.0**-10  # 0.9765625 ms, a power of two close to 1 ms


class FakeClock:
    """A clock that advances only when the function under test runs.

    Each call of `call` advances the time by the next scripted duration. After the script runs out, the
    last duration repeats. Reading the clock costs no time.
    """

    def __init__(self, durations_s: list[float]) -> None:
        self.now_s = 1000.0
        self.durations_s = list(durations_s)
        self.calls = 0

    def __call__(self) -> float:
        return self.now_s

    def call(self) -> None:
        index = min(self.calls, len(self.durations_s) - 1)
        self.now_s += self.durations_s[index]
        self.calls += 1


def make_timing(**changes) -> TimingSpec:
    settings = {
        "warmup_values": 0,
        "min_values": 1,
        "min_duration_s": 0.0,
        "max_duration_s": 100.0,
        "min_value_s": MS_1,
    }
    settings.update(changes)
    return TimingSpec(**settings)


# --- calibration ---


def test_calibrate_doubles_until_min_value() -> None:
    clock = FakeClock([0.0002])

    loops = calibrate_loops(clock.call, 0.001, clock)

    assert loops == 8
    assert clock.calls == 1 + 2 + 4 + 8


def test_calibrate_slow_call_needs_one_loop() -> None:
    clock = FakeClock([0.5])

    assert calibrate_loops(clock.call, 0.001, clock) == 1


def test_calibrate_stops_at_max_loops() -> None:
    clock = FakeClock([0.0])

    assert calibrate_loops(clock.call, 0.001, clock, max_loops=100) == 100


def test_calibrate_rejects_bad_arguments() -> None:
    clock = FakeClock([0.001])

    with pytest.raises(ValueError, match="min_value_s"):
        calibrate_loops(clock.call, 0.0, clock)
    with pytest.raises(ValueError, match="max_loops"):
        calibrate_loops(clock.call, 0.001, clock, max_loops=0)


# --- stop rules ---


def test_time_function_stops_at_min_values() -> None:
    clock = FakeClock([MS_1])

    result = time_function(clock.call, make_timing(), min_values=50, min_duration_s=0.0, clock=clock)

    assert result.n_values == 50
    assert result.loops == 1
    assert result.total_s == 50 * MS_1
    assert result.valid


def test_time_function_stops_at_min_duration() -> None:
    clock = FakeClock([MS_1])

    result = time_function(clock.call, make_timing(), min_values=5, min_duration_s=0.125, clock=clock)

    assert result.n_values == 128
    assert result.total_s == 0.125
    assert result.valid


def test_time_function_max_duration_is_invalid() -> None:
    clock = FakeClock([2.0**-4])

    result = time_function(
        clock.call, make_timing(max_duration_s=1.0), min_values=100, min_duration_s=0.0, clock=clock
    )

    assert result.stopped_at_max_duration
    assert 0 < result.n_values < 100
    assert not result.valid
    assert len(result.invalid_reasons) == 1
    assert "stopped at max_duration_s before min_values" in result.invalid_reasons[0]
    assert "timing.max_duration_s" in result.invalid_reasons[0]


def test_time_function_max_duration_before_min_duration() -> None:
    clock = FakeClock([2.0**-4])

    result = time_function(
        clock.call, make_timing(max_duration_s=1.0), min_values=2, min_duration_s=1.0, clock=clock
    )

    assert result.n_values >= 2
    assert not result.valid
    assert "stopped at max_duration_s before min_duration_s" in result.invalid_reasons[0]


def test_time_function_deadline_during_warmup() -> None:
    clock = FakeClock([0.25])

    result = time_function(
        clock.call,
        make_timing(warmup_values=10, max_duration_s=1.0),
        min_values=5,
        min_duration_s=0.0,
        clock=clock,
    )

    assert result.warmup_values < 10
    assert result.n_values == 0
    assert result.stopped_at_max_duration
    assert not result.valid


def test_time_function_rejects_bad_minimums() -> None:
    clock = FakeClock([MS_1])

    with pytest.raises(ValueError, match="min_values"):
        time_function(clock.call, make_timing(), min_values=0, min_duration_s=0.0, clock=clock)
    with pytest.raises(ValueError, match="min_duration_s"):
        time_function(clock.call, make_timing(), min_values=1, min_duration_s=-1.0, clock=clock)


# --- first call, warmup and loops ---


def test_first_call_and_warmup_are_separate() -> None:
    # first call 0.5 s, calibration call 2**-6 s, two warmup values of 2**-5 s, then 2**-10 s per call.
    clock = FakeClock([0.5, 2.0**-6, 2.0**-5, 2.0**-5, MS_1])

    timing = make_timing(warmup_values=2)

    result = time_function(clock.call, timing, min_values=20, min_duration_s=0.0, clock=clock)

    assert result.first_call_s == 0.5
    assert result.warmup_values == 2
    assert result.loops == 1
    assert result.values_s == [MS_1] * 20
    assert clock.calls == 1 + 1 + 2 + 20


def test_values_are_per_call_with_loops() -> None:
    # 2**-12 s per call needs 4 loops to reach min_value_s 2**-10 s.
    clock = FakeClock([2.0**-12])

    result = time_function(clock.call, make_timing(), min_values=10, min_duration_s=0.0, clock=clock)

    assert result.loops == 4
    assert result.values_s == [2.0**-12] * 10
    assert result.total_s == 10 * 4 * 2.0**-12


def test_short_values_at_max_loops_are_invalid() -> None:
    clock = FakeClock([2.0**-20])

    result = time_function(
        clock.call, make_timing(), min_values=10, min_duration_s=0.0, clock=clock, max_loops=16
    )

    assert result.loops == 16
    assert not result.valid
    assert any("under min_value_s" in reason for reason in result.invalid_reasons)


# --- percentiles ---


def test_mlperf_percentile_on_1_to_100() -> None:
    values = list(range(1, 101))
    random.Random(0).shuffle(values)

    assert mlperf_percentile(values, 0.50) == 51
    assert mlperf_percentile(values, 0.90) == 91
    assert mlperf_percentile(values, 1.0) == 100
    assert mlperf_percentile(values, 0.0) == 1


def test_mlperf_percentile_reads_decimal_fraction() -> None:
    # 100 * 0.29 is 28.999999999999996 in binary floating point.
    assert mlperf_percentile(list(range(100)), 0.29) == 29


def test_mlperf_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        mlperf_percentile([], 0.5)
    with pytest.raises(ValueError, match="fraction"):
        mlperf_percentile([1.0], 1.5)


def test_result_percentiles_100_values() -> None:
    result = TimingResult(values_s=[float(v) for v in range(1, 101)], min_values=100)

    assert result.p50_s == 51.0
    assert result.p90_s == 91.0
    assert result.p99_s is None
    assert any("p99 needs >= 662" in note for note in result.notes)
    assert not any("p90" in note for note in result.notes)
    assert result.min_s == 1.0
    assert result.max_s == 100.0


def test_result_percentiles_1000_values() -> None:
    result = TimingResult(values_s=[float(v) for v in range(1, 1001)])

    assert result.p99_s == 991.0  # sorted index 990
    assert result.p90_s == 901.0
    assert result.notes == []


def test_result_p90_needs_64_values() -> None:
    assert TimingResult(values_s=[1.0] * 63).p90_s is None
    assert TimingResult(values_s=[float(v) for v in range(64)]).p90_s == 57.0  # floor(64 * 0.9)


def test_missing_percentiles_stay_valid() -> None:
    result = TimingResult(values_s=[1.0] * 40, min_values=40)

    assert result.valid
    assert "only 40 values, p90 needs >= 64: raise timing.min_values" in result.notes


# --- spread and outliers ---


def test_tukey_outliers_counted_not_trimmed() -> None:
    values = [1.0, 50.0, 51.0, 52.0, 53.0, 54.0, 55.0, 56.0, 57.0, 200.0]
    result = TimingResult(values_s=values)

    # Q1 = 51.25, Q3 = 55.75, IQR = 4.5, fences 44.5 and 62.5.
    assert result.outliers == 2
    assert result.n_values == 10
    assert result.min_s == 1.0
    assert result.max_s == 200.0


def test_tukey_one_high_outlier() -> None:
    # Q1 = 3.25, Q3 = 7.75, IQR = 4.5, upper fence 14.5.
    assert tukey_outlier_count([1, 2, 3, 4, 5, 6, 7, 8, 9, 100]) == 1
    assert tukey_outlier_count([1, 2, 3, 4, 5, 6, 7, 8, 9, 14]) == 0
    assert tukey_outlier_count([]) == 0


def test_mean_std_cv() -> None:
    result = TimingResult(values_s=[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])

    assert result.mean_s == 5.0
    assert result.std_s == pytest.approx(2.138089935299395)  # sample std, ddof=1
    assert result.cv == pytest.approx(2.138089935299395 / 5.0)


def test_high_cv_is_invalid() -> None:
    result = TimingResult(values_s=[0.001, 0.0012, 0.0014, 0.0016, 0.0018] * 20, min_values=100)

    assert result.robust_cv > CV_THRESHOLD
    assert not result.valid
    assert len(result.invalid_reasons) == 1
    assert result.invalid_reasons[0].startswith(
        f"robust coefficient of variation (1.4826 MAD / median) {result.robust_cv:.2f} above 0.10"
    )


def test_few_slow_values_keep_row_valid() -> None:
    # 2% of the values are 6x slower (a preempted thread): std / mean passes 10%, the bulk is stable.
    values = [0.00100, 0.00101, 0.00099, 0.00102, 0.00098] * 98 + [0.006] * 10
    result = TimingResult(values_s=values, min_values=500)

    assert result.cv > CV_THRESHOLD
    assert result.robust_cv < 0.05
    assert result.outliers == 10
    assert result.valid


def test_robust_cv_known_values() -> None:
    # median 3, absolute deviations 2, 1, 0, 1, 2 with median 1.
    result = TimingResult(values_s=[1.0, 2.0, 3.0, 4.0, 5.0])

    assert result.robust_cv == pytest.approx(1.4826 / 3.0)


def test_low_cv_is_valid() -> None:
    result = TimingResult(values_s=[0.00100, 0.00101, 0.00099] * 30, min_values=90)

    assert result.cv < CV_THRESHOLD
    assert result.valid
    assert result.invalid_reasons == []


def test_too_few_values_is_invalid() -> None:
    result = TimingResult(values_s=[1.0] * 40, min_values=700)

    assert not result.valid
    assert "fewer than min_values 700" in result.invalid_reasons[0]


def test_single_value_has_no_spread() -> None:
    result = TimingResult(values_s=[1.0])

    assert result.std_s is None
    assert result.cv is None
    assert result.valid
    assert "only 1 values, std and cv need >= 2" in result.notes


def test_no_values_summary() -> None:
    summary = TimingResult(values_s=[]).summary()

    assert summary["n_values"] == 0
    assert summary["mean_s"] is None
    assert summary["p50_s"] is None
    assert summary["valid"] is False


# --- summaries ---


def test_measure_latency_summary() -> None:
    clock = FakeClock([MS_1])
    timing = make_timing(min_values=700, warmup_values=3, latency_batch_size=1)

    summary = measure_latency(clock.call, timing, clock=clock)

    assert set(summary) == {
        "batch_size",
        "n_values",
        "loops",
        "latency_ms_mean",
        "latency_ms_std",
        "latency_ms_p50",
        "latency_ms_p90",
        "latency_ms_p99",
        "latency_ms_min",
        "latency_ms_max",
        "cv",
        "robust_cv",
        "outliers",
        "first_call_ms",
        "valid",
        "invalid_reasons",
        "notes",
    }
    assert summary["batch_size"] == 1
    assert summary["n_values"] == 700
    assert summary["latency_ms_p50"] == 0.9765625
    assert summary["latency_ms_p99"] == 0.9765625
    assert summary["first_call_ms"] == 0.9765625
    assert summary["valid"] is True
    assert summary["notes"] == []


def test_latency_summary_missing_percentiles() -> None:
    summary = latency_summary(TimingResult(values_s=[0.002] * 10, loops=3), batch_size=8)

    assert summary["batch_size"] == 8
    assert summary["loops"] == 3
    assert summary["latency_ms_p50"] == 2.0
    assert summary["latency_ms_p90"] is None
    assert summary["latency_ms_p99"] is None
    assert summary["first_call_ms"] is None
    assert len(summary["notes"]) == 2


def test_measure_throughput_samples_per_s() -> None:
    clock = FakeClock([2.0**-7])
    timing = make_timing(throughput_batch_size=256, throughput_min_values=5, throughput_min_duration_s=0.0)

    summary = measure_throughput(clock.call, timing, clock=clock)

    assert set(summary) == {
        "batch_size",
        "n_values",
        "loops",
        "throughput_samples_per_s",
        "batch_ms_p50",
        "first_call_ms",
        "cv",
        "robust_cv",
        "valid",
        "invalid_reasons",
        "notes",
    }
    assert summary["n_values"] == 5
    assert summary["throughput_samples_per_s"] == 256 * 2**7
    assert summary["batch_ms_p50"] == 7.8125
    assert summary["valid"] is True
    assert summary["notes"] == []


def test_throughput_uses_throughput_minimums() -> None:
    clock = FakeClock([2.0**-7])
    timing = make_timing(min_values=500, throughput_min_values=3, throughput_min_duration_s=0.25)

    summary = measure_throughput(clock.call, timing, clock=clock)

    assert summary["n_values"] == 32  # 0.25 s / 2**-7 s


def test_throughput_summary_uses_median() -> None:
    result = TimingResult(values_s=[0.5, 0.25, 0.25, 0.25, 4.0])

    summary = throughput_summary(result, batch_size=100)

    assert summary["throughput_samples_per_s"] == 400.0
    assert summary["batch_ms_p50"] == 250.0


# --- real clock ---


def test_real_clock_times_numpy_call() -> None:
    import numpy as np

    matrix = np.ones((32, 32), dtype=np.float32)
    timing = make_timing(warmup_values=2, max_duration_s=5.0, min_value_s=0.001)

    result = time_function(lambda: matrix @ matrix, timing, min_values=20, min_duration_s=0.01)

    assert result.n_values >= 20
    assert result.total_s >= 0.01
    assert result.first_call_s > 0
    assert result.loops >= 1
    assert result.p50_s > 0
    assert result.elapsed_s < 5.0 + 1.0


def test_epoch_timing_validity_flags_a_busy_machine() -> None:
    steady = epoch_timing_validity([4.0, 4.1, 3.9, 4.0, 4.05])
    assert steady["valid"] is True
    assert steady["invalid_reasons"] == []
    busy = epoch_timing_validity([4.0, 9.0, 4.1, 12.0, 8.5])
    assert busy["valid"] is False
    assert "slowest 12.00 s" in busy["invalid_reasons"][0]
    assert epoch_timing_validity([4.0, 9.0, 4.0])["valid"] is None


def test_epoch_timing_validity_ignores_the_first_epoch() -> None:
    # A first epoch that traces the training step is slower, like a warmup value.
    assert epoch_timing_validity([6.0, 4.0, 4.1, 3.9, 4.0])["valid"] is True
