"""Tests for bench.measure.environment and bench.measure.memory."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from bench.measure.environment import (
    CPU_FLAGS,
    PACKAGES,
    SPEED_ENV_VARS,
    cpu_flag_presence,
    environment,
    git_state,
    hardware_fingerprint,
    parse_cpuinfo,
    physical_cores,
)
from bench.measure.memory import peak_rss_bytes

REPO_ROOT = Path(__file__).resolve().parents[1]

ENVIRONMENT_KEYS = {
    "python_version",
    "python_implementation",
    "platform",
    "machine",
    "cpu_model",
    "cpu_flags",
    "logical_cores",
    "physical_cores",
    "usable_cores",
    "memory_total_bytes",
    "packages",
    "git_commit",
    "git_dirty",
    "env_vars",
    "hardware_fingerprint",
}

CPUINFO_X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx avx2 fma avx512f amx_bf16 amx_tile

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx avx2 fma avx512f amx_bf16 amx_tile
"""

CPUINFO_ARM = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes crc32
CPU implementer\t: 0x41
"""


# --- environment() ---


def test_environment_has_keys() -> None:
    info = environment()

    assert set(info) == ENVIRONMENT_KEYS
    assert set(info["packages"]) == set(PACKAGES)
    assert set(info["cpu_flags"]) == set(CPU_FLAGS)
    assert set(info["env_vars"]) == set(SPEED_ENV_VARS)


def test_environment_is_json_serializable() -> None:
    info = environment()

    assert json.loads(json.dumps(info)) == info


def test_environment_values() -> None:
    info = environment()

    assert info["python_version"].startswith(".".join(str(part) for part in sys.version_info[:3]))
    assert info["packages"]["numpy"] == __import__("numpy").__version__
    assert info["logical_cores"] >= info["physical_cores"] >= 1
    assert info["memory_total_bytes"] > 0
    assert len(info["hardware_fingerprint"]) == 16
    int(info["hardware_fingerprint"], 16)


def test_environment_records_env_vars(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)

    env_vars = environment()["env_vars"]

    assert env_vars["OMP_NUM_THREADS"] == "3"
    assert env_vars["MKL_NUM_THREADS"] is None


def test_missing_package_version_is_none() -> None:
    from bench.measure.environment import package_versions

    assert package_versions(("numpy", "no-such-distribution-twinbench")) == {
        "numpy": __import__("numpy").__version__,
        "no-such-distribution-twinbench": None,
    }


def test_environment_imports_no_framework() -> None:
    code = (
        "import sys, numpy, bench.measure\n"
        "bench.measure.environment()\n"
        "bench.measure.classification_metrics(numpy.array([0, 1]), numpy.array([0, 1]), 2)\n"
        "loaded = [name for name in ('torch', 'tensorflow', 'keras') if name in sys.modules]\n"
        "assert not loaded, loaded\n"
    )

    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )

    assert completed.returncode == 0, completed.stderr


# --- CPU ---


def test_parse_cpuinfo_x86() -> None:
    model, flags = parse_cpuinfo(CPUINFO_X86)

    assert model == "Intel(R) Xeon(R) Platinum 8480+"
    assert cpu_flag_presence(flags) == {"avx": True, "avx2": True, "avx512f": True, "fma": True, "amx": True}


def test_parse_cpuinfo_arm() -> None:
    model, flags = parse_cpuinfo(CPUINFO_ARM)

    assert model is None
    assert "asimd" in flags
    assert cpu_flag_presence(flags) == {name: False for name in CPU_FLAGS}


def test_unknown_flags_are_none() -> None:
    assert cpu_flag_presence(None) == {name: None for name in CPU_FLAGS}


def test_physical_cores_is_positive_int() -> None:
    cores = physical_cores()

    assert isinstance(cores, int)
    assert cores >= 1


# --- fingerprint ---


def test_fingerprint_is_stable() -> None:
    packages = {"numpy": "2.0.0", "onnxruntime": "1.20.0", "pandas": "2.2.0"}

    first = hardware_fingerprint("CPU X", 8, 4, packages)

    assert first == hardware_fingerprint("CPU X", 8, 4, dict(packages))
    assert len(first) == 16


def test_fingerprint_tracks_its_inputs() -> None:
    packages = {"numpy": "2.0.0", "onnxruntime": "1.20.0", "pandas": "2.2.0"}
    base = hardware_fingerprint("CPU X", 8, 4, packages)

    assert hardware_fingerprint("CPU Y", 8, 4, packages) != base
    assert hardware_fingerprint("CPU X", 16, 4, packages) != base
    assert hardware_fingerprint("CPU X", 8, 8, packages) != base
    assert hardware_fingerprint("CPU X", 8, 4, {**packages, "onnxruntime": "1.21.0"}) != base
    # pandas does not time models, so its version is left out.
    assert hardware_fingerprint("CPU X", 8, 4, {**packages, "pandas": "3.0.0"}) == base


# --- git ---


def test_git_state_outside_repository(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))

    assert git_state(tmp_path) == (None, None)
    info = environment(repo_dir=tmp_path)
    assert info["git_commit"] is None
    assert info["git_dirty"] is None


def test_git_state_missing_directory(tmp_path) -> None:
    assert git_state(tmp_path / "missing") == (None, None)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_state_of_repository(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    git += ["-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "file.txt").write_text("one\n")
    subprocess.run([*git, "add", "file.txt"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], cwd=tmp_path, check=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, check=True, capture_output=True, text=True
    ).stdout.strip()

    assert git_state(tmp_path) == (head, False)

    (tmp_path / "file.txt").write_text("two\n")
    assert git_state(tmp_path) == (head, True)


# --- memory ---


def test_peak_rss_covers_current_rss() -> None:
    current_bytes = psutil.Process().memory_info().rss
    peak_bytes = peak_rss_bytes()

    # A peak read in KiB but not scaled to bytes would be about 1000 times too small. The margin is there
    # because on Linux ru_maxrss was seen a few hundred KiB below psutil's current RSS (/proc VmRSS).
    assert peak_bytes >= 0.9 * current_bytes
    assert peak_bytes > 1_000_000
