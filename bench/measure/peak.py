"""Peak FP32 FLOP/s of this machine, the denominator of compute efficiency.

Two estimates are recorded side by side:

- The formula peak: cores x clock_hz x fma_pipes x fp32_lanes x 2, because one fused multiply-add is two
  floating-point operations. Each input is recorded with where it came from. The clock is the maximum
  or nominal clock the OS reports, so a core that runs above it (turbo) can beat the formula.
- The SGEMM ceiling: the best rate of numpy float32 matrix products, measured in a child process whose
  BLAS library uses the run's thread count. It is what a tuned dense kernel reaches here and now, so it
  is lower on a loaded machine.

`compute_peak` returns both and names the `reference` that fractions use: the formula where all of its
inputs are known and the SGEMM ceiling is below it, else the SGEMM ceiling. Achieved FLOP/s counts dense MACs, the multiply-adds of every
weight, zero or not (bench.onnx_tools.count_macs, per sample), because dense kernels execute all of them.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench.measure.environment import CPUINFO_PATH, cpu_model_and_flags, physical_cores, usable_cores

log = logging.getLogger(__name__)

FLOP_PER_FMA = 2
FORMULA = "cores x clock_hz x fma_pipes x fp32_lanes x 2"

# FP32 lanes of one vector register: 512-bit AVX-512, 256-bit AVX, 128-bit SSE.
AVX512_LANES = 16
AVX_LANES = 8
SSE_LANES = 4
X86_64_MACHINES = ("x86_64", "amd64")
# AMD family 19h (25) covers Zen 3 and Zen 4. Only Zen 4 has AVX-512, and it executes each 512-bit
# instruction on a pair of 256-bit units, so per FMA pipe it does the work of 8 FP32 lanes.
AMD_VENDOR = "AuthenticAMD"
AMD_ZEN4_FAMILY = 0x19

CPUFREQ_MAX_PATH = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")

# The SGEMM ceiling: n x n float32 products, a warmup product, then up to SGEMM_MAX_REPEATS timed ones
# or SGEMM_BUDGET_S seconds of them. n = 1024 takes about 20 ms per product at 100 GFLOP/s.
SGEMM_SIZE = 1024
SGEMM_MAX_REPEATS = 50
SGEMM_BUDGET_S = 1.0
SGEMM_TIMEOUT_S = 60.0
# Thread-count variables of the BLAS libraries numpy may be linked against (OpenBLAS, MKL, BLIS, and
# OpenMP builds). They are read when the library loads, so they must be set before numpy is imported.
BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


# --- the formula ---


def formula_peak(
    cores: int | None, clock_hz: float | None, fma_pipes: int | None, fp32_lanes: int | None
) -> dict[str, Any]:
    """Compute the peak FP32 FLOP/s as cores x clock_hz x fma_pipes x fp32_lanes x 2.

    Returns {"flops": FLOP/s, "reason": None}, or {"flops": None, "reason": ...} naming the inputs that
    are None. Raises ValueError for an input that is not a positive finite number.
    """
    inputs = {"cores": cores, "clock_hz": clock_hz, "fma_pipes": fma_pipes, "fp32_lanes": fp32_lanes}
    missing = [name for name, value in inputs.items() if value is None]
    for name, value in inputs.items():
        if value is not None and not _is_positive(value):
            raise ValueError(f"formula_peak: {name} must be a positive finite number, got {value!r}")
    if missing:
        return {"flops": None, "reason": f"unknown formula inputs: {', '.join(missing)}"}
    return {"flops": float(cores * clock_hz * fma_pipes * fp32_lanes * FLOP_PER_FMA), "reason": None}


def fp32_lanes_for(
    machine: str, cpu_flags: dict[str, bool | None], vendor: str | None = None, family: int | None = None
) -> tuple[int | None, str]:
    """Return the FP32 lanes one FMA pipe processes per cycle, and where the number came from.

    `cpu_flags` maps avx, avx2, avx512f and fma to presence, as bench.measure.environment records them.
    Returns (None, reason) for a machine other than x86-64 or for unknown flags.
    """
    if machine.lower() not in X86_64_MACHINES:
        return None, f"no lane rule for machine {machine!r}, only for x86-64"
    if cpu_flags.get("avx512f") is None:
        return None, "CPU flags unknown (no /proc/cpuinfo)"
    if cpu_flags["avx512f"]:
        if vendor == AMD_VENDOR and family == AMD_ZEN4_FAMILY:
            return AVX_LANES, (
                "avx512f on AMD family 19h (Zen 4): 512-bit instructions run on two 256-bit halves, so 8 per pipe"
            )
        return AVX512_LANES, "avx512f: 512-bit vectors"
    if cpu_flags.get("avx2") or cpu_flags.get("fma") or cpu_flags.get("avx"):
        return AVX_LANES, "avx/avx2/fma without avx512f: 256-bit vectors"
    return SSE_LANES, "no avx flag: 128-bit SSE vectors"


def fma_pipes_for(machine: str, cpu_flags: dict[str, bool | None]) -> tuple[int | None, str]:
    """Return the FMA pipes per core assumed for the formula, and the assumption behind the number."""
    if machine.lower() not in X86_64_MACHINES:
        return None, f"no FMA-pipe rule for machine {machine!r}, only for x86-64"
    if cpu_flags.get("fma") is None:
        return None, "CPU flags unknown (no /proc/cpuinfo)"
    if cpu_flags["fma"]:
        # NOTE: an assumption, not read from the CPU. Some AVX-512 parts have one 512-bit FMA unit per
        # core, and early Zen cores split 256-bit FMAs over 128-bit units. On those the formula is 2x too high.
        return 2, "assumption: 2 FMA pipes per x86-64 core with the fma flag, as on Intel since Haswell and AMD Zen"
    return 1, "no fma flag: one multiply and one add per cycle, counted as 1 pipe of 2 FLOP"


def parse_cpu_vendor_family(text: str) -> tuple[str | None, int | None]:
    """Return the first vendor_id and cpu family in Linux /proc/cpuinfo text, None for each one missing."""
    vendor: str | None = None
    family: int | None = None
    for line in text.splitlines():
        key, separator, value = line.partition(":")
        if not separator:
            continue
        key, value = key.strip(), value.strip()
        if vendor is None and key == "vendor_id":
            vendor = value or None
        elif family is None and key == "cpu family" and value.isdigit():
            family = int(value)
    return vendor, family


def parse_cpuinfo_mhz(text: str) -> float | None:
    """Return the first "cpu MHz" value in Linux /proc/cpuinfo text, or None."""
    for line in text.splitlines():
        key, separator, value = line.partition(":")
        if separator and key.strip() == "cpu MHz":
            try:
                return float(value)
            except ValueError:
                return None
    return None


def read_clock_hz(cpufreq_path: Path = CPUFREQ_MAX_PATH, cpuinfo_path: Path = CPUINFO_PATH) -> tuple[float | None, str]:
    """Return the CPU clock for the formula in Hz, and where it came from.

    Tries psutil.cpu_freq().max, then the cpufreq `cpuinfo_max_freq` file (kHz), then the "cpu MHz"
    line of /proc/cpuinfo. Whether a maximum includes turbo depends on the cpufreq driver.
    """
    frequency = psutil.cpu_freq() if hasattr(psutil, "cpu_freq") else None
    if frequency is not None and frequency.max and frequency.max > 0:
        return frequency.max * 1e6, "psutil.cpu_freq().max (maximum frequency reported by the OS)"

    try:
        khz = float(cpufreq_path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError) as error:
        log.debug("no clock from %s: %s", cpufreq_path, error)
    else:
        if khz > 0:
            return khz * 1e3, f"{cpufreq_path} (maximum frequency of the cpufreq driver)"

    try:
        mhz = parse_cpuinfo_mhz(cpuinfo_path.read_text(encoding="utf-8", errors="replace"))
    except OSError as error:
        log.debug("no clock from %s: %s", cpuinfo_path, error)
        mhz = None
    if mhz is not None and mhz > 0:
        return mhz * 1e6, (
            f'"cpu MHz" of {cpuinfo_path}: the current clock of CPU 0 (on a VM often the nominal clock), '
            "not necessarily the maximum; turbo is not counted"
        )
    return None, "no clock found (psutil, cpufreq and /proc/cpuinfo have none)"


def machine_formula_peak(threads: int) -> dict[str, Any]:
    """Compute the formula peak of this machine for a run with `threads` threads, with each input's source.

    `flops` counts the cores the run uses (`threads`, capped at the physical and the usable cores) and
    `machine_flops` all physical cores.
    """
    machine = platform.machine()
    _model, cpu_flags = cpu_model_and_flags()
    try:
        vendor, family = parse_cpu_vendor_family(CPUINFO_PATH.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        vendor, family = None, None

    physical = physical_cores()
    usable = usable_cores()
    cores = min(threads, physical, usable) if usable is not None else min(threads, physical)
    clock_hz, clock_source = read_clock_hz()
    lanes, lanes_source = fp32_lanes_for(machine, cpu_flags, vendor, family)
    pipes, pipes_source = fma_pipes_for(machine, cpu_flags)

    run_peak = formula_peak(cores, clock_hz, pipes, lanes)
    machine_peak = formula_peak(physical, clock_hz, pipes, lanes)
    return {
        "flops": run_peak["flops"],
        "machine_flops": machine_peak["flops"],
        "formula": FORMULA,
        "inputs": {"cores": cores, "machine_cores": physical, "clock_hz": clock_hz, "fma_pipes": pipes, "fp32_lanes": lanes},
        "sources": {
            "cores": f"{threads} threads, capped at {physical} physical cores"
            + (f" and {usable} usable CPUs" if usable is not None else ""),
            "machine_cores": "physical cores (psutil)",
            "clock_hz": clock_source,
            "fma_pipes": pipes_source,
            "fp32_lanes": lanes_source,
        },
        "cpu": {"machine": machine, "vendor": vendor, "family": family, "flags": cpu_flags},
        "reason": run_peak["reason"],
    }


# --- the SGEMM ceiling ---


def sgemm_ceiling(n: int = SGEMM_SIZE, max_repeats: int = SGEMM_MAX_REPEATS, budget_s: float = SGEMM_BUDGET_S) -> dict[str, Any]:
    """Time float32 n x n matrix products in this process with numpy's BLAS as configured, and return the best rate.

    One warmup product, then timed products until `max_repeats` or until `budget_s` seconds have
    passed (at least one). `flops` is 2 n^3 / the fastest product's seconds.
    """
    import numpy as np

    if n < 1 or max_repeats < 1 or budget_s <= 0:
        raise ValueError(f"sgemm_ceiling: n and max_repeats must be >= 1 and budget_s > 0, got {n}, {max_repeats}, {budget_s}")
    generator = np.random.default_rng(0)
    left = generator.standard_normal((n, n), dtype=np.float32)
    right = generator.standard_normal((n, n), dtype=np.float32)
    np.matmul(left, right)

    seconds: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(seconds) < max_repeats and (not seconds or time.perf_counter() < deadline):
        start = time.perf_counter()
        np.matmul(left, right)
        seconds.append(time.perf_counter() - start)

    best = min(seconds)
    return {
        "flops": 2.0 * n**3 / best,
        "n": n,
        "repeats": len(seconds),
        "best_seconds": best,
        "median_seconds": float(np.median(seconds)),
        "blas": blas_info(),
    }


def blas_info() -> list[dict[str, Any]]:
    """Describe the BLAS libraries loaded in this process: threadpoolctl's view, else numpy's build config."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        import numpy as np

        config = np.show_config(mode="dicts") or {}
        blas = (config.get("Build Dependencies") or {}).get("blas") or {}
        return [{"name": blas.get("name"), "version": blas.get("version"), "num_threads": None}]
    keys = ("internal_api", "prefix", "version", "num_threads", "threading_layer", "architecture")
    return [{key: pool.get(key) for key in keys} for pool in threadpool_info() if pool.get("user_api") == "blas"]


