"""Run directories and cell records on disk.

A run directory (results/runs/RUN_ID/) contains run.json (what was asked for, the environment) and
records/CELL_ID.json, one per finished cell. Every file is written atomically (temporary file in the
same directory, flush, fsync, rename), so a killed process leaves either a complete file or none.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
RECORDS_DIR = "records"
RUN_FILE = "run.json"

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
        path = self.path / RUN_FILE
        if not path.exists():
            return {}
        return json.loads(path.read_text(encoding="utf-8"))

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


def latest_run_dir(runs_root: Path) -> RunDir:
    """Return the most recent run directory under `runs_root` (run ids sort by time)."""
    candidates = sorted(p for p in Path(runs_root).glob("*") if (p / RECORDS_DIR).is_dir())
    if not candidates:
        raise FileNotFoundError(
            f"no run directory with records under {runs_root}; run `python -m bench all` first"
        )
    return RunDir(candidates[-1])


# Profiles whose runs are published in results/: a local smoke run must not replace them.
PUBLISHED_PROFILES = ("quick", "full")


def published_run_dir(runs_root: Path, profiles: tuple[str, ...] = PUBLISHED_PROFILES) -> RunDir:
    """Return the newest run under `runs_root` that has records and was made with one of `profiles`."""
    candidates = sorted((path for path in Path(runs_root).glob("*") if (path / RECORDS_DIR).is_dir()), reverse=True)
    for path in candidates:
        if RunDir(path).read_run_info().get("profile", {}).get("name") in profiles:
            return RunDir(path)
    raise FileNotFoundError(
        f"no run with records and a profile in {profiles} under {runs_root} "
        f"(found: {[path.name for path in candidates]}); run `python -m bench all` first"
    )
