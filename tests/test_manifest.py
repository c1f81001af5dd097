"""Tests for bench.manifest, `python -m bench env` and the manifest in run.json and records."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import manifest
from bench.cli import main
from bench.data import DatasetNotFoundError
from bench.manifest import (
    CELL_ENV_VARS,
    cell_manifest,
    collect_framework_entries,
    dataset_checksums,
    fairness_manifest,
    framework_entry,
    framework_settings,
    group_settings,
    run_manifest,
)
from bench.measure import environment
from bench.spec import get_profile
from tests.frameworks import needs_both

FAKE = "tests.fake_backends:"
REPO_ROOT = Path(__file__).resolve().parents[1]

TORCH_SETTINGS = {
    "torch_intra_op_threads": 2,
    "torch_inter_op_threads": 1,
    "torch_deterministic_algorithms": True,
    "torch_tf32": False,
    "torch_float32_matmul_precision": "highest",
    "torch_mkldnn_enabled": True,
    "torch_compile": {"backend": "inductor", "mode": "default"},
    "device": "cpu",
}
TF_SETTINGS = {
    "tf_intra_op_threads": 2,
    "tf_inter_op_threads": 1,
    "tf_onednn_opts": "default (on for x86 CPU)",
    "tf32": False,
    "tf_xla": {"jit_compile": True},
    "tf_op_determinism": True,
}
PROVENANCE = {
    "name": "digits",
    "source": "scikit-learn",
    "location": "/somewhere",
    "files": [{"path": "/somewhere/digits.csv.gz", "sha256": "ab" * 32, "bytes": 57523}],
    "train_size": 1437,
    "test_size": 360,
    "train_limit": None,
    "normalization": {"mean": 0.1, "std": 0.3},
}
FAKE_PEAK = {"threads": 2, "reference": "formula", "formula": {"flops": 1e11}, "sgemm": {"flops": 5e10}}
RUN_LEVEL_KEYS = {"profile", "packages", "git_commit", "git_dirty", "cpu_model", "cpu_flags", "hardware_fingerprint",
                  "cell_env_vars", "threads", "timing", "batch_sizes", "dataset", "compute_peak"}


def fake_run_parts(**changes):
    profile = get_profile("smoke").with_overrides(**changes)
    cell_env = {"OMP_NUM_THREADS": "2", "TF_NUM_INTEROP_THREADS": "1", "UNRELATED": "x"}
    return run_manifest(profile, 2, environment(), PROVENANCE, FAKE_PEAK, cell_env)


# --- grouping framework settings ---


def test_group_torch_settings() -> None:
    groups = group_settings(TORCH_SETTINGS)

    assert groups["threads"] == {"torch_intra_op_threads": 2, "torch_inter_op_threads": 1}
    assert groups["tf32"] == {"torch_tf32": False, "torch_float32_matmul_precision": "highest"}
    assert groups["onednn"] == {"torch_mkldnn_enabled": True}
    assert groups["compiler"] == {"torch_compile": {"backend": "inductor", "mode": "default"}}
    assert groups["other"] == {"torch_deterministic_algorithms": True, "device": "cpu"}


def test_group_tf_settings() -> None:
    groups = group_settings(TF_SETTINGS)

    assert groups["threads"] == {"tf_intra_op_threads": 2, "tf_inter_op_threads": 1}
    assert groups["tf32"] == {"tf32": False}
    assert groups["onednn"] == {"tf_onednn_opts": "default (on for x86 CPU)"}
    assert groups["compiler"] == {"tf_xla": {"jit_compile": True}}
    assert groups["other"] == {"tf_op_determinism": True}


def test_group_keeps_every_key_once() -> None:
    settings = {**TORCH_SETTINGS, **TF_SETTINGS, "tf_tf32": True, "a_new_setting": [1, 2]}

    groups = group_settings(settings)

    merged = {key: value for group in groups.values() for key, value in group.items()}
    assert merged == settings
    assert sum(len(group) for group in groups.values()) == len(settings)
    assert groups["tf32"]["tf_tf32"] is True
    assert groups["other"]["a_new_setting"] == [1, 2]


def test_framework_entry_without_settings() -> None:
    entry = framework_entry("skipped", None, None, "not installed")

    assert entry == {"status": "skipped", "reason": "not installed", "versions": None}


# --- run-level parts ---


def test_run_manifest_settings() -> None:
    parts = fake_run_parts()
    smoke = get_profile("smoke")

    assert RUN_LEVEL_KEYS <= set(parts)
    assert parts["profile"] == "smoke"
    assert parts["timing"]["warmup_values"] == smoke.timing.warmup_values
    assert parts["timing"]["min_values"] == smoke.timing.min_values
    assert parts["timing"]["max_duration_s"] == smoke.timing.max_duration_s
    assert parts["batch_sizes"] == {"latency": 1, "throughput": 64, "training": 32}
    assert parts["threads"] == {"intra_op": 2, "inter_op": 1, "source": "physical cores"}
    assert parts["compute_peak"] == FAKE_PEAK
    assert json.loads(json.dumps(parts)) == parts


def test_run_manifest_cell_env_vars() -> None:
    parts = fake_run_parts()

    assert set(parts["cell_env_vars"]) == set(CELL_ENV_VARS)
    assert parts["cell_env_vars"]["OMP_NUM_THREADS"] == "2"
    assert parts["cell_env_vars"]["TF_ENABLE_ONEDNN_OPTS"] is None
    assert "UNRELATED" not in parts["cell_env_vars"]


def test_run_manifest_threads_from_profile() -> None:
    assert fake_run_parts(threads=2)["threads"]["source"] == "the profile's threads setting (--threads)"


def test_run_manifest_dataset_checksums() -> None:
    dataset = fake_run_parts()["dataset"]

    assert dataset["name"] == "digits"
    assert dataset["files"] == [{"path": "/somewhere/digits.csv.gz", "sha256": "ab" * 32, "bytes": 57523}]
    assert "normalization" not in dataset


def test_run_manifest_keeps_dataset_error() -> None:
    profile = get_profile("smoke")
    error = {"name": "digits", "error": "dataset digits not found"}

    parts = run_manifest(profile, 1, environment(), error, None, {})

    assert parts["dataset"] == error
    assert parts["compute_peak"] is None


def test_dataset_checksums_without_files() -> None:
    assert dataset_checksums({"name": "x"})["files"] == []


# --- whole manifests ---


def test_fairness_manifest_adds_frameworks() -> None:
    parts = fake_run_parts()
    entries = {"torch": framework_entry("ok", TORCH_SETTINGS, {"torch": "2.14.1"})}

    result = fairness_manifest(parts, entries)

    assert result["frameworks"]["torch"]["versions"] == {"torch": "2.14.1"}
    assert result["frameworks"]["torch"]["threads"]["torch_intra_op_threads"] == 2
    assert "frameworks" not in parts


def test_cell_manifest_with_settings() -> None:
    result = cell_manifest(fake_run_parts(), "tf", "ok", TF_SETTINGS, {"tensorflow": "2.21.0"})

    assert list(result["frameworks"]) == ["tf"]
    assert result["frameworks"]["tf"]["status"] == "ok"
    assert result["frameworks"]["tf"]["compiler"] == {"tf_xla": {"jit_compile": True}}


def test_cell_manifest_without_settings() -> None:
    result = cell_manifest(fake_run_parts(), "tf", "crashed", None, None)

    entry = result["frameworks"]["tf"]
    assert entry["status"] == "not recorded"
    assert "crashed" in entry["reason"]


# --- framework settings in child processes ---


def test_framework_settings_adds_onnxruntime_threads() -> None:
    result = framework_settings("torch", 3, FAKE + "LinearBackend")

    assert result["fairness"] == {"fake_threads": 3, "onnxruntime_intra_op_threads": 3, "onnxruntime_inter_op_threads": 1}
    assert "numpy" in result["versions"]


def test_collect_entries_with_fake_backends(tmp_path) -> None:
    from bench.runner import child_environment

    entries = collect_framework_entries(
        ("torch", "tf"),
        2,
        child_environment(2),
        work_dir=tmp_path,
        timeout_s=60,
        backend_paths={"torch": FAKE + "LinearBackend", "tf": FAKE + "NoSuchBackend"},
    )

    assert list(entries) == ["torch", "tf"]
    assert entries["torch"]["status"] == "ok"
    assert entries["torch"]["threads"] == {
        "fake_threads": 2,
        "onnxruntime_intra_op_threads": 2,
        "onnxruntime_inter_op_threads": 1,
    }
    assert entries["tf"]["status"] == "failed"
    assert "NoSuchBackend" in entries["tf"]["reason"]


def test_collect_skips_missing_framework(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(manifest.FRAMEWORK_MODULES, "tf", "no_such_module_twinbench")

    entries = collect_framework_entries(("tf",), 1, {}, work_dir=tmp_path)

    assert entries["tf"]["status"] == "skipped"
    assert "no_such_module_twinbench is not installed" in entries["tf"]["reason"]


# --- python -m bench env ---


def test_env_without_frameworks(capsys) -> None:
    start = time.perf_counter()
    status = main(["env", "--profile", "smoke", "--threads", "1", "--no-frameworks"])
    seconds = time.perf_counter() - start

    assert status == 0
    printed = json.loads(capsys.readouterr().out)
    assert RUN_LEVEL_KEYS | {"frameworks"} <= set(printed)
    assert printed["threads"]["intra_op"] == 1
    assert printed["cell_env_vars"]["OMP_NUM_THREADS"] == "1"
    assert printed["dataset"]["name"] == "digits"
    assert printed["dataset"]["files"][0]["sha256"]
    assert printed["compute_peak"]["threads"] == 1
    assert printed["compute_peak"]["reference"] in ("formula", "sgemm")
    assert {entry["status"] for entry in printed["frameworks"].values()} == {"skipped"}
    assert set(printed["frameworks"]) == {"torch", "tf"}
    assert seconds < 30


def test_env_reports_missing_dataset(capsys, monkeypatch) -> None:
    def not_found(name, data_dir=None):
        raise DatasetNotFoundError(f"dataset {name} not found. Searched:\n  nowhere", ["nowhere"])

    monkeypatch.setattr("bench.data.verify_dataset", not_found)

    status = main(["env", "--profile", "quick", "--threads", "1", "--no-frameworks"])

    assert status == 0
    dataset = json.loads(capsys.readouterr().out)["dataset"]
    assert dataset["name"] == "fashion-mnist"
    assert "not found" in dataset["error"]


def test_env_rejects_invalid_threads(caplog) -> None:
    assert main(["env", "--threads", "0", "--no-frameworks"]) == 2
    assert "--threads must be an integer" in caplog.text


def test_env_rejects_missing_data_dir(tmp_path, caplog) -> None:
    assert main(["env", "--data-dir", str(tmp_path / "nope"), "--no-frameworks"]) == 2
    assert "no such directory" in caplog.text


@needs_both
@pytest.mark.slow
def test_env_with_both_frameworks() -> None:
    start = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "env", "--profile", "smoke", "--threads", "1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    seconds = time.perf_counter() - start

    assert completed.returncode == 0, completed.stderr[-3000:]
    frameworks = json.loads(completed.stdout)["frameworks"]
    torch_entry, tf_entry = frameworks["torch"], frameworks["tf"]
    assert torch_entry["status"] == "ok"
    assert tf_entry["status"] == "ok"
    assert torch_entry["threads"]["torch_intra_op_threads"] == 1
    assert torch_entry["threads"]["torch_inter_op_threads"] == 1
    assert tf_entry["threads"]["tf_intra_op_threads"] == 1
    assert tf_entry["threads"]["tf_inter_op_threads"] == 1
    assert torch_entry["threads"]["onnxruntime_intra_op_threads"] == 1
    assert torch_entry["versions"]["torch"]
    assert tf_entry["versions"]["tensorflow"]
    assert seconds < 60


# --- the runner ---


def test_runner_writes_manifest(tmp_path) -> None:
    from bench.runner import run_profile
    from bench.spec import TimingSpec
    from bench.store import RunDir

    timing = TimingSpec(
        warmup_values=1,
        min_values=3,
        min_duration_s=0.0,
        max_duration_s=1.0,
        throughput_batch_size=16,
        throughput_min_values=3,
        throughput_min_duration_s=0.0,
    )
    profile = get_profile("smoke").with_overrides(
        epochs=1, train_limit=100, test_limit=50, timing=timing, strategies=("baseline",), threads=1
    )
    run_dir = RunDir(tmp_path / "runs" / "manifest-run")

    run_profile(profile, run_dir, backend_paths={"torch": FAKE + "LinearBackend", "tf": FAKE + "RaisingBackend"})

    run_parts = run_dir.read_run_info()["manifest"]
    assert RUN_LEVEL_KEYS <= set(run_parts)
    assert run_parts["compute_peak"]["threads"] == 1
    assert run_parts["cell_env_vars"]["OMP_NUM_THREADS"] == "1"
    records = {record["cell"]["framework"]: record for record in run_dir.read_records()[0]}
    torch_manifest, tf_manifest = records["torch"]["manifest"], records["tf"]["manifest"]
    assert torch_manifest["compute_peak"] == run_parts["compute_peak"]
    assert torch_manifest["frameworks"]["torch"]["status"] == "ok"
    assert torch_manifest["frameworks"]["torch"]["threads"]["fake_threads"] == 1
    assert list(tf_manifest["frameworks"]) == ["tf"]
    assert tf_manifest["frameworks"]["tf"]["status"] == "not recorded"
    # The keys the report reads are unchanged.
    assert records["torch"]["fairness"]["threads"] == 1
    assert records["torch"]["environment"]["framework_versions"]


def test_manifest_imports_no_framework() -> None:
    code = (
        "import sys\n"
        "from bench.manifest import run_manifest\n"
        "from bench.measure.peak import compute_peak\n"
        "compute_peak(1, measure_sgemm=False)\n"
        "loaded = [name for name in ('torch', 'tensorflow', 'keras') if name in sys.modules]\n"
        "assert not loaded, loaded\n"
    )

    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )

    assert completed.returncode == 0, completed.stderr