def measured_sgemm_peak(threads: int, n: int = SGEMM_SIZE, timeout_s: float = SGEMM_TIMEOUT_S) -> dict[str, Any]:
    """Measure the SGEMM ceiling in a child process whose BLAS runs `threads` threads.

    The thread variables must be set before numpy loads its BLAS, hence the child. Nothing is raised:
    on failure `flops` is None and `reason` contains the error.
    """
    env = dict(os.environ)
    env.update({name: str(threads) for name in BLAS_THREAD_VARIABLES})
    source_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(part for part in (source_root, env.get("PYTHONPATH")) if part)
    code = f"import json; from bench.measure.peak import sgemm_ceiling; print(json.dumps(sgemm_ceiling({int(n)})))"
    result: dict[str, Any] = {"flops": None, "n": n, "threads": threads, "thread_variables": list(BLAS_THREAD_VARIABLES)}

    start = time.perf_counter()
    try:
        completed = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        log.warning("SGEMM ceiling with %d threads failed: %s", threads, error)
        return {**result, "reason": f"the SGEMM child process failed: {error}"}
    result["seconds"] = time.perf_counter() - start
    if completed.returncode != 0:
        tail = completed.stderr.strip().splitlines()[-1:] or ["no output"]
        log.warning("SGEMM ceiling with %d threads failed: exit code %d: %s", threads, completed.returncode, tail[0])
        return {**result, "reason": f"the SGEMM child process exited with code {completed.returncode}: {tail[0]}"}

    try:
        measured = json.loads((completed.stdout.strip().splitlines() or [""])[-1])
    except ValueError as error:
        log.warning("SGEMM ceiling with %d threads failed: invalid child output: %s", threads, error)
        return {**result, "reason": f"the SGEMM child process printed no valid JSON result: {error}"}
    result.update(measured)
    result["reason"] = None
    blas_threads = {pool.get("num_threads") for pool in measured.get("blas", [])} - {None}
    if blas_threads and blas_threads != {threads}:
        result["note"] = f"numpy's BLAS ran {sorted(blas_threads)} threads, not the requested {threads}"
    log.info(
        "SGEMM ceiling: %.1f GFLOP/s FP32 with %d threads (n=%d, best of %d products)",
        result["flops"] / 1e9,
        threads,
        n,
        result["repeats"],
    )
    return result


