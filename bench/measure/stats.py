"""Order statistics for timing values: MLPerf-style percentiles and Tukey outlier counts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

# Minimum number of values before p90 and p99 are reported: the smallest n at which at least two values
# lie above the true percentile with 99% confidence, that is P(X <= 1) <= 0.01 for X ~ Binomial(n, 1 - p).
# MLPerf LoadGen's early-stopping check (loadgen/results.cc, confidence 0.99) requires the same counts.
P90_MIN_VALUES = 64
P99_MIN_VALUES = 662

# Tukey's fences: a value is an outlier when it lies more than 1.5 IQR below Q1 or above Q3.
TUKEY_FENCE_IQR = 1.5


def mlperf_percentile(values: Sequence[float], fraction: float) -> float:
    """Return the value at index floor(n * fraction) of the sorted values, without interpolation.

    MLPerf LoadGen (loadgen/results.cc) indexes its sorted latencies the same way. The index is clamped
    to n - 1, so fraction 1.0 returns the maximum. `fraction` is read as the decimal it prints as, so that
    floor(100 * 0.29) is 29 and not the 28 that binary floating point gives.
    """
    if not values:
        raise ValueError("mlperf_percentile needs at least one value, got none")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")

    ordered = sorted(values)
    index = math.floor(len(ordered) * Fraction(str(fraction)))
    return ordered[min(index, len(ordered) - 1)]


def tukey_outlier_count(values: Sequence[float]) -> int:
    """Count the values outside Tukey's fences, Q1 - 1.5 IQR and Q3 + 1.5 IQR.

    Q1 and Q3 use numpy's default linear interpolation. The values are only counted, never removed.
    Returns 0 for an empty sequence.
    """
    if not values:
        return 0

    array = np.asarray(values, dtype=np.float64)
    q1, q3 = np.percentile(array, [25.0, 75.0])
    fence_width = TUKEY_FENCE_IQR * (q3 - q1)
    outside = (array < q1 - fence_width) | (array > q3 + fence_width)
    return int(np.count_nonzero(outside))


# Scale that makes the median absolute deviation estimate the standard deviation of a normal distribution.
MAD_TO_STD = 1.4826


def robust_cv(values: Sequence[float]) -> float | None:
    """Return the robust coefficient of variation, 1.4826 * MAD / median.

    Unlike std / mean, it is not moved by a few very slow values (a preempted thread, a page fault). It
    measures the spread of the bulk of the values, and the slow ones still show in p99, max and the
    outlier count. Returns None for fewer than 2 values or a zero median.
    """
    if len(values) < 2:
        return None
    array = np.asarray(values, dtype=np.float64)
    median = float(np.median(array))
    if median == 0.0:
        return None
    return MAD_TO_STD * float(np.median(np.abs(array - median))) / median


# Run-to-run noise limit for medians of the same timed callable on the same machine. A median that
# moved by less than this fraction between two runs is treated as unchanged: by the regression gates
# (tests/benchmarks) and by `bench compare`. `python -m bench.gates.noise --runs 8` ran on the 2-core
# AMD EPYC VM of the published run while other work shared it. The largest slowdown of a gate's median
# against its baseline was 16.8% (tf-eager, batch 256), and the README lists every gate. 20% is above
# that noise and below the 25% slowdown that the gate self-test must catch.
RUN_TO_RUN_THRESHOLD = 0.20
