"""Baseline files and median comparison of the timing gates, on known numbers."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from bench.gates import (
    Machine,
    Measurement,
    baseline_path,
    compare,
    load_baselines,
    record_baseline,
)
from bench.gates.baselines import mismatched_settings

MACHINE = Machine(
    "0123456789abcdef",
    {"cpu_model": "Test CPU", "logical_cores": 2, "physical_cores": 2, "timing_packages": {"onnxruntime": "1.0"}},
)
METADATA = {"recorded_at": "2026-12-05T00:00:00+00:00", "command": "TWINBENCH_GATES_RECORD=1 python -m pytest"}


def measurement(name: str = "onnxruntime/torch-export/batch1", median_s: float = 1e-3, **changes) -> Measurement:
    base = Measurement(
        name=name, median_s=median_s, rounds=50, iterations=20, calls_per_iteration=1, batch_size=1, threads=1
    )
    return replace(base, **changes)


def test_compare_within_threshold_passes():
    comparison = compare(measurement(median_s=1.10e-3), {"median_s": 1e-3}, threshold=0.15)

    assert comparison.ratio == pytest.approx(1.10)
    assert not comparison.regressed
    assert comparison.describe().startswith("ok: gate onnxruntime/torch-export/batch1")
    assert "10.0% slower" in comparison.describe()


def test_compare_above_threshold_regresses():
    comparison = compare(measurement(median_s=1.25e-3), {"median_s": 1e-3, **METADATA}, threshold=0.15)

    assert comparison.regressed
    assert comparison.describe().startswith("REGRESSION: gate onnxruntime/torch-export/batch1")
    assert "25.0% slower than the baseline 1.000 ms, more than the threshold of 15%" in comparison.describe()
    assert f"by `{METADATA['command']}`" in comparison.describe()


def test_compare_at_threshold_passes():
    # 1.5 / 1.0 is exact in binary floating point, so the ratio is exactly 1 + threshold.
    assert not compare(measurement(median_s=1.5), {"median_s": 1.0}, threshold=0.5).regressed


def test_compare_faster_passes():
    comparison = compare(measurement(median_s=0.5e-3), {"median_s": 1e-3}, threshold=0.15)

    assert not comparison.regressed
    assert "50.0% faster" in comparison.describe()


def test_compare_lists_attempts():
    timed = measurement(median_s=1.2e-3, attempt_medians_s=(1.3e-3, 1.2e-3, 1.25e-3))

    text = compare(timed, {"median_s": 1e-3}, threshold=0.15).describe()

    assert "lowest of 3 attempts at 1.300, 1.200, 1.250 x the baseline" in text


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.1])
def test_compare_rejects_invalid_threshold(threshold):
    with pytest.raises(ValueError, match="threshold must be a fraction"):
        compare(measurement(), {"median_s": 1e-3}, threshold=threshold)


@pytest.mark.parametrize("stored", [None, 0.0, "fast"])
def test_compare_rejects_baseline_without_median(stored):
    with pytest.raises(ValueError, match="no positive median_s"):
        compare(measurement(), {"median_s": stored}, threshold=0.15)


@pytest.mark.parametrize("field", ["rounds", "iterations", "calls_per_iteration", "batch_size", "threads"])
def test_measurement_rejects_zero_counts(field):
    with pytest.raises(ValueError, match=f"{field} of gate"):
        measurement(**{field: 0})


def test_measurement_rejects_zero_median():
    with pytest.raises(ValueError, match="median_s of gate"):
        measurement(median_s=0.0)


def test_record_then_load_round_trip(tmp_path):
    path = baseline_path(tmp_path, MACHINE.fingerprint)

    record_baseline(path, MACHINE, measurement("b", 2e-3), METADATA)
    record_baseline(path, MACHINE, measurement("a", 1e-3), METADATA)
    record_baseline(path, MACHINE, measurement("b", 3e-3), METADATA)

    entries = load_baselines(path)
    assert list(entries) == ["a", "b"]
    assert entries["b"]["median_s"] == 3e-3
    assert entries["a"]["command"] == METADATA["command"]
    assert entries["a"]["clock"] == "process_cpu_time"
    content = json.loads(path.read_text(encoding="utf-8"))
    assert content["hardware_fingerprint"] == MACHINE.fingerprint
    assert content["fingerprint_inputs"] == MACHINE.inputs


def test_record_rejects_file_of_other_machine(tmp_path):
    path = baseline_path(tmp_path, MACHINE.fingerprint)
    other = Machine("fedcba9876543210", MACHINE.inputs)
    record_baseline(path, other, measurement(), METADATA)

    with pytest.raises(ValueError, match="belongs to hardware fingerprint 'fedcba9876543210'"):
        record_baseline(path, MACHINE, measurement(), METADATA)


def test_load_missing_file_is_empty(tmp_path):
    assert load_baselines(tmp_path / "none.json") == {}


@pytest.mark.parametrize("text", ["{not json", "[]", '{"benchmarks": 3}'])
def test_load_rejects_corrupt_file(tmp_path, text):
    path = tmp_path / "corrupt.json"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ValueError, match=f"baseline file {path}"):
        load_baselines(path)


def test_mismatched_settings_names_each_difference():
    baseline = {"clock": "process_cpu_time", "batch_size": 1, "threads": 2}

    assert mismatched_settings(measurement(), baseline) == ["threads 2 in the baseline, 1 now"]
    assert mismatched_settings(measurement(threads=2), baseline) == []


def test_machine_from_environment_keeps_timing_packages():
    environment = {
        "hardware_fingerprint": "abc",
        "cpu_model": "Test CPU",
        "logical_cores": 4,
        "physical_cores": 2,
        "packages": {"numpy": "2.0", "pandas": "3.0", "onnxruntime": "1.0"},
    }

    machine = Machine.from_environment(environment)

    assert machine.fingerprint == "abc"
    assert machine.inputs["timing_packages"]["onnxruntime"] == "1.0"
    assert "pandas" not in machine.inputs["timing_packages"]
