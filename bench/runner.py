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
from bench.report_parity import PARITY_FILE
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
from bench.worker import PARENT_PID_ENV

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
    interrupted_by: str | None = None  # "SIGINT" (Ctrl-C) or "SIGTERM" when the run was stopped
    stopped_cell: str | None = None  # the cell that was running when the run was stopped
    planned: int = 0  # cells in the profile's matrix

    @property
    def interrupted(self) -> bool:
        return self.interrupted_by is not None

    @property
    def failures(self) -> dict[str, str]:
        return {cell: status for cell, status in self.statuses.items() if status not in FINISHED_STATUSES}

    @property
    def exit_code(self) -> int:
        """Return 128 + the signal number when interrupted (130 for Ctrl-C), 1 when a cell failed, else 0."""
        if self.interrupted_by is not None:
            return 128 + signal.Signals[self.interrupted_by].value
        return 1 if self.failures else 0


class RunInterrupted(KeyboardInterrupt):
    """Raised in the runner's main thread on SIGTERM, so a terminated run stops like one stopped by Ctrl-C."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


class RecordWriteError(OSError):
    """A cell's record could not be written (disk full, permissions): the run stops, finished records stay."""


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
    memory_limit_bytes: int | None = None,
) -> ChildOutcome:
    """Run one function in a fresh Python process and translate its end into a ChildOutcome.

    The child's stderr goes to `log_path` (default work_dir/stderr.log) and to this process's stderr;
    when the child crashes or times out, the error carries the log's last lines. The child runs in its own
    session and is killed with its whole process group on a timeout, on `memory_limit_bytes` (resident
    memory of every process in its session) and when this process is interrupted; it also dies with
    this process (bench.worker sets a parent-death signal), so a killed run leaves no orphan cell behind.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    args_path = work_dir / "args.json"
    result_path = work_dir / "result.json"
    result_path.unlink(missing_ok=True)
    write_json_atomic(args_path, kwargs)
    command = [sys.executable, "-m", "bench.worker", function_path, str(args_path), str(result_path)]
    env = dict(os.environ if env is None else env)
    env[PARENT_PID_ENV] = str(os.getpid())

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
        ending = _wait_for_child(process, timeout_s, memory_limit_bytes)
    except BaseException:
        _kill_group(process)
        raise
    pump.join(timeout=5)

    if ending.timed_out:
        error = {
            "type": "Timeout",
            "message": f"timed out after {timeout_s:.0f} s; the process was killed (raise the limit with "
            "--cell-timeout, which a resumed run accepts)",
        }
        return ChildOutcome(STATUS_TIMEOUT, error={**error, "log_tail": _tail(log_path)})
    if ending.memory_used is not None:
        error = {
            "type": "OutOfMemory",
            "message": f"the cell's processes used {_mib(ending.memory_used)} resident memory, over the limit of "
            f"{_mib(memory_limit_bytes)}; the process was killed (raise the limit with --cell-memory-limit, "
            "which a resumed run accepts, or lower the batch size or data limits)",
            "signal": "SIGKILL",
            "memory_bytes": ending.memory_used,
        }
        return ChildOutcome(STATUS_CRASHED, error={**error, "log_tail": _tail(log_path)})
    if ending.returncode == 0 and result_path.exists():
        result = json.loads(result_path.read_text(encoding="utf-8"))
        return ChildOutcome(result["status"], result.get("value"), result.get("error"), ending.returncode)
    error = {**_crash_error(ending.returncode, ending.max_rss_bytes), "log_tail": _tail(log_path)}
    return ChildOutcome(STATUS_CRASHED, error=error, returncode=ending.returncode)


_POLL_S = 0.05
_MEMORY_POLL_S = 0.5


@dataclass
class _ChildEnding:
    returncode: int | None = None
    max_rss_bytes: int | None = None  # peak resident memory of the child process itself (wait4)
    timed_out: bool = False
    memory_used: int | None = None  # set when the memory watchdog killed the child


def _wait_for_child(process: subprocess.Popen, timeout_s: float, memory_limit_bytes: int | None) -> _ChildEnding:
    """Reap the child with wait4 (for its peak RSS), killing it on the timeout or the memory limit."""
    deadline = time.monotonic() + timeout_s
    next_memory_check = 0.0
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            # ru_maxrss is in KiB on Linux.
            return _ChildEnding(process.returncode, max_rss_bytes=usage.ru_maxrss * 1024)
        now = time.monotonic()
        if now >= deadline:
            _kill_group(process)
            return _ChildEnding(process.returncode, timed_out=True)
        if memory_limit_bytes is not None and now >= next_memory_check:
            next_memory_check = now + _MEMORY_POLL_S
            used = session_rss_bytes(process.pid)
            if used > memory_limit_bytes:
                _kill_group(process)
                return _ChildEnding(process.returncode, memory_used=used)
        time.sleep(_POLL_S)


def session_rss_bytes(session_id: int) -> int:
    """Sum the resident memory of every process in a session (the cell and its compiler workers), from /proc."""
    page_size = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_path.read_text().rpartition(")")[2].split()
        except OSError:  # the process ended while we listed /proc
            continue
        # After the command name: state, ppid, pgrp, session, ... rss is field 24 of stat(5).
        if int(fields[3]) == session_id:
            total += int(fields[21]) * page_size
    return total


def _mib(value: int | None) -> str:
    return "?" if value is None else f"{value / 2**20:,.0f} MiB"


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
    if process.returncode is None:
        process.wait()


def _crash_error(returncode: int, max_rss_bytes: int | None = None) -> dict:
    memory = "" if max_rss_bytes is None else f"; its peak resident memory was {_mib(max_rss_bytes)}"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        message = f"cell process was killed by {name}{memory}"
        if -returncode == signal.SIGKILL:
            total = _total_memory_bytes()
            of_total = f" of {_mib(total)} on this machine" if total and max_rss_bytes is not None else ""
            message += f"{of_total} (out of memory, or killed from outside)"
        elif -returncode == signal.SIGSEGV:
            message += " (a segmentation fault in native code; the log tail shows the last step)"
        return {"type": "Crash", "message": message, "signal": name, "max_rss_bytes": max_rss_bytes}
    return {
        "type": "Crash",
        "message": f"cell process exited with code {returncode} without a result{memory}",
        "max_rss_bytes": max_rss_bytes,
    }


def _total_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


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
    parity: bool = False,
) -> RunSummary:
    """Run every cell of `profile` into `run_dir`; one failing cell never stops the others.

    With `parity`, the parity checks of bench.parity run once before the cells, into RUN_DIR/parity.json.

    The run holds `run_dir`'s lock throughout (RunLockedError when another process has it). Ctrl-C or
    SIGTERM stops the running cell, which gets no record, and returns a summary with `interrupted_by`
    set. A record that cannot be written raises RecordWriteError; the records written before it stay.
    """
    backend_paths = backend_paths or {}
    summary = RunSummary(run_dir.path)
    lock = run_dir.lock()
    lock.acquire({"command": command_line(), "started_at": utc_now()})
    previous_handlers = _stop_on_signals()
    try:
        _run_cells(profile, run_dir, summary, data_dir, backend_paths, resume, parity)
    except KeyboardInterrupt as interruption:
        summary.interrupted_by = getattr(interruption, "signal_name", "SIGINT")
        stopped = f"; {summary.stopped_cell} was stopped and has no record" if summary.stopped_cell else ""
        log.warning(
            "interrupted by %s%s. The records of finished cells are kept in %s; continue with "
            "`python -m bench all --resume %s`",
            summary.interrupted_by,
            stopped,
            run_dir.path,
            run_dir.path,
        )
    finally:
        for signal_number, previous in previous_handlers.items():
            signal.signal(signal_number, previous)
        if not keep_data:
            shutil.rmtree(run_dir.path / "tmp", ignore_errors=True)
        lock.release()
    return summary


def _stop_on_signals() -> dict:
    """Make SIGINT and SIGTERM raise RunInterrupted; return the previous handlers (none off the main thread).

    SIGINT is set too because Python leaves it ignored in a process started in the background (`cmd &`),
    where `kill -INT` would otherwise do nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum, frame):
        raise RunInterrupted(signal.Signals(signum).name)

    return {number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM)}


