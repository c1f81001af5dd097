"""The runner: plans the matrix of cells and runs each one in its own child process.

The parent never imports a framework. It loads the dataset once and hands the arrays to every cell
through one .npz file. Each cell is a `python -m bench.worker bench.cell:run_cell ...` process with
fixed thread counts. The parent writes one record per cell when the cell ends, whatever the ending: ok,
failed (an exception), missing (NotImplementedError), crashed (the process died) or timeout.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench.cell import CellSpec
from bench.data import DATA_DIR_ENV, load_dataset, normalization, subset
from bench.manifest import cell_manifest, run_manifest
from bench.measure import environment, physical_cores
from bench.measure.peak import compute_peak
from bench.spec import Profile, get_model, get_strategy
from bench.store import (
    SCHEMA_VERSION,
    STATUS_CRASHED,
    STATUS_MISSING,
    STATUS_OK,
    STATUS_TIMEOUT,
    RunDir,
    write_json_atomic,
)

log = logging.getLogger(__name__)

CELL_FUNCTION = "bench.cell:run_cell"
# Statuses that count as a finished cell: --resume skips them, and they do not fail the run.
FINISHED_STATUSES = (STATUS_OK, STATUS_MISSING)


@dataclass
class ChildOutcome:
    status: str
    value: dict | None = None
    error: dict | None = None
    returncode: int | None = None


@dataclass
class RunSummary:
    run_dir: Path
    statuses: dict[str, str] = field(default_factory=dict)  # cell_id -> status
    skipped: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def failures(self) -> dict[str, str]:
        return {cell: status for cell, status in self.statuses.items() if status not in FINISHED_STATUSES}

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.failures else 0


def plan_cells(profile: Profile) -> list[CellSpec]:
    """List every (framework, strategy, seed) cell of the profile, framework varying fastest."""
    return [
        CellSpec(framework, strategy, profile.dataset, profile.model, seed)
        for seed in profile.seeds
        for strategy in profile.strategies
        for framework in profile.frameworks
    ]


def resolve_threads(profile: Profile) -> int:
    return profile.threads or physical_cores()


def prepare_data(profile: Profile, run_dir: RunDir, data_dir: Path | None) -> tuple[Path, dict]:
    """Load the profile's dataset once and write the arrays every cell reads."""
    start = time.perf_counter()
    dataset = subset(load_dataset(profile.dataset, data_dir), profile.train_limit, profile.test_limit)
    mean, std = normalization(dataset.train_images)
    provenance = {**dataset.provenance, "normalization": {"mean": mean, "std": std}}
    path = run_dir.path / "tmp" / f"{dataset.name}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        train_images=dataset.train_images,
        train_labels=dataset.train_labels,
        test_images=dataset.test_images,
        test_labels=dataset.test_labels,
        mean=np.float64(mean),
        std=np.float64(std),
        hflip_preserves_label=np.bool_(dataset.hflip_preserves_label),
    )
    log.info(
        "dataset %s: %d train, %d test images from %s (%.1f s)",
        dataset.name,
        len(dataset.train_labels),
        len(dataset.test_labels),
        dataset.provenance.get("source"),
        time.perf_counter() - start,
    )
    return path, provenance


