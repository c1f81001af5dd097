"""Run directories and cell records on disk.

A run directory (results/runs/RUN_ID/) contains run.json (what was asked for, the environment) and
records/CELL_ID.json, one per finished cell. Every file is written atomically (temporary file in the
same directory, flush, fsync, rename), so a killed process leaves either a complete file or none.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
RECORDS_DIR = "records"
RUN_FILE = "run.json"
LOCK_FILE = "run.lock"

# Cell statuses. "missing" means a backend raised NotImplementedError for a step: the cell has no
# numbers and the report shows it as missing, never as a number.
STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_MISSING = "missing"
STATUS_CRASHED = "crashed"
STATUS_TIMEOUT = "timeout"
STATUSES = (STATUS_OK, STATUS_FAILED, STATUS_MISSING, STATUS_CRASHED, STATUS_TIMEOUT)


def write_json_atomic(path: Path, data: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=False, allow_nan=False, default=_json_default)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays reach records through metrics; convert without importing numpy here.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ")


def create_run_dir(runs_root: Path, now: datetime | None = None) -> RunDir:
    """Create a new, empty run directory under `runs_root` named by the UTC time (suffix -2, -3... on a clash).

    Raise OSError with the path and the fix when `runs_root` cannot be created or written.
    """
    run_id = new_run_id(now)
    try:
        Path(runs_root).mkdir(parents=True, exist_ok=True)
        for attempt in range(1, 100):
            path = Path(runs_root) / (run_id if attempt == 1 else f"{run_id}-{attempt}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            return RunDir(path)
    except OSError as error:
        fix = " or fix its permissions" if isinstance(error, PermissionError) else ""
        raise OSError(
            error.errno,
            f"cannot create a run directory under {runs_root}: {error.strerror or error}; pass a writable "
            f"directory with --results-dir{fix}",
        ) from error
    raise FileExistsError(f"100 run directories named {run_id}* already exist under {runs_root}")


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def records_dir(self) -> Path:
        return self.path / RECORDS_DIR

    def record_path(self, cell_id: str) -> Path:
        return self.records_dir / f"{cell_id}.json"

    def write_run_info(self, info: dict) -> None:
        write_json_atomic(self.path / RUN_FILE, info)

    def read_run_info(self) -> dict:
        """Return run.json as a dict, {} when there is none; raise ValueError naming the file when it is corrupt."""
        path = self.path / RUN_FILE
        if not path.exists():
            return {}
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RunFileError(path, f"is not valid JSON ({error}); the file is damaged") from None
        if not isinstance(info, dict):
            raise RunFileError(path, "does not contain a JSON object; it is not a twinbench run file")
        return info

    def lock(self) -> RunLock:
        """Return the lock that keeps a second run from writing into this directory at the same time."""
        return RunLock(self.path / LOCK_FILE)

    def write_record(self, record: dict) -> Path:
        path = self.record_path(record["cell_id"])
        write_json_atomic(path, record)
        return path

    def read_records(self) -> tuple[list[dict], list[tuple[Path, str]]]:
        """Return (records, problems); a corrupt record file is listed in problems, never dropped silently."""
        records: list[dict] = []
        problems: list[tuple[Path, str]] = []
        if not self.records_dir.is_dir():
            return records, problems
        for path in sorted(self.records_dir.glob("*.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
                problems.append((path, f"unreadable record: {error}"))
                continue
            if not isinstance(record, dict) or "cell_id" not in record or "status" not in record:
                problems.append((path, "not a twinbench cell record (no cell_id or status)"))
                continue
            records.append(record)
        return records, problems


class RunFileError(ValueError):
    """A run's run.json is damaged; `reason` describes the damage without repeating the path."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path} {reason}")
        self.path = path
        self.reason = reason


class RunLockedError(RuntimeError):
    """Another process holds the lock of a run directory."""


class RunLock:
    """An exclusive lock on a run directory, held by one process while it writes records.

    The lock is an flock(2) on RUN_DIR/run.lock, so the kernel releases it when the holder exits, even by
    SIGKILL: a lock file left behind by a killed run never blocks a resume. The file contains the holder
    (pid, host, command, start time) so that the error can say who holds it. flock is not reliable on
    some network file systems; there the lock may not exclude a second writer.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self, holder: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise OSError(
                    error.errno,
                    f"cannot write to run directory {self.path.parent}: {error.strerror or error}; "
                    "fix its permissions, or start a new run with a writable --results-dir",
                ) from error
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunLockedError(self._locked_message()) from None
            # A holder that released the lock may have unlinked the file after we opened it: then we hold
            # a lock on a deleted inode and must try again on the path's current file.
            try:
                same_file = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same_file = False
            if same_file:
                break
            os.close(fd)
        content = json.dumps({**holder, "pid": os.getpid(), "host": socket.gethostname()}, default=str)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (content + "\n").encode("utf-8"), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        # Unlink while still holding the lock, so no process can lock this file after we let go.
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def _locked_message(self) -> str:
        try:
            holder = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            holder = {}
        holder_text = (
            f"process {holder.get('pid', '?')} on {holder.get('host', '?')} "
            f"(command: {holder.get('command', '?')}; started {holder.get('started_at', '?')})"
            if holder
            else "another process"
        )
        return (
            f"run directory {self.path.parent} is in use by {holder_text}; wait for that run to finish or stop it, "
            f"or start a new run without --resume. The lock is {self.path}"
        )


# Runs of these profiles only feed the claim check of another run's report (`bench report --claim-run`).
CLAIM_PROFILES = ("claim",)


def latest_run_dir(runs_root: Path) -> RunDir:
    """Return the most recent run directory under `runs_root` (run ids sort by time), claim runs excepted."""
    candidates = sorted((p for p in Path(runs_root).glob("*") if (p / RECORDS_DIR).is_dir()), reverse=True)
    for path in candidates:
        try:
            profile = RunDir(path).read_run_info().get("profile", {}).get("name")
        except ValueError:
            profile = None  # a damaged run.json: the report lists it, so the run is still a candidate
        if profile not in CLAIM_PROFILES:
            return RunDir(path)
    raise FileNotFoundError(
        f"no run directory with records under {runs_root}, other than claim runs; run `python -m bench all` first"
    )


# Profiles whose runs are published in results/: a local smoke run must not replace them.
PUBLISHED_PROFILES = ("quick", "full")


def published_run_dir(runs_root: Path, profiles: tuple[str, ...] = PUBLISHED_PROFILES) -> RunDir:
    """Return the newest run under `runs_root` that has records and was made with one of `profiles`."""
    candidates = sorted((path for path in Path(runs_root).glob("*") if (path / RECORDS_DIR).is_dir()), reverse=True)
    for path in candidates:
        try:
            info = RunDir(path).read_run_info()
        except ValueError as error:
            log.warning("skipping %s: %s", path, error)
            continue
        if info.get("profile", {}).get("name") in profiles:
            return RunDir(path)
    raise FileNotFoundError(
        f"no run with records and a profile in {profiles} under {runs_root} "
        f"(found: {[path.name for path in candidates]}); run `python -m bench all` first"
    )
