"""Tests for bench.measure.peak: the formula peak, the SGEMM ceiling, the reference and efficiency math."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from bench.measure import peak
from bench.measure.peak import (
    achieved_flops,
    choose_reference,
    compute_peak,
    fma_pipes_for,
    formula_peak,
    fp32_lanes_for,
    fraction_of_peak,
    machine_formula_peak,
    measured_sgemm_peak,
    parse_cpu_vendor_family,
    parse_cpuinfo_mhz,
    read_clock_hz,
    sgemm_ceiling,
)

ALL_FLAGS = {"avx": True, "avx2": True, "avx512f": True, "fma": True, "amx": False}
AVX2_FLAGS = {"avx": True, "avx2": True, "avx512f": False, "fma": True, "amx": False}
AVX_ONLY_FLAGS = {"avx": True, "avx2": False, "avx512f": False, "fma": False, "amx": False}
SSE_FLAGS = {"avx": False, "avx2": False, "avx512f": False, "fma": False, "amx": False}
UNKNOWN_FLAGS = {"avx": None, "avx2": None, "avx512f": None, "fma": None, "amx": None}

CPUINFO_ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9654 96-Core Processor
cpu MHz\t\t: 2396.405
flags\t\t: fpu avx avx2 fma avx512f
"""


# --- formula_peak ---


def test_formula_peak_hand_computed() -> None:
    # 4 cores x 3.0 GHz x 2 pipes x 16 lanes x 2 FLOP = 768 GFLOP/s.
    result = formula_peak(4, 3.0e9, 2, 16)

    assert result["flops"] == pytest.approx(768e9)
    assert result["reason"] is None


def test_formula_peak_one_core_sse() -> None:
    # 1 core x 2.5 GHz x 1 pipe x 4 lanes x 2 FLOP = 20 GFLOP/s.
    assert formula_peak(1, 2.5e9, 1, 4)["flops"] == pytest.approx(20e9)


def test_formula_peak_accepts_numpy_numbers() -> None:
    assert formula_peak(np.int64(2), np.float64(1e9), 2, 8)["flops"] == pytest.approx(64e9)


def test_formula_peak_missing_inputs() -> None:
    result = formula_peak(None, 3.0e9, None, 16)

    assert result["flops"] is None
    assert "cores" in result["reason"]
    assert "fma_pipes" in result["reason"]
    assert "clock_hz" not in result["reason"]


@pytest.mark.parametrize(
    ("cores", "clock_hz", "pipes", "lanes", "bad"),
    [
        (0, 3e9, 2, 16, "cores"),
        (4, -1.0, 2, 16, "clock_hz"),
        (4, math.nan, 2, 16, "clock_hz"),
        (4, 3e9, True, 16, "fma_pipes"),
        (4, 3e9, 2, "16", "fp32_lanes"),
    ],
)
def test_formula_peak_rejects_invalid_input(cores, clock_hz, pipes, lanes, bad) -> None:
    with pytest.raises(ValueError, match=bad):
        formula_peak(cores, clock_hz, pipes, lanes)


# --- lanes and pipes from the CPU flags ---


@pytest.mark.parametrize(
    ("machine", "flags", "vendor", "family", "lanes"),
    [
        ("x86_64", ALL_FLAGS, "GenuineIntel", 6, 16),
        ("x86_64", ALL_FLAGS, "AuthenticAMD", 25, 8),  # Zen 4 splits 512-bit instructions
        ("x86_64", ALL_FLAGS, "AuthenticAMD", 26, 16),
        ("x86_64", ALL_FLAGS, None, None, 16),
        ("x86_64", AVX2_FLAGS, "AuthenticAMD", 25, 8),
        ("x86_64", AVX_ONLY_FLAGS, None, None, 8),
        ("AMD64", SSE_FLAGS, None, None, 4),
        ("x86_64", UNKNOWN_FLAGS, None, None, None),
        ("aarch64", SSE_FLAGS, None, None, None),
    ],
)
def test_fp32_lanes_from_flags(machine, flags, vendor, family, lanes) -> None:
    value, source = fp32_lanes_for(machine, flags, vendor, family)

    assert value == lanes
    assert source


def test_fp32_lanes_explains_zen4() -> None:
    _lanes, source = fp32_lanes_for("x86_64", ALL_FLAGS, "AuthenticAMD", 25)

    assert "Zen 4" in source


def test_fma_pipes_assumption_recorded() -> None:
    pipes, source = fma_pipes_for("x86_64", ALL_FLAGS)

    assert pipes == 2
    assert "assumption" in source


@pytest.mark.parametrize(
    ("machine", "flags", "pipes"),
    [("x86_64", AVX_ONLY_FLAGS, 1), ("x86_64", UNKNOWN_FLAGS, None), ("aarch64", ALL_FLAGS, None)],
)
def test_fma_pipes_other_cases(machine, flags, pipes) -> None:
    assert fma_pipes_for(machine, flags)[0] == pipes


# --- /proc/cpuinfo and the clock ---


def test_parse_cpu_vendor_family() -> None:
    assert parse_cpu_vendor_family(CPUINFO_ZEN4) == ("AuthenticAMD", 25)
    assert parse_cpu_vendor_family("Features\t: fp asimd\n") == (None, None)


def test_parse_cpuinfo_mhz() -> None:
    assert parse_cpuinfo_mhz(CPUINFO_ZEN4) == pytest.approx(2396.405)
    assert parse_cpuinfo_mhz("cpu MHz\t: unknown\n") is None
    assert parse_cpuinfo_mhz("") is None


def _no_psutil_clock(monkeypatch) -> None:
    monkeypatch.setattr(peak.psutil, "cpu_freq", lambda: SimpleNamespace(current=0.0, min=0.0, max=0.0))