def _run_cells(profile, run_dir, summary, data_dir, backend_paths, resume, parity=False) -> None:
    cells = plan_cells(profile)
    summary.planned = len(cells)
    threads = resolve_threads(profile)
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

    if parity:
        run_parity(profile, run_dir, backend_paths)

    for number, cell in enumerate(cells, start=1):
        if cell.cell_id in done:
            log.info("[%d/%d] %s: already finished, skipped (--resume)", number, len(cells), cell.cell_id)
            summary.skipped.append(cell.cell_id)
            continue
        log.info("[%d/%d] %s: running", number, len(cells), cell.cell_id)
        summary.stopped_cell = cell.cell_id
        record = _run_one(
            profile, cell, run_dir, data_path, provenance, env_info, threads, child_env, backend_paths, run_parts
        )
        summary.stopped_cell = None
        try:
            run_dir.write_record(record)
        except OSError as error:
            raise RecordWriteError(
                error.errno,
                f"could not write the record of {cell.cell_id} to {run_dir.record_path(cell.cell_id)}: "
                f"{error.strerror or error}. The {len(summary.statuses)} records written before it are kept; "
                f"free disk space or fix the permissions, then continue with "
                f"`python -m bench all --resume {run_dir.path}`",
            ) from error
        summary.statuses[cell.cell_id] = record["status"]
        _log_cell_end(number, len(cells), record)


def run_parity(profile: Profile, run_dir: RunDir, backend_paths: dict[str, str]) -> dict:
    """Check that the profile's frameworks build and train the same network; store the report in the run.

    A resumed run keeps the report it already has. A failure of the check itself is stored as the
    report's problem, so the cells still run.
    """
    from bench.parity import check_parity

    path = run_dir.path / PARITY_FILE
    if path.exists():
        log.info("parity: kept the report in %s", path)
        return json.loads(path.read_text(encoding="utf-8"))
    log.info("parity: checking %s in %s", profile.model, ", ".join(profile.frameworks))
    start = time.perf_counter()
    try:
        report = check_parity(profile.model, profile.seeds[0], frameworks=profile.frameworks, backend_paths=backend_paths)
    except Exception as error:  # noqa: BLE001 - the benchmark cells do not depend on the check
        log.error("parity check failed: %s: %s", type(error).__name__, error)
        report = {"model": profile.model, "passed": False, "problems": [f"{type(error).__name__}: {error}"]}
    report["seconds"] = time.perf_counter() - start
    write_json_atomic(path, report)
    log.info("parity: %s in %.0f s; report in %s", "passed" if report.get("passed") else "FAILED", report["seconds"], path)
    return report


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
        memory_limit_bytes=None if profile.cell_memory_limit_mb is None else profile.cell_memory_limit_mb * 2**20,
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
