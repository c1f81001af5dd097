"""The CLI and the harness modules, without running any framework."""

import json
import subprocess
import sys

import pytest

from bench.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=120)


def test_harness_imports_no_framework():
    code = (
        "import sys, bench.cli, bench.runner, bench.report, bench.cell, bench.parity, bench.data, bench.measure;"
        "bad = [m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules];"
        "assert not bad, bad"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr


def test_list_names_everything():
    completed = run_cli("list")
    assert completed.returncode == 0, completed.stderr
    for word in ("lenet5", "61,706", "baseline", "fashion-mnist", "mnist-5k", "digits", "onnxruntime"):
        assert word in completed.stdout
    quick_line = next(line for line in completed.stdout.splitlines() if line.strip().startswith("quick"))
    assert quick_line.endswith("(default)")


def test_unknown_profile_lists_valid_ones(caplog):
    assert main(["all", "--profile", "huge"]) == 2
    assert "valid profiles: smoke, quick, full, claim" in caplog.text


def test_invalid_override_names_field(caplog):
    assert main(["all", "--profile", "smoke", "--epochs", "0"]) == 2
    assert "--epochs must be an integer in [1, 10000], got 0" in caplog.text


def test_unknown_strategy_lists_valid_ones(caplog):
    assert main(["run", "--strategy", "magic", "--profile", "smoke"]) == 2
    assert "valid strategies: adversarial, augment, baseline" in caplog.text


def test_bad_seeds_argument():
    completed = run_cli("all", "--seeds", "a,b")
    assert completed.returncode == 2
    assert "comma-separated integers" in completed.stderr


def test_resume_missing_directory(tmp_path, caplog):
    assert main(["all", "--profile", "smoke", "--resume", str(tmp_path / "nope")]) == 2
    assert "no such run directory" in caplog.text


def test_report_without_runs(tmp_path, caplog):
    assert main(["report", "--results-dir", str(tmp_path)]) == 2
    assert "python -m bench all" in caplog.text


def test_env_prints_json():
    completed = run_cli("env")
    assert completed.returncode == 0, completed.stderr
    manifest = json.loads(completed.stdout)
    assert "hardware_fingerprint" in manifest
    assert "packages" in manifest


@pytest.mark.parametrize("command", ["all", "run", "list", "report", "data", "env", "parity"])
def test_help_for_every_command(command):
    completed = run_cli(command, "--help")
    assert completed.returncode == 0
    assert "usage:" in completed.stdout


def _recorded_run(tmp_path):
    from bench.spec import get_profile
    from bench.store import RunDir

    run_dir = RunDir(tmp_path / "results" / "runs" / "RUN")
    run_dir.write_run_info({"profile": get_profile("smoke").to_dict()})
    return run_dir


def test_resume_rejects_profile_changes(tmp_path, caplog):
    run_dir = _recorded_run(tmp_path)
    assert main(["all", "--resume", str(run_dir.path), "--epochs", "3"]) == 2
    assert "drop --epochs" in caplog.text
    assert main(["all", "--resume", str(run_dir.path), "--profile", "quick"]) == 2
    assert "drop --profile" in caplog.text


def test_resume_needs_run_json(tmp_path, caplog):
    (tmp_path / "empty").mkdir()
    assert main(["all", "--resume", str(tmp_path / "empty")]) == 2
    assert "no run.json" in caplog.text


def test_profile_round_trips_through_dict():
    from bench.spec import Profile, get_profile

    for name in ("smoke", "quick", "full"):
        profile = get_profile(name)
        assert Profile.from_dict(profile.to_dict()) == profile


def test_missing_data_dir_rejected(tmp_path, caplog):
    assert main(["all", "--profile", "smoke", "--data-dir", str(tmp_path / "nope")]) == 2
    assert "no such directory" in caplog.text


def test_parity_summary_lines():
    from bench.cli import format_parity

    report = {
        "model": "lenet5",
        "fingerprint": "abc",
        "seed": 0,
        "tolerances": {"onnx_vs_native_logits": 1e-4, "trained_weights_across_frameworks": 1e-5},
        "frameworks": {"torch": {"parameters": 61706, "onnx_max_abs_diff": 5e-7}},
        "comparisons": [
            {
                "frameworks": ["torch", "tf"],
                "logits_max_abs_diff": 7e-7,
                "trained_weights_max_abs_diff": 9e-8,
                "pruned_weights_max_abs_diff": 1e-7,
                "pruning_masks_equal": False,
            }
        ],
        "problems": ["torch vs tf: pruning masks differ"],
        "passed": False,
    }
    text = format_parity(report)
    assert "torch: 61,706 parameters" in text
    assert "masks DIFFERENT" in text
    assert "problem: torch vs tf: pruning masks differ" in text
    assert text.splitlines()[-1] == "FAILED"


def test_list_names_int8_runtimes(capsys):
    assert main(["list"]) == 0
    output = capsys.readouterr().out
    for runtime in ("onnxruntime-int8", "torch-int8-pt2e", "tflite-int8"):
        assert runtime in output