# --- the reference and efficiency ---


def choose_reference(formula: dict[str, Any], sgemm: dict[str, Any]) -> tuple[str | None, str]:
    """Name the peak that fractions use ("formula" or "sgemm", None for neither) and give the reason.

    The formula wins wherever its inputs are all known, because it depends only on the machine: a
    measured ceiling moves with the load at the moment it was taken, and fractions from two runs must
    be comparable. The SGEMM ceiling is the fallback, and is recorded either way. Where it is above the
    formula, the cores ran above the recorded clock (turbo), and the reason states it.
    """
    formula_flops, sgemm_flops = formula.get("flops"), sgemm.get("flops")
    if formula_flops:
        if sgemm_flops and sgemm_flops > formula_flops:
            return "formula", (
                f"the formula's inputs are all known; the measured SGEMM ceiling ({sgemm_flops / 1e9:.1f} GFLOP/s) "
                f"is above it ({formula_flops / 1e9:.1f} GFLOP/s), so the cores ran above the recorded clock (turbo)"
            )
        return "formula", "the formula's inputs are all known"
    if sgemm_flops:
        return "sgemm", f"the formula is unavailable ({formula.get('reason')}), so the measured SGEMM ceiling is used"
    return None, f"neither peak is available: formula: {formula.get('reason')}; SGEMM: {sgemm.get('reason')}"


