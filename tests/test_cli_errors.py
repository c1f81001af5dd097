"""Bad places to write and damaged run files: one clear error line, exit code 2, nothing written."""

import os

import pytest

from bench.cli import main
from bench.spec import get_profile
from bench.store import RunDir


def test_results_dir_under_a_file_rejected(tmp_path, caplog):
    blocker = tmp_path / "results.txt"
    blocker.write_text("a file, not a directory")
    assert main(["all", "--profile", "smoke", "--results-dir", str(blocker / "results")]) == 2
    assert f"cannot create a run directory under {blocker / 'results' / 'runs'}" in caplog.text
    assert "--results-dir" in caplog.text
    assert "Traceback" not in caplog.text


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_results_dir_rejected(tmp_path, caplog):
    results = tmp_path / "results"
    results.mkdir()
    results.chmod(0o555)
    try:
        assert main(["all", "--profile", "smoke", "--results-dir", str(results)]) == 2
    finally:
        results.chmod(0o755)
    assert "Permission denied" in caplog.text
    assert list(results.iterdir()) == []


def test_resume_with_corrupt_run_json(tmp_path, caplog):
    run_dir = tmp_path / "runs" / "RUN"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text('{"profile": {"name": "smo')
    assert main(["all", "--resume", str(run_dir)]) == 2
    assert f"{run_dir / 'run.json'} is not valid JSON" in caplog.text


def test_resume_of_locked_run_names_holder(tmp_path, caplog):
    run_dir = RunDir(tmp_path / "runs" / "RUN")
    run_dir.write_run_info({"profile": get_profile("smoke").to_dict()})
    lock = run_dir.lock()
    lock.acquire({"command": "python -m bench all --profile smoke", "started_at": "2026-12-05T06:00:00+00:00"})
    try:
        assert main(["all", "--resume", str(run_dir.path)]) == 2
    finally:
        lock.release()
    assert f"is in use by process {os.getpid()}" in caplog.text
    assert "command: python -m bench all --profile smoke" in caplog.text
    assert not run_dir.records_dir.exists()


def test_new_runs_in_same_second_get_distinct_directories(tmp_path):
    from datetime import datetime, timezone

    from bench.store import create_run_dir

    now = datetime(2026, 12, 5, 6, 0, 0, tzinfo=timezone.utc)
    first, second = create_run_dir(tmp_path, now), create_run_dir(tmp_path, now)
    assert first.run_id == "20261205T060000Z"
    assert second.run_id == "20261205T060000Z-2"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--epochs", "3"], "--epochs"),
        (["--learning-rate", "0.1", "--seeds", "0,1"], "--learning-rate, --seeds"),
        (["--frameworks", "torch"], "--frameworks"),
    ],
)
def test_resume_rejection_names_options_as_typed(tmp_path, caplog, options, named):
    run_dir = RunDir(tmp_path / "runs" / "RUN")
    run_dir.write_run_info({"profile": get_profile("smoke").to_dict()})
    assert main(["all", "--resume", str(run_dir.path), *options]) == 2
    assert f"drop {named} or start a new run" in caplog.text
    assert "--cell-timeout and --cell-memory-limit may change" in caplog.text


def test_run_rejection_names_single_framework_option(tmp_path, caplog):
    run_dir = RunDir(tmp_path / "runs" / "RUN")
    run_dir.write_run_info({"profile": get_profile("smoke").to_dict()})
    assert main(["run", "--resume", str(run_dir.path), "--framework", "torch"]) == 2
    assert "drop --framework or" in caplog.text


@pytest.mark.parametrize("value", ["baseline,,quantize", ",", ""])
def test_empty_name_in_list_rejected(value, capsys):
    with pytest.raises(SystemExit) as raised:
        main(["all", "--strategies", value])
    assert raised.value.code == 2
    assert "expected comma-separated names" in capsys.readouterr().err


def test_report_of_missing_run_directory(tmp_path, caplog):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert f"run directory {tmp_path / 'nope'} not found" in caplog.text


def test_latest_run_skips_claim_runs(tmp_path):
    from bench.store import latest_run_dir

    for run_id, profile in (("20261201T000000Z", "quick"), ("20261202T000000Z", "claim")):
        run_dir = RunDir(tmp_path / run_id)
        run_dir.records_dir.mkdir(parents=True)
        run_dir.write_run_info({"profile": {"name": profile}})
    assert latest_run_dir(tmp_path).run_id == "20261201T000000Z"
