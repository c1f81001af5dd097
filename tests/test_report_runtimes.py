"""Compute efficiency, the runtime table, skipped runtimes and time to accuracy, on hand-made inputs."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from bench.backend import EpochReport, unavailable_runtime
from bench.report import COLUMNS, record_rows
from bench.report_runtimes import compute_peak_of, efficiency, not_measured_section, runtime_section
from bench.report_training import time_to_accuracy_section
from bench.steps import TimeToAccuracy

PEAK = {"formula": {"flops": 200e9}, "sgemm": {"flops": 120e9}, "reference": "formula"}


def test_efficiency_is_two_flops_per_mac_over_peak():
    result = efficiency(400_000, 100_000, {"flops": 200e9, "source": "formula"})
    assert result["achieved_gflop_per_s"] == pytest.approx(80.0)
    assert result["fraction_of_peak"] == pytest.approx(0.4)
    assert result["peak_gflop_per_s"] == pytest.approx(200.0)
    assert result["peak_source"] == "formula"


def test_efficiency_without_peak_or_throughput():
    assert efficiency(400_000, 100_000, None)["fraction_of_peak"] is None
    assert efficiency(400_000, 100_000, None)["achieved_gflop_per_s"] == pytest.approx(80.0)
    assert efficiency(None, 100_000, None)["achieved_gflop_per_s"] is None
    assert efficiency(400_000, None, None)["achieved_gflop_per_s"] is None


def test_compute_peak_uses_the_named_reference():
    assert compute_peak_of({"manifest": {"compute_peak": PEAK}}) == {"flops": 200e9, "source": "formula"}
    sgemm = {**PEAK, "reference": "sgemm"}
    assert compute_peak_of({"manifest": {"compute_peak": sgemm}}) == {"flops": 120e9, "source": "sgemm"}
    assert compute_peak_of({}) is None
    assert compute_peak_of({"manifest": {"compute_peak": {"reference": "formula", "formula": {"flops": None}}}}) is None


def _record(runtimes, **extra):
    return {
        "cell": {"framework": "torch", "strategy": "baseline", "model": "lenet5", "dataset": "digits", "seed": 0},
        "cell_id": "torch-baseline-digits-lenet5-s0",
        "status": "ok",
        "model": {"macs_dense": 400_000, "macs_effective": 400_000},
        "manifest": {"compute_peak": PEAK},
        "runtimes": runtimes,
        **extra,
    }


MEASURED = {
    "runtime": "torch-compile",
    "kind": "native",
    "status": "ok",
    "quality": {"accuracy": 0.9},
    "latency": {"latency_ms_p50": 0.2, "latency_ms_p90": 0.25, "latency_ms_p99": 0.4, "valid": True},
    "throughput": {"throughput_samples_per_s": 100_000, "batch_size": 256, "valid": False, "first_call_ms": 2.0},
    "one_time": {"setup_ms": None, "first_inference_ms": 0.5, "compile_ms": {"1": 3000.0, "256": 2500.0}},
}
SKIPPED = {"runtime": "torch-eager-cuda", "kind": "native", "status": "skipped", "reason": "no CUDA device"}


def test_record_rows_carry_efficiency_and_one_time_costs():
    rows = record_rows(_record([MEASURED, SKIPPED]))
    measured, skipped = rows
    assert measured["fraction_of_peak"] == pytest.approx(0.4)
    assert measured["compile_ms"] == pytest.approx(5500.0)
    assert measured["compile_ms_by_batch"] == "batch 1: 3000; batch 256: 2500"
    assert measured["throughput_first_call_ms"] == 2.0
    assert skipped["status"] == "skipped"
    assert skipped["skip_reason"] == "no CUDA device"
    assert skipped["accuracy"] is None and skipped["latency_ms_p50"] is None


def test_runtime_table_marks_invalid_and_lists_skipped_apart():
    frame = pd.DataFrame(record_rows(_record([MEASURED, SKIPPED])), columns=COLUMNS)
    table = "\n".join(runtime_section(frame, []))
    assert "| torch | baseline | 0 | torch-compile | 0.200 | 0.250 | 0.400 | yes | 100,000 | **no** | 80.00 | 40.0 |" in table
    assert "5,500" in table
    assert "torch-eager-cuda" not in table
    skipped = "\n".join(not_measured_section(frame))
    assert "| torch-eager-cuda | torch | 1 | no CUDA device |" in skipped


def test_unavailable_runtime_is_never_called():
    runtime = unavailable_runtime("a GPU path", "no GPU here")
    assert runtime.unavailable == "no GPU here"
    with pytest.raises(RuntimeError, match="no GPU here"):
        runtime.run(None)


class _Backend:
    """predict returns logits whose accuracy is the next value of a fixed sequence."""

    def __init__(self, accuracies, labels):
        self.accuracies, self.labels, self.calls = list(accuracies), labels, 0

    def predict(self, model, images):
        accuracy = self.accuracies[self.calls]
        self.calls += 1
        correct = int(round(accuracy * len(self.labels)))
        predicted = np.where(np.arange(len(self.labels)) < correct, self.labels, (self.labels + 1) % 10)
        return np.eye(10)[predicted]


def test_time_to_accuracy_stops_evaluating_once_reached():
    labels = np.arange(100) % 10
    backend = _Backend([0.5, 0.88, 0.9, 0.95], labels)
    state = SimpleNamespace(cell_id="cell", backend=backend, model=None, evaluation=(np.zeros((100, 1)), labels))
    seen = []
    tracker = TimeToAccuracy(state, 0.89, seen.append)
    for epoch in range(4):
        tracker.on_epoch(EpochReport(epoch, 4, loss=1.0, seconds=2.0, samples=100))
    summary = tracker.summary()
    assert len(seen) == 4  # the epoch logger still sees every epoch
    assert backend.calls == 3  # no evaluation after the target was reached
    assert summary["reached"] is True
    assert summary["epochs"] == 3
    assert summary["train_seconds"] == pytest.approx(6.0)
    assert summary["test_accuracy_by_epoch"] == [0.5, 0.88, 0.9]


def test_time_to_accuracy_not_reached_and_its_table():
    labels = np.arange(10)
    state = SimpleNamespace(
        cell_id="cell", backend=_Backend([0.1, 0.2], labels), model=None, evaluation=(np.zeros((10, 1)), labels)
    )
    tracker = TimeToAccuracy(state, 0.89, lambda report: None)
    for epoch in range(2):
        tracker.on_epoch(EpochReport(epoch, 2, loss=1.0, seconds=1.0, samples=10))
    summary = tracker.summary()
    assert summary["reached"] is False and summary["train_seconds"] is None
    record = _record(
        [MEASURED],
        steps=[{"step": "train", "from_cache": False}],
        training={"epochs": 2, "time_to_accuracy": summary},
    )
    cached = {**record, "cell_id": "other", "steps": [{"step": "train", "from_cache": True}]}
    table = "\n".join(time_to_accuracy_section([record, cached]))
    assert "| baseline | torch | 0 | 0.89 | not reached | - | 2 | 0.1000, 0.2000 |" in table
    assert table.count("| baseline |") == 1  # the cell that loaded a cached network is left out


def test_int8_and_gpu_rows_get_no_fraction_of_the_cpu_fp32_peak():
    int8 = {**MEASURED, "runtime": "onnxruntime-int8", "int8": True}
    gpu = {**MEASURED, "runtime": "torch-eager-cuda"}
    for row in record_rows(_record([int8, gpu])):
        assert row["fraction_of_peak"] is None
        assert row["achieved_gflop_per_s"] == pytest.approx(80.0)
