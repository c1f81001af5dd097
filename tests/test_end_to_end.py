"""`python -m bench all --profile smoke` through the real CLI, both frameworks, real (small) data."""

import csv
import subprocess
import sys

import pytest

from tests.frameworks import needs_both


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "all", "--profile", "smoke", "--strategies", "baseline", "--results-dir", str(results)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    return completed, results


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
    results_table = markdown.split("## Results")[1].split("##")[0]
    assert results_table.count("| baseline |") == len(rows)
    assert "## torch vs tf" in markdown


@needs_both
def test_smoke_run_progress_log(smoke_run):
    completed, _ = smoke_run
    assert "epoch 3/3" in completed.stderr
    assert "[2/2]" in completed.stderr