def compute_peak(threads: int, measure_sgemm: bool = True) -> dict[str, Any]:
    """Return this machine's peak FP32 FLOP/s for `threads` threads: the formula, the SGEMM ceiling and the reference.

    `reference` names the entry whose `flops` fractions of peak divide by.
    """
    if threads < 1:
        raise ValueError(f"compute_peak: threads must be >= 1, got {threads}")
    formula = machine_formula_peak(threads)
    sgemm = measured_sgemm_peak(threads) if measure_sgemm else {"flops": None, "reason": "not measured"}
    reference, reference_reason = choose_reference(formula, sgemm)
    return {
        "threads": threads,
        "reference": reference,
        "reference_reason": reference_reason,
        "formula": formula,
        "sgemm": sgemm,
    }


def achieved_flops(macs_per_sample: float, samples_per_s: float) -> float:
    """Return the FLOP/s a runtime achieved: 2 x MACs per sample x samples/s (one MAC is 2 FLOP)."""
    for name, value in (("macs_per_sample", macs_per_sample), ("samples_per_s", samples_per_s)):
        if not (_is_number(value) and value >= 0):
            raise ValueError(f"achieved_flops: {name} must be a finite number >= 0, got {value!r}")
    return float(FLOP_PER_FMA * macs_per_sample * samples_per_s)


def fraction_of_peak(achieved: float, peak_flops: float | None) -> float | None:
    """Return achieved / peak_flops, or None when the peak is unknown."""
    if peak_flops is None:
        return None
    if not _is_positive(peak_flops):
        raise ValueError(f"fraction_of_peak: peak_flops must be a positive finite number, got {peak_flops!r}")
    return float(achieved / peak_flops)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_positive(value: Any) -> bool:
    return _is_number(value) and value > 0