def dataset_key(provenance: dict) -> str:
    """Identify the exact arrays a cell trains on: file digests, split sizes and limits."""
    import hashlib

    payload = json.dumps(
        {
            "name": provenance.get("name"),
            "files": sorted(entry.get("sha256", "") for entry in provenance.get("files", [])),
            "train_size": provenance.get("train_size"),
            "test_size": provenance.get("test_size"),
            "train_limit": provenance.get("train_limit"),
            "normalization": provenance.get("normalization"),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def child_environment(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads),
            "OPENBLAS_NUM_THREADS": str(threads),
            "TF_NUM_INTRAOP_THREADS": str(threads),
            "TF_NUM_INTEROP_THREADS": "1",
            "TF_CPP_MIN_LOG_LEVEL": env.get("TF_CPP_MIN_LOG_LEVEL", "2"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    # The child must import this checkout's bench even when the package is not installed.
    source_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH")) if p)
    return env


def run_child(
    function_path: str,
    kwargs: dict,
    work_dir: Path,
    timeout_s: float,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
) -> ChildOutcome:
    """Run one function in a fresh Python process and translate its end into a ChildOutcome.

    The child's stderr goes to `log_path` (default work_dir/stderr.log) and to this process's stderr;
    when the child crashes or times out, the error carries the log's last lines.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    args_path = work_dir / "args.json"
    result_path = work_dir / "result.json"
    result_path.unlink(missing_ok=True)
    write_json_atomic(args_path, kwargs)
    command = [sys.executable, "-m", "bench.worker", function_path, str(args_path), str(result_path)]

    log_path = log_path or work_dir / "stderr.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        command,
        env=env,
        start_new_session=True,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    pump = threading.Thread(target=_pump_stderr, args=(process.stderr, log_path), daemon=True)
    pump.start()
    try:
        returncode = process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        pump.join(timeout=5)
        error = {"type": "Timeout", "message": f"timed out after {timeout_s:.0f} s; the process was killed"}
        return ChildOutcome(STATUS_TIMEOUT, error={**error, "log_tail": _tail(log_path)})
    except BaseException:
        _kill_group(process)
        raise
    pump.join(timeout=5)

    if returncode == 0 and result_path.exists():
        result = json.loads(result_path.read_text(encoding="utf-8"))
        return ChildOutcome(result["status"], result.get("value"), result.get("error"), returncode)
    error = {**_crash_error(returncode), "log_tail": _tail(log_path)}
    return ChildOutcome(STATUS_CRASHED, error=error, returncode=returncode)


# Lines TensorFlow's C++ runtime prints at import whatever the value of TF_CPP_MIN_LOG_LEVEL. They stay in the
# cell's stderr.log but are not echoed to the console.
_CONSOLE_NOISE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
)


def _pump_stderr(stream, log_path: Path) -> None:
    """Copy the child's stderr to `log_path` and, without known start-up noise, to our stderr."""
    with log_path.open("w", encoding="utf-8") as log_file:
        for line in stream:
            log_file.write(line)
            log_file.flush()
            if not any(noise in line for noise in _CONSOLE_NOISE):
                sys.stderr.write(line)
                sys.stderr.flush()


def _tail(path: Path, lines: int = 40) -> str:
    """Return the last `lines` lines of a log file, or "" when there is none."""
    try:
        return "".join(path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return ""


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _crash_error(returncode: int) -> dict:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        message = f"cell process was killed by {name}"
        if -returncode == signal.SIGKILL:
            message += " (out of memory, or killed from outside)"
        return {"type": "Crash", "message": message, "signal": name}
    return {"type": "Crash", "message": f"cell process exited with code {returncode} without a result"}


def command_line() -> str:
    """Rebuild the command as a user typed it (`python -m bench ...`, not a path to __main__.py)."""
    program = "python -m bench" if sys.argv and sys.argv[0].endswith("__main__.py") else Path(sys.argv[0]).name
    return " ".join([program, *sys.argv[1:]])


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_profile(
    profile: Profile,
    run_dir: RunDir,
    *,
    data_dir: Path | None = None,
    backend_paths: dict[str, str] | None = None,
    resume: bool = False,
    keep_data: bool = False,
) -> RunSummary:
    """Run every cell of `profile` into `run_dir`; one failing cell never stops the others."""
    backend_paths = backend_paths or {}
    cells = plan_cells(profile)
    threads = resolve_threads(profile)
    summary = RunSummary(run_dir.path)
    env_info = environment()

    done = _finished_cells(run_dir) if resume else set()
    data_path, provenance = prepare_data(profile, run_dir, data_dir)
    previous = run_dir.read_run_info() if resume else {}
    child_env = child_environment(threads)
    if data_dir is not None:
        # Cells that read a second dataset (a transfer task's target) look in the same directory.
        child_env[DATA_DIR_ENV] = str(data_dir)
    # The compute peak is measured once per run, before any cell loads the machine. Its SGEMM ceiling
    # runs in a child process, so this process's BLAS thread pool is not touched.
    run_parts = run_manifest(profile, threads, env_info, provenance, compute_peak(threads), child_env)
    run_dir.write_run_info(
        {
            "schema_version": SCHEMA_VERSION,
            "run_id": run_dir.run_id,
            "started_at": previous.get("started_at", utc_now()),
            "resumed_at": [*previous.get("resumed_at", []), utc_now()] if resume else [],
            "command": previous.get("command", command_line()),
            "profile": profile.to_dict(),
            "cells": [cell.cell_id for cell in cells],
            "threads": threads,
            "dataset": provenance,
            "environment": env_info,
            "manifest": run_parts,
        }
    )

    try:
        for number, cell in enumerate(cells, start=1):
            if cell.cell_id in done:
                log.info("[%d/%d] %s: already finished, skipped (--resume)", number, len(cells), cell.cell_id)
                summary.skipped.append(cell.cell_id)
                continue
            log.info("[%d/%d] %s: running", number, len(cells), cell.cell_id)
            record = _run_one(
                profile, cell, run_dir, data_path, provenance, env_info, threads, child_env, backend_paths, run_parts
            )
            summary.statuses[cell.cell_id] = record["status"]
            _log_cell_end(number, len(cells), record)
    except KeyboardInterrupt:
        summary.interrupted = True
        log.warning(
            "interrupted: finished records are kept in %s; continue with "
            "`python -m bench all --resume %s`",
            run_dir.path,
            run_dir.path,
        )
    finally:
        if not keep_data:
            shutil.rmtree(run_dir.path / "tmp", ignore_errors=True)
    return summary


def _run_one(
    profile, cell, run_dir, data_path, provenance, env_info, threads, child_env, backend_paths, run_parts=None
) -> dict:
    started_at = utc_now()
    start = time.perf_counter()
    kwargs = {
        "cell": cell.to_dict(),
        "recipe": profile.recipe(cell.seed).to_dict(),
        "timing": profile.timing.__dict__,
        "robustness": {**asdict(profile.robustness), "samples": profile.robust_samples},
        "target_accuracy": profile.target_accuracy,
        "threads": threads,
        "data_path": str(data_path),
        "artifacts_dir": str(run_dir.path / "artifacts" / cell.cell_id),
        "dataset_key": dataset_key(provenance),
        "cache_dir": str(run_dir.path / "cache"),
        "backend_path": backend_paths.get(cell.framework),
    }
    outcome = run_child(
        CELL_FUNCTION,
        kwargs,
        run_dir.path / "tmp" / cell.cell_id,
        profile.cell_timeout_s,
        child_env,
        log_path=Path(kwargs["artifacts_dir"]) / "stderr.log",
    )
    value = outcome.value or {}
    model = value.get("model")
    if model and model.get("onnx_path"):
        # Records are published; paths inside them are relative to the run directory.
        model["onnx_path"] = os.path.relpath(model["onnx_path"], run_dir.path)
    record = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_dir.run_id,
        "cell_id": cell.cell_id,
        "cell": cell.to_dict(),
        "profile": profile.name,
        "status": outcome.status,
        "error": outcome.error,
        "returncode": outcome.returncode,
        "started_at": started_at,
        "finished_at": utc_now(),
        "wall_seconds": time.perf_counter() - start,
        "spec": {
            "model": get_model(cell.model).to_dict(),
            "strategy": get_strategy(cell.strategy).to_dict(),
            "recipe": kwargs["recipe"],
            "timing": kwargs["timing"],
            "robustness": kwargs["robustness"],
        },
        "dataset": provenance,
        "environment": {**env_info, "framework_versions": value.get("versions", {})},
        "fairness": {"threads": threads, **value.get("fairness", {})},
        "manifest": cell_manifest(
            run_parts or {}, cell.framework, outcome.status, value.get("fairness"), value.get("versions")
        ),
        "model": model,
        "training": value.get("training"),
        "steps": value.get("steps", []),
        "runtimes": value.get("runtimes", []),
        "robustness": value.get("robustness"),
        "merged_export": value.get("merged_export"),
        "target_dataset": value.get("target_dataset"),
        "peak_rss_bytes": value.get("peak_rss_bytes"),
    }
    run_dir.write_record(record)
    return record


def _log_cell_end(number: int, total: int, record: dict) -> None:
    cell_id, status = record["cell_id"], record["status"]
    if status == STATUS_OK:
        accuracies = ", ".join(
            f"{row['runtime']} {row['quality']['accuracy']:.4f}" for row in record["runtimes"] if row.get("quality")
        )
        log.info("[%d/%d] %s: ok in %.0f s; accuracy %s", number, total, cell_id, record["wall_seconds"], accuracies)
    else:
        error = record.get("error") or {}
        log.error("[%d/%d] %s: %s: %s", number, total, cell_id, status, error.get("message", ""))


def _finished_cells(run_dir: RunDir) -> set[str]:
    records, problems = run_dir.read_records()
    for path, problem in problems:
        log.warning("%s: %s; the cell will run again", path, problem)
    return {record["cell_id"] for record in records if record["status"] in FINISHED_STATUSES}
