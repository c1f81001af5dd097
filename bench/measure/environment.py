"""Describe the machine and software a benchmark ran on, without importing any measured framework.

Package versions come from installed distribution metadata (importlib.metadata), so recording the
torch or tensorflow version does not import torch or tensorflow.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger(__name__)

# Distributions whose versions are recorded. tensorflow-cpu and tensorflow are separate distributions
# of the same package, and either may be installed.
PACKAGES = (
    "numpy",
    "pandas",
    "scikit-learn",
    "onnx",
    "onnxruntime",
    "torch",
    "torchvision",
    "onnxscript",
    "tensorflow-cpu",
    "tensorflow",
    "keras",
    "tf2onnx",
    "tensorflow-datasets",
    "mlxtend",
)

# Libraries that run the timed models. Their versions go into the hardware fingerprint, because a new
# release can change the timings on the same hardware.
TIMING_PACKAGES = ("numpy", "onnxruntime", "torch", "tensorflow-cpu", "tensorflow")

# CPU features that ONNX Runtime, PyTorch and TensorFlow check when they select kernels. "amx" is True
# when any of Linux's amx_* flags (amx_tile, amx_bf16, amx_int8) is present.
CPU_FLAGS = ("avx", "avx2", "avx512f", "fma", "amx")

# Environment variables that change thread counts, kernels or devices, and with them the timings.
SPEED_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "CUDA_VISIBLE_DEVICES",
)

CPUINFO_PATH = Path("/proc/cpuinfo")
REPO_DIR = Path(__file__).resolve().parents[2]
GIT_TIMEOUT_S = 10.0
FINGERPRINT_HEX_CHARS = 16


def environment(repo_dir: str | Path | None = None) -> dict[str, Any]:
    """Return a JSON-serializable description of this machine, its Python packages and the repository.

    `repo_dir` is the git working tree whose commit is recorded, by default the one containing this
    package. git_commit and git_dirty are None where git or the repository is unavailable.
    """
    cpu_model, cpu_flags = cpu_model_and_flags()
    logical = logical_cores()
    physical = physical_cores()
    packages = package_versions(PACKAGES)
    git_commit, git_dirty = git_state(Path(repo_dir) if repo_dir is not None else REPO_DIR)
    return {
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "cpu_flags": cpu_flags,
        "logical_cores": logical,
        "physical_cores": physical,
        "usable_cores": usable_cores(),
        "memory_total_bytes": int(psutil.virtual_memory().total),
        "packages": packages,
        "git_commit": git_commit,
        "git_dirty": git_dirty,
        "env_vars": {name: os.environ.get(name) for name in SPEED_ENV_VARS},
        "hardware_fingerprint": hardware_fingerprint(cpu_model, logical, physical, packages),
    }


def physical_cores() -> int:
    """Return psutil's physical core count, falling back to os.cpu_count(), then 1."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def logical_cores() -> int:
    """Return psutil's logical CPU count, falling back to os.cpu_count(), then 1."""
    return psutil.cpu_count(logical=True) or os.cpu_count() or 1


def usable_cores() -> int | None:
    """Return how many logical CPUs this process may run on, or None without os.sched_getaffinity."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    return len(os.sched_getaffinity(0))


def parse_cpuinfo(text: str) -> tuple[str | None, set[str] | None]:
    """Return the first model name and flag set in Linux /proc/cpuinfo text, None for each one missing.

    x86 lists flags on a "flags" line and ARM on a "Features" line.
    """
    model: str | None = None
    flags: set[str] | None = None
    for line in text.splitlines():
        key, separator, value = line.partition(":")
        if not separator:
            continue
        key = key.strip()
        if model is None and key == "model name":
            model = value.strip() or None
        elif flags is None and key in ("flags", "Features"):
            flags = set(value.split())
    return model, flags


def cpu_model_and_flags() -> tuple[str | None, dict[str, bool | None]]:
    """Return the CPU model name and whether each CPU_FLAGS feature is present.

    Reads /proc/cpuinfo. Where it is missing (macOS, Windows) the model is platform.processor(), which
    may be only the architecture, and every flag is None because it is unknown.
    """
    try:
        model, flags = parse_cpuinfo(CPUINFO_PATH.read_text(encoding="utf-8", errors="replace"))
    except OSError as error:
        log.debug("failed to read %s: %s", CPUINFO_PATH, error)
        model, flags = None, None

    if model is None:
        model = platform.processor() or None
    return model, cpu_flag_presence(flags)


def cpu_flag_presence(flags: set[str] | None) -> dict[str, bool | None]:
    """Map each CPU_FLAGS name to True or False, or to None when the flags are unknown."""
    if flags is None:
        return {name: None for name in CPU_FLAGS}
    presence: dict[str, bool | None] = {name: name in flags for name in CPU_FLAGS}
    presence["amx"] = any(flag.startswith("amx") for flag in flags)
    return presence


def package_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    """Return the installed version of each distribution, or None if it is missing, without importing it."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(repo_dir: Path) -> tuple[str | None, bool | None]:
    """Return (HEAD commit, whether the tree has uncommitted or untracked changes) of `repo_dir`.

    Each part is None where git is not installed, `repo_dir` is not a working tree, or, for the commit,
    the repository has no commits yet.
    """
    commit = _run_git(["rev-parse", "HEAD"], repo_dir)
    status = _run_git(["status", "--porcelain"], repo_dir)
    dirty = None if status is None else bool(status.strip())
    return (commit.strip() if commit else None), dirty


def hardware_fingerprint(
    cpu_model: str | None,
    logical: int,
    physical: int,
    packages: dict[str, str | None],
) -> str:
    """Return a short sha256 hex digest of the CPU model, core counts and TIMING_PACKAGES versions.

    Runs with equal fingerprints had the same CPU model, core counts and timing-library versions. It
    ignores load, clock speed, memory and environment variables, so equal fingerprints alone do not make
    two timings comparable.
    """
    identity = {
        "cpu_model": cpu_model,
        "logical_cores": logical,
        "physical_cores": physical,
        "timing_packages": {name: packages.get(name) for name in TIMING_PACKAGES},
    }
    encoded = json.dumps(identity, sort_keys=True).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()[:FINGERPRINT_HEX_CHARS]


def _run_git(arguments: list[str], repo_dir: Path) -> str | None:
    """Return the stdout of `git ARGUMENTS` run in `repo_dir`, or None if git fails or is missing."""
    try:
        completed = subprocess.run(
            ["git", *arguments],
            cwd=repo_dir,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        log.debug("git %s in %s failed: %s", " ".join(arguments), repo_dir, error)
        return None
    return completed.stdout
