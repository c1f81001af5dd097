"""The fairness manifest: everything that must be equal, or known, to compare two frameworks' numbers.

A manifest has run-level parts, the same for every cell of a run: machine, packages, git state, thread
rule, timing and batch settings, dataset checksums and compute peak. It also has one entry per framework
with the settings its backend's `configure()` returned and its library versions. A cell's record gets
the run-level parts plus its own framework's entry. `python -m bench env` prints the run-level parts plus
one entry per installed framework, each collected in its own child process.

Framework settings are passed through as `configure()` returns them. They are grouped by their names
(threads, TF32, oneDNN, compiler, other) so that a reader finds them. Every key lands in exactly one group.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.measure.environment import SPEED_ENV_VARS
from bench.spec import Profile

log = logging.getLogger(__name__)

SETTINGS_FUNCTION = "bench.manifest:framework_settings"
FRAMEWORK_TIMEOUT_S = 300.0
# The module whose presence means a framework is installed, checked without importing it.
FRAMEWORK_MODULES = {"torch": "torch", "tf": "tensorflow"}
# Environment variables of the cell processes recorded in the manifest: the speed-relevant ones plus
# the BLAS thread variable the runner sets.
CELL_ENV_VARS = (*SPEED_ENV_VARS, "OPENBLAS_NUM_THREADS")
# A framework setting goes to the first group with a name part it contains (lowercase), else to "other".
SETTING_GROUPS = (
    ("threads", ("thread",)),
    ("tf32", ("tf32", "matmul_precision")),
    ("onednn", ("onednn", "mkldnn")),
    ("compiler", ("compile", "xla", "jit")),
)
# Every framework and ONNX Runtime runs one inter-op thread (the backends' configure() and
# bench.onnx_runtime.create_session set it).
INTER_OP_THREADS = 1


def framework_settings(framework: str, threads: int, backend_path: str | None = None) -> dict[str, Any]:
    """Configure `framework`'s backend as a cell does and return its settings and library versions.

    Runs in a child process (bench.worker), because it imports the framework. The settings are the
    `fairness` dict a cell records: configure()'s output plus the ONNX Runtime thread counts.
    """
    from bench.backend import load_backend

    backend = load_backend(framework, backend_path)
    settings = backend.configure(threads, seed=0)
    return {"fairness": {**settings, **onnxruntime_threads(threads)}, "versions": backend.versions()}


def onnxruntime_threads(threads: int) -> dict[str, int]:
    """Return the ONNX Runtime thread counts of a cell (bench.onnx_runtime.create_session sets them)."""
    return {"onnxruntime_intra_op_threads": threads, "onnxruntime_inter_op_threads": INTER_OP_THREADS}


def group_settings(settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Split a framework's settings into the SETTING_GROUPS and "other", keeping every key and value."""
    groups: dict[str, dict[str, Any]] = {name: {} for name, _parts in SETTING_GROUPS}
    groups["other"] = {}
    for key, value in settings.items():
        lowered = key.lower()
        group = next((name for name, parts in SETTING_GROUPS if any(part in lowered for part in parts)), "other")
        groups[group][key] = value
    return groups


def framework_entry(status: str, fairness: Mapping[str, Any] | None, versions: Mapping[str, Any] | None, reason: str | None = None) -> dict[str, Any]:
    """Build one framework's manifest entry from the settings and versions its backend returned."""
    entry: dict[str, Any] = {"status": status}
    if reason is not None:
        entry["reason"] = reason
    entry["versions"] = dict(versions) if versions else None
    if fairness:
        entry.update(group_settings(fairness))
    return entry


def dataset_checksums(provenance: Mapping[str, Any]) -> dict[str, Any]:
    """Return the dataset's name, source, release and the sha256 and size of each file read."""
    return {
        "name": provenance.get("name"),
        "source": provenance.get("source"),
        "release": provenance.get("release"),
        "train_size": provenance.get("train_size"),
        "test_size": provenance.get("test_size"),
        "train_limit": provenance.get("train_limit"),
        "test_limit": provenance.get("test_limit"),
        "files": [
            {"path": entry.get("path"), "sha256": entry.get("sha256"), "bytes": entry.get("bytes")}
            for entry in provenance.get("files", [])
        ],
    }


