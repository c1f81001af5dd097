"""`python -m bench all --profile smoke` through the real CLI, both frameworks, real (small) data."""

import csv
import json
import subprocess
import sys

import pytest

from tests.frameworks import needs_both


def run_smoke(results, *options):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "all",
            "--profile",
            "smoke",
            "--strategies",
            "baseline",
            "--results-dir",
            str(results),
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    return run_smoke(results), results


def records(results):
    return {
        path.stem: json.loads(path.read_text())
        for path in (results / "runs").glob("*/records/*.json")
    }


@needs_both
def test_smoke_run_exits_zero(smoke_run):
    completed, _ = smoke_run
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "2 ok" in completed.stdout


@needs_both
def test_smoke_run_writes_records(smoke_run):
    _, results = smoke_run
    records = list((results / "runs").glob("*/records/*.json"))
    assert len(records) == 2


@needs_both
def test_smoke_run_report_has_both_frameworks(smoke_run):
    _, results = smoke_run
    with (results / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    runtimes = {(row["framework"], row["runtime"]): row for row in rows}
    for framework, runtime in (
        ("torch", "torch-eager"),
        ("torch", "torch-compile"),
        ("torch", "onnxruntime"),
        ("tf", "tf-eager"),
        ("tf", "tf-function"),
        ("tf", "tf-xla"),
        ("tf", "onnxruntime"),
    ):
        assert runtimes[framework, runtime]["status"] == "ok", runtimes[framework, runtime]
    # Compiling runtimes report their compile time apart from latency, one value per batch size.
    for framework, runtime in (("torch", "torch-compile"), ("tf", "tf-xla")):
        row = runtimes[framework, runtime]
        assert float(row["compile_ms"]) > 0
        assert "batch 1:" in row["compile_ms_by_batch"]
        assert row["accuracy"] == runtimes[framework, "onnxruntime"]["accuracy"]
    # The CUDA runtimes always have a row: measured on a GPU machine, else skipped with a reason and
    # no numbers (CI has no GPU).
    assert {"torch-eager-cuda", "torch-compile-cuda", "tf-function-gpu", "onnxruntime-cuda"} <= {
        runtime for _, runtime in runtimes
    }
    skipped = [row for row in rows if row["status"] == "skipped"]
    for row in skipped:
        assert row["skip_reason"] and row["accuracy"] == "" and row["latency_ms_p50"] == ""
    rows = [row for row in rows if row["status"] != "skipped"]
    for row in rows:
        assert row["status"] == "ok"
        assert float(row["accuracy"]) > 0.5, row
        assert int(row["params"]) == 61_706
        assert float(row["latency_ms_p50"]) > 0
        assert float(row["throughput_samples_per_s"]) > 0
    markdown = (results / "README.md").read_text()
    results_table = markdown.split("\n## Results\n")[1].split("\n## ")[0]
    assert results_table.count("| baseline |") == len(rows)
    assert "## torch vs tf" in markdown


@needs_both
def test_smoke_run_stores_parity_report(smoke_run):
    _, results = smoke_run
    (parity_path,) = (results / "runs").glob("*/parity.json")
    report = json.loads(parity_path.read_text())
    assert report["passed"] is True, report["problems"]
    assert set(report["frameworks"]) == {"torch", "tf"}
    assert report["comparisons"][0]["logits_max_abs_diff"] < report["tolerances"]["logits_across_frameworks"]


@needs_both
def test_smoke_run_progress_log(smoke_run):
    completed, _ = smoke_run
    assert "epoch 3/3" in completed.stderr
    assert "[2/2]" in completed.stderr


@needs_both
def test_same_seed_reproduces_bit_for_bit(smoke_run, tmp_path):
    """A second run with the same seed on the same machine trains to identical weights and accuracies."""
    _, first_results = smoke_run
    completed = run_smoke(tmp_path, "--no-parity")
    assert completed.returncode == 0, completed.stderr[-4000:]
    first, second = records(first_results), records(tmp_path)
    assert sorted(first) == sorted(second) == [
        "tf-baseline-digits-lenet5-s0",
        "torch-baseline-digits-lenet5-s0",
    ]
    for cell_id, record in first.items():
        again = second[cell_id]
        assert again["model"]["weights_sha256"] == record["model"]["weights_sha256"], cell_id
        assert again["training"]["epoch_losses"] == record["training"]["epoch_losses"], cell_id
        quality = {row["runtime"]: row["quality"] for row in record["runtimes"] if row.get("quality")}
        quality_again = {row["runtime"]: row["quality"] for row in again["runtimes"] if row.get("quality")}
        assert len(quality) >= 3
        for runtime, scores in quality.items():
            assert quality_again[runtime]["accuracy"] == scores["accuracy"], (cell_id, runtime)
            assert quality_again[runtime]["confusion_matrix"] == scores["confusion_matrix"], (cell_id, runtime)
