"""Measurement on plain Python callables and numpy arrays: timing, metrics, size, memory, environment, peak.

This package imports neither torch nor tensorflow. Callers bind a model's input into a no-argument
function and pass it to the timing functions.
"""

from bench.measure.environment import environment, hardware_fingerprint, physical_cores
from bench.measure.memory import peak_rss_bytes
from bench.measure.metrics import (
    classification_metrics,
    label_agreement,
    max_abs_diff,
    predicted_labels,
)
from bench.measure.peak import achieved_flops, compute_peak, formula_peak, fraction_of_peak
from bench.measure.size import dense_fp32_bytes, model_size
from bench.measure.stats import (
    P90_MIN_VALUES,
    P99_MIN_VALUES,
    RUN_TO_RUN_THRESHOLD,
    mlperf_percentile,
    tukey_outlier_count,
)
from bench.measure.timing import (
    CV_THRESHOLD,
    DEFAULT_MAX_LOOPS,
    TimingResult,
    calibrate_loops,
    latency_summary,
    measure_latency,
    measure_throughput,
    throughput_summary,
    time_function,
)

__all__ = [
    "CV_THRESHOLD",
    "DEFAULT_MAX_LOOPS",
    "P90_MIN_VALUES",
    "P99_MIN_VALUES",
    "RUN_TO_RUN_THRESHOLD",
    "TimingResult",
    "achieved_flops",
    "calibrate_loops",
    "classification_metrics",
    "compute_peak",
    "dense_fp32_bytes",
    "environment",
    "formula_peak",
    "fraction_of_peak",
    "hardware_fingerprint",
    "label_agreement",
    "latency_summary",
    "max_abs_diff",
    "measure_latency",
    "measure_throughput",
    "mlperf_percentile",
    "model_size",
    "peak_rss_bytes",
    "physical_cores",
    "predicted_labels",
    "throughput_summary",
    "time_function",
    "tukey_outlier_count",
]
