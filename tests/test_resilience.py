"""Interrupted, killed and concurrent runs through the real runner, with the fake backends.

Every test here starts real child processes: a runner (`python -m tests.resilience_run`) and its cells.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.runner import RecordWriteError, run_profile
from bench.store import RunDir, RunLockedError
from tests.fake_backends import SLEEP_MARKER_ENV
from tests.resilience_run import SEEDS
from tests.test_runner import FAKE, fake_profile, run

ROOT = Path(__file__).resolve().parent.parent
CELLS = 2 * len(SEEDS)


def start_runner(run_dir: Path, marker: Path, tf_backend: str = "SleepyBackend", *flags: str) -> subprocess.Popen:
    env = {**os.environ, SLEEP_MARKER_ENV: str(marker), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.resilience_run", str(run_dir), "LinearBackend", tf_backend, *flags],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, process: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"runner exited with {process.returncode} before {path} appeared:\n{process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{path} did not appear within {timeout_s} s")
        time.sleep(0.1)


def run_reference(run_dir: Path) -> None:
    """Run the whole matrix without interruption, as the run an interrupted one must match."""
    completed = subprocess.run(
        [sys.executable, "-m", "tests.resilience_run", str(run_dir), "LinearBackend", "LinearBackend"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # kill(0) succeeds on a zombie too, which has ended and only waits for its parent to reap it.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


def wait_dead(pid: int, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def records_by_cell(run_dir: Path) -> dict[str, dict]:
    records, problems = RunDir(run_dir).read_records()
    assert problems == []
    return {record["cell_id"]: record for record in records}


def comparable(record: dict) -> dict:
    """The parts of a record that an interruption must not change (no times, no run id)."""
    return {
        "status": record["status"],
        "cell": record["cell"],
        "accuracy": {row["runtime"]: (row.get("quality") or {}).get("accuracy") for row in record["runtimes"]},
        "losses": record["training"]["epoch_losses"],
    }


def test_sigkill_mid_cell_then_resume_matches_uninterrupted_run(tmp_path):
    reference = tmp_path / "reference"
    run_reference(reference)
    expected = records_by_cell(reference)
    assert len(expected) == CELLS

    interrupted = tmp_path / "interrupted"
    marker = tmp_path / "sleeping"
    runner = start_runner(interrupted, marker)
    wait_for(marker, runner)
    cell_pid = int(marker.read_text())
    runner.send_signal(signal.SIGKILL)
    runner.wait(timeout=30)
    runner.stdout.close()
    runner.stderr.close()

    # The killed runner's cell dies with it (parent-death signal), and no half-written file is left.
    assert wait_dead(cell_pid), f"cell process {cell_pid} outlived its killed runner"
    before_resume = records_by_cell(interrupted)
    assert len(before_resume) == 1  # torch seed 0 finished; tf seed 0 was killed while training
    assert list((interrupted / "records").glob(".*")) == []
    # The kernel released the killed runner's lock: its file may remain but does not block the resume.
    resumed = start_runner(interrupted, marker, "SleepyBackend", "--resume")
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr[-3000:]
    assert "skipped ['torch-baseline-digits-lenet5-s0']" in stdout

    final = records_by_cell(interrupted)
    assert sorted(final) == sorted(expected)
    assert len(list((interrupted / "records").glob("*.json"))) == CELLS
    assert final["torch-baseline-digits-lenet5-s0"] == before_resume["torch-baseline-digits-lenet5-s0"]
    for cell_id, record in expected.items():
        assert comparable(final[cell_id]) == comparable(record), cell_id
    run_info = json.loads((interrupted / "run.json").read_text())
    assert len(run_info["resumed_at"]) == 1
    assert not (interrupted / "run.lock").exists()


@pytest.mark.parametrize(("signal_number", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_keeps_records_and_says_how_to_resume(tmp_path, signal_number, exit_code):
    run_dir = tmp_path / "run"
    marker = tmp_path / "sleeping"
    runner = start_runner(run_dir, marker)
    wait_for(marker, runner)
    cell_pid = int(marker.read_text())
    runner.send_signal(signal_number)
    stdout, stderr = runner.communicate(timeout=60)

    assert runner.returncode == exit_code, stderr[-3000:]
    name = signal.Signals(signal_number).name
    assert f"interrupted by {name}" in stderr
    assert f"python -m bench all --resume {run_dir}" in stderr
    assert "tf-baseline-digits-lenet5-s0 was stopped and has no record" in stderr
    assert wait_dead(cell_pid), "the stopped cell's process is still running"
    assert sorted(records_by_cell(run_dir)) == ["torch-baseline-digits-lenet5-s0"]
    assert not (run_dir / "run.lock").exists()
    assert not (run_dir / "tmp").exists()


def test_second_run_on_same_directory_rejected(tmp_path):
    run_dir = tmp_path / "run"
    marker = tmp_path / "sleeping"
    runner = start_runner(run_dir, marker)
    try:
        wait_for(marker, runner)
        with pytest.raises(RunLockedError) as raised:
            run_profile(fake_profile(), RunDir(run_dir), backend_paths={"torch": FAKE + "LinearBackend"}, resume=True)
        message = str(raised.value)
        assert f"process {runner.pid} on " in message
        assert "tests/resilience_run.py" in message or "resilience_run" in message
        assert str(run_dir / "run.lock") in message
    finally:
        runner.kill()
        runner.communicate(timeout=30)
    # The rejected attempt wrote nothing: the holder's records are all there is.
    assert sorted(records_by_cell(run_dir)) == ["torch-baseline-digits-lenet5-s0"]


def test_lock_released_after_holder_killed(tmp_path):
    lock_path = tmp_path / "run" / "run.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from bench.store import RunDir; "
            f"RunDir(__import__('pathlib').Path({str(tmp_path / 'run')!r})).lock().acquire({{'command': 'holder'}}); "
            "print('locked', flush=True); time.sleep(600)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    lock = RunDir(tmp_path / "run").lock()
    with pytest.raises(RunLockedError, match="command: holder"):
        lock.acquire({"command": "second"})
    holder.kill()
    holder.wait(timeout=30)
    holder.stdout.close()
    assert lock_path.exists()  # left behind by the killed holder
    lock.acquire({"command": "second"})
    assert json.loads(lock_path.read_text())["command"] == "second"
    lock.release()
    assert not lock_path.exists()


def test_segfaulting_cell_recorded_and_run_goes_on(tmp_path):
    summary, _, records = run(tmp_path, "SegfaultBackend", "LinearBackend")
    cells = {record["cell"]["framework"]: record for record in records.values()}
    assert cells["torch"]["status"] == "crashed"
    assert cells["torch"]["error"]["signal"] == "SIGSEGV"
    assert "segmentation fault" in cells["torch"]["error"]["message"]
    assert cells["torch"]["error"]["max_rss_bytes"] > 0
    assert cells["tf"]["status"] == "ok"
    assert summary.exit_code == 1


def test_cell_over_memory_limit_killed_and_recorded(tmp_path):
    summary, _, records = run(tmp_path, "MemoryHogBackend", "LinearBackend", cell_memory_limit_mb=600)
    cells = {record["cell"]["framework"]: record for record in records.values()}
    error = cells["torch"]["error"]
    assert cells["torch"]["status"] == "crashed"
    assert error["type"] == "OutOfMemory"
    assert error["memory_bytes"] > 600 * 2**20
    assert "over the limit of 600 MiB" in error["message"]
    assert cells["tf"]["status"] == "ok"
    assert summary.exit_code == 1


def test_unwritable_record_stops_run_with_resume_hint(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    run_dir.path.mkdir()
    # A file where the records directory should be: every record write fails.
    run_dir.records_dir.write_text("not a directory")
    with pytest.raises(RecordWriteError) as raised:
        run_profile(fake_profile(), run_dir, backend_paths={"torch": FAKE + "LinearBackend", "tf": FAKE + "LinearBackend"})
    message = str(raised.value)
    assert "could not write the record of torch-baseline-digits-lenet5-s0" in message
    assert f"--resume {run_dir.path}" in message
    assert not (run_dir.path / "run.lock").exists()


def test_network_blocked_in_cell_process(tmp_path):
    from bench.runner import child_environment, run_child

    blocked = run_child(
        "tests.fake_backends:probe_network", {"host": "192.0.2.1"}, tmp_path / "blocked", 60, child_environment(1)
    )
    assert blocked.status == "failed"
    assert blocked.error["type"] == "NetworkAccessError"
    assert "'192.0.2.1'" in blocked.error["message"]
    local = run_child(
        "tests.fake_backends:probe_network", {"host": "127.0.0.1"}, tmp_path / "local", 60, child_environment(1)
    )
    assert local.status == "ok"


def test_damaged_training_cache_is_retrained(tmp_path, caplog):
    _, run_dir, records = run(tmp_path, "LinearBackend", "LinearBackend")
    cached = sorted((run_dir.path / "cache").glob("*.npz"))
    assert len(cached) == 2
    for path in cached:
        path.write_bytes(path.read_bytes()[:100])  # a truncated zip archive
    for path in run_dir.records_dir.glob("*.json"):
        path.unlink()

    summary = run_profile(
        fake_profile(), run_dir, backend_paths={"torch": FAKE + "LinearBackend", "tf": FAKE + "LinearBackend"}, resume=True
    )
    assert summary.exit_code == 0
    again = records_by_cell(run_dir.path)
    for cell_id, record in records.items():
        assert again[cell_id]["status"] == "ok"
        assert again[cell_id]["steps"][0]["from_cache"] is False
        assert comparable(again[cell_id]) == comparable(record)
    log = (run_dir.path / "artifacts" / "torch-baseline-digits-lenet5-s0" / "stderr.log").read_text()
    assert "is unreadable" in log


def test_report_of_interrupted_run_lists_cells_not_run(tmp_path):
    from bench.report import build_report

    run_dir = tmp_path / "run"
    marker = tmp_path / "sleeping"
    runner = start_runner(run_dir, marker)
    wait_for(marker, runner)
    runner.send_signal(signal.SIGINT)
    runner.communicate(timeout=60)

    paths = build_report(RunDir(run_dir), tmp_path / "out")
    assert paths["unfinished"] == [
        "tf-baseline-digits-lenet5-s0",
        "torch-baseline-digits-lenet5-s1",
        "tf-baseline-digits-lenet5-s1",
    ]
    markdown = paths["markdown"].read_text()
    section = markdown.split("## Cells without numbers")[1]
    for cell_id in paths["unfinished"]:
        assert f"- {cell_id}: **not run**" in section
    assert f"--resume {run_dir}" in section


def test_report_survives_damaged_run_json(tmp_path):
    from bench.report import build_report

    _, run_dir, _ = run(tmp_path, "LinearBackend", "LinearBackend")
    (run_dir.path / "run.json").write_text("{ damaged")
    paths = build_report(run_dir, tmp_path / "out")
    assert [path.name for path, _ in paths["problems"]] == ["run.json"]
    markdown = paths["markdown"].read_text()
    assert "`run.json`: **unreadable**" in markdown
    assert markdown.count("| baseline |") >= 2


def test_resume_after_training_reuses_own_training(tmp_path):
    reference = tmp_path / "reference"
    run_reference(reference)

    run_dir = tmp_path / "run"
    marker = tmp_path / "sleeping"
    runner = start_runner(run_dir, marker, "SleepyExportBackend")
    wait_for(marker, runner)
    runner.send_signal(signal.SIGINT)
    runner.communicate(timeout=60)
    resumed = start_runner(run_dir, marker, "SleepyExportBackend", "--resume")
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr[-3000:]

    record = records_by_cell(run_dir)["tf-baseline-digits-lenet5-s0"]
    train = record["steps"][0]
    assert train["from_cache"] is False
    assert train["resumed_from_own_cache"] is True
    assert "trained_by_cell" not in record["training"]
    expected = records_by_cell(reference)["tf-baseline-digits-lenet5-s0"]
    # The fake backend's get_weights returns its initial weights, so a network restored from the cache
    # does not predict like the trained one: compare the training, not the accuracy.
    assert record["training"]["epoch_losses"] == expected["training"]["epoch_losses"]
    assert record["training"]["time_to_accuracy"] == expected["training"]["time_to_accuracy"]