def test_clock_from_psutil(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(peak.psutil, "cpu_freq", lambda: SimpleNamespace(current=2000.0, min=800.0, max=3500.0))

    clock_hz, source = read_clock_hz(tmp_path / "none", tmp_path / "none")

    assert clock_hz == pytest.approx(3.5e9)
    assert "psutil" in source


def test_clock_from_cpufreq_file(monkeypatch, tmp_path) -> None:
    _no_psutil_clock(monkeypatch)
    cpufreq = tmp_path / "cpuinfo_max_freq"
    cpufreq.write_text("3700000\n")

    clock_hz, source = read_clock_hz(cpufreq, tmp_path / "none")

    assert clock_hz == pytest.approx(3.7e9)
    assert "cpuinfo_max_freq" in source


def test_clock_from_cpuinfo_notes_turbo(monkeypatch, tmp_path) -> None:
    _no_psutil_clock(monkeypatch)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO_ZEN4)

    clock_hz, source = read_clock_hz(tmp_path / "none", cpuinfo)

    assert clock_hz == pytest.approx(2396.405e6)
    assert "cpu MHz" in source
    assert "turbo is not counted" in source


def test_clock_unknown(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(peak.psutil, "cpu_freq", lambda: None)

    clock_hz, source = read_clock_hz(tmp_path / "none", tmp_path / "none")

    assert clock_hz is None
    assert "no clock" in source


# --- this machine ---


def test_machine_formula_peak_records_inputs() -> None:
    result = machine_formula_peak(1)

    assert result["formula"] == "cores x clock_hz x fma_pipes x fp32_lanes x 2"
    assert result["inputs"]["cores"] == 1
    assert set(result["sources"]) == set(result["inputs"])
    inputs = result["inputs"]
    if result["flops"] is None:
        assert result["reason"]
    else:
        product = inputs["cores"] * inputs["clock_hz"] * inputs["fma_pipes"] * inputs["fp32_lanes"] * 2
        assert result["flops"] == pytest.approx(product)
        assert result["machine_flops"] >= result["flops"]


def test_machine_formula_caps_cores_at_physical() -> None:
    result = machine_formula_peak(10_000)

    assert result["inputs"]["cores"] <= result["inputs"]["machine_cores"]


# --- the SGEMM ceiling ---


def test_sgemm_ceiling_in_process() -> None:
    result = sgemm_ceiling(n=64, max_repeats=3, budget_s=1.0)

    assert result["flops"] > 0
    assert result["n"] == 64
    assert 1 <= result["repeats"] <= 3
    assert result["best_seconds"] <= result["median_seconds"]
    assert isinstance(result["blas"], list)


def test_sgemm_ceiling_rejects_invalid_size() -> None:
    with pytest.raises(ValueError, match="n and max_repeats"):
        sgemm_ceiling(n=0)


def test_measured_sgemm_peak_in_child() -> None:
    result = measured_sgemm_peak(1, n=128)

    assert result["reason"] is None
    assert result["flops"] > 0
    assert result["threads"] == 1
    assert result["n"] == 128
    assert result["seconds"] > 0
    # The child's BLAS runs the one requested thread, so there is no note about a mismatch.
    assert "note" not in result
    assert json.loads(json.dumps(result)) == result


def test_measured_sgemm_peak_timeout_is_reported() -> None:
    result = measured_sgemm_peak(1, n=128, timeout_s=0.001)

    assert result["flops"] is None
    assert "failed" in result["reason"]


# --- the reference ---


def test_reference_is_formula_when_above_sgemm() -> None:
    reference, reason = choose_reference({"flops": 200e9}, {"flops": 150e9})

    assert reference == "formula"
    assert reason


def test_reference_stays_formula_when_sgemm_is_above_it() -> None:
    # A load-dependent measurement must not switch the reference between runs; the reason notes turbo.
    reference, reason = choose_reference({"flops": 150e9}, {"flops": 200e9})

    assert reference == "formula"
    assert "turbo" in reason


def test_reference_falls_back_to_sgemm() -> None:
    reference, reason = choose_reference({"flops": None, "reason": "unknown formula inputs: clock_hz"}, {"flops": 5e9})

    assert reference == "sgemm"
    assert "clock_hz" in reason


def test_reference_none_when_both_missing() -> None:
    reference, reason = choose_reference({"flops": None, "reason": "a"}, {"flops": None, "reason": "b"})

    assert reference is None
    assert "neither" in reason


def test_compute_peak_without_sgemm() -> None:
    result = compute_peak(1, measure_sgemm=False)

    assert result["threads"] == 1
    assert result["sgemm"]["flops"] is None
    assert result["reference"] in ("formula", None)
    assert json.loads(json.dumps(result)) == result


def test_compute_peak_rejects_zero_threads() -> None:
    with pytest.raises(ValueError, match="threads"):
        compute_peak(0)


# --- efficiency ---


def test_achieved_flops_hand_computed() -> None:
    # LeNet-5's 416,520 dense MACs per sample at 25,000 samples/s: 2 x 416,520 x 25,000 FLOP/s.
    assert achieved_flops(416_520, 25_000.0) == pytest.approx(20.826e9)


def test_achieved_flops_rejects_negative() -> None:
    with pytest.raises(ValueError, match="samples_per_s"):
        achieved_flops(416_520, -1.0)


def test_fraction_of_peak() -> None:
    assert fraction_of_peak(50e9, 200e9) == pytest.approx(0.25)
    assert fraction_of_peak(50e9, None) is None


def test_fraction_of_peak_rejects_zero_peak() -> None:
    with pytest.raises(ValueError, match="peak_flops"):
        fraction_of_peak(50e9, 0.0)