def run_manifest(
    profile: Profile,
    threads: int,
    environment: Mapping[str, Any],
    dataset: Mapping[str, Any],
    compute_peak: Mapping[str, Any] | None,
    cell_env: Mapping[str, str],
) -> dict[str, Any]:
    """Build the run-level parts of the manifest, the same for every cell of a run.

    `environment` is bench.measure.environment() of the parent, `dataset` a provenance dict (or
    {"name", "error"} when the dataset was not found), `compute_peak` bench.measure.peak.compute_peak()
    and `cell_env` the environment variables every cell process gets.
    """
    timing = asdict(profile.timing)
    return {
        "profile": profile.name,
        **environment,
        "cell_env_vars": {name: cell_env.get(name) for name in CELL_ENV_VARS},
        "threads": {
            "intra_op": threads,
            "inter_op": INTER_OP_THREADS,
            "source": "the profile's threads setting (--threads)" if profile.threads else "physical cores",
        },
        "timing": timing,
        "batch_sizes": {
            "latency": timing["latency_batch_size"],
            "throughput": timing["throughput_batch_size"],
            "training": profile.batch_size,
        },
        "dataset": dict(dataset) if "error" in dataset else dataset_checksums(dataset),
        "compute_peak": dict(compute_peak) if compute_peak is not None else None,
    }


def fairness_manifest(run_parts: Mapping[str, Any], frameworks: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Return the run-level parts with one entry per framework (from framework_entry) under "frameworks"."""
    return {**run_parts, "frameworks": {name: dict(entry) for name, entry in frameworks.items()}}


def collect_framework_entries(
    frameworks: tuple[str, ...],
    threads: int,
    cell_env: Mapping[str, str],
    work_dir: Path | None = None,
    timeout_s: float = FRAMEWORK_TIMEOUT_S,
    backend_paths: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Collect each framework's entry from one child process per framework, the children in parallel.

    A framework that is not installed is skipped with a reason. A child that fails, crashes or times
    out gives an entry with its status and error, never an exception. `backend_paths` replaces a
    framework's backend by an import path (tests use fake backends), as in bench.runner.run_profile.
    """
    from bench.runner import run_child

    backend_paths = backend_paths or {}
    entries: dict[str, dict[str, Any]] = {}
    to_run = []
    for framework in frameworks:
        module = FRAMEWORK_MODULES.get(framework)
        if framework not in backend_paths and module is not None and importlib.util.find_spec(module) is None:
            reason = f"{module} is not installed; install it with `pip install -e '.[{framework}]'`"
            log.info("%s: skipped, %s", framework, reason)
            entries[framework] = framework_entry("skipped", None, None, reason)
        else:
            to_run.append(framework)

    with tempfile.TemporaryDirectory(prefix="twinbench-env-") as temporary:
        root = Path(work_dir or temporary)

        def collect(framework: str) -> dict[str, Any]:
            kwargs = {"framework": framework, "threads": threads, "backend_path": backend_paths.get(framework)}
            outcome = run_child(SETTINGS_FUNCTION, kwargs, root / framework, timeout_s, dict(cell_env))
            if outcome.status == "ok":
                value = outcome.value or {}
                return framework_entry("ok", value.get("fairness"), value.get("versions"))
            error = outcome.error or {}
            log.error("%s: collecting settings ended with status %s: %s", framework, outcome.status, error.get("message"))
            entry = framework_entry(outcome.status, None, None, error.get("message"))
            entry["error_type"] = error.get("type")
            return entry

        with ThreadPoolExecutor(max_workers=max(1, len(to_run))) as pool:
            for framework, entry in zip(to_run, pool.map(collect, to_run)):
                entries[framework] = entry
    return {framework: entries[framework] for framework in frameworks}


def cell_manifest(
    run_parts: Mapping[str, Any],
    framework: str,
    cell_status: str,
    fairness: Mapping[str, Any] | None,
    versions: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Return a cell record's manifest: the run-level parts and the settings the cell's backend returned."""
    if fairness:
        entry = framework_entry("ok", fairness, versions)
    else:
        reason = f"the cell ended with status {cell_status} before returning its settings"
        entry = framework_entry("not recorded", None, versions, reason)
    return fairness_manifest(run_parts, {framework: entry})
