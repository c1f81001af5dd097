"""The runner with fake backends: every way a cell can end is recorded, and the run goes on."""

import csv
import json

import pytest

from bench.report import _machine_line, build_report, wall_time_line
from bench.runner import run_profile
from bench.spec import TimingSpec, get_profile
from bench.store import RunDir

FAKE = "tests.fake_backends:"
REQUIRED_COLUMNS = (
    "framework strategy model dataset runtime seed accuracy f1_macro params size_onnx_bytes size_gzip_bytes "
    "latency_ms_p50 latency_ms_p90 latency_ms_p99 throughput_samples_per_s train_seconds_per_epoch status"
).split()


def fake_profile(**changes):
    timing = TimingSpec(
        warmup_values=1,
        min_values=5,
        min_duration_s=0.0,
        max_duration_s=2.0,
        throughput_batch_size=16,
        throughput_min_values=3,
        throughput_min_duration_s=0.0,
    )
    changes.setdefault("strategies", ("baseline",))
    return get_profile("smoke").with_overrides(epochs=1, train_limit=200, test_limit=100, timing=timing, **changes)


def run(tmp_path, torch_backend, tf_backend, **changes):
    run_dir = RunDir(tmp_path / "runs" / "test-run")
    summary = run_profile(
        fake_profile(**changes),
        run_dir,
        backend_paths={"torch": FAKE + torch_backend, "tf": FAKE + tf_backend},
    )
    records = {record["cell_id"]: record for record in run_dir.read_records()[0]}
    return summary, run_dir, records


def by_framework(records):
    return {record["cell"]["framework"]: record for record in records.values()}


def test_runner_records_working_cells(tmp_path):
    summary, run_dir, records = run(tmp_path, "LinearBackend", "LinearBackend")
    assert summary.exit_code == 0
    assert len(records) == 2
    for record in records.values():
        assert record["status"] == "ok"
        runtimes = {row["runtime"]: row for row in record["runtimes"]}
        assert set(runtimes) == {"numpy", "onnxruntime", "onnxruntime-cuda"}
        # No CUDA provider in the CPU build: the GPU runtime is a skipped row with its reason.
        assert runtimes["onnxruntime-cuda"]["status"] == "skipped"
        assert "CUDAExecutionProvider" in runtimes["onnxruntime-cuda"]["reason"]
        assert runtimes["onnxruntime"]["agreement"]["label_agreement"] == 1.0
        assert runtimes["onnxruntime"]["agreement"]["max_abs_diff_logits"] < 1e-4
        assert record["model"]["size_gzip_bytes"] < record["model"]["size_onnx_bytes"]
        assert record["model"]["onnx_path"] == f"artifacts/{record['cell_id']}/model.onnx"
        assert (run_dir.path / record["model"]["onnx_path"]).is_file()
        assert record["dataset"]["files"] or record["dataset"]["source"]
    assert not (run_dir.path / "tmp").exists()


def test_runner_failed_and_crashed_cells_recorded(tmp_path):
    summary, _, records = run(tmp_path, "RaisingBackend", "DyingBackend")
    cells = by_framework(records)
    assert cells["torch"]["status"] == "failed"
    assert "fake training diverged" in cells["torch"]["error"]["message"]
    assert "Traceback" in cells["torch"]["error"]["traceback"]
    assert cells["tf"]["status"] == "crashed"
    assert "SIGKILL" in cells["tf"]["error"]["message"]
    assert "starting" in cells["tf"]["error"]["log_tail"]
    assert summary.exit_code == 1
    assert set(summary.failures.values()) == {"failed", "crashed"}


def test_runner_missing_step_is_not_a_failure(tmp_path):
    summary, _, records = run(tmp_path, "MissingBackend", "LinearBackend")
    cells = by_framework(records)
    assert cells["torch"]["status"] == "missing"
    assert cells["torch"]["runtimes"] == []
    assert cells["tf"]["status"] == "ok"
    assert summary.exit_code == 0


def test_runner_hanging_cell_times_out(tmp_path):
    summary, _, records = run(tmp_path, "HangingBackend", "LinearBackend", cell_timeout_s=5.0)
    cells = by_framework(records)
    assert cells["torch"]["status"] == "timeout"
    assert "timed out after 5 s" in cells["torch"]["error"]["message"]
    assert cells["tf"]["status"] == "ok"
    assert summary.exit_code == 1


def test_runner_resume_skips_finished_cells(tmp_path):
    _, run_dir, records = run(tmp_path, "LinearBackend", "RaisingBackend")
    first_ok = by_framework(records)["torch"]
    summary = run_profile(
        fake_profile(),
        run_dir,
        backend_paths={"torch": FAKE + "RaisingBackend", "tf": FAKE + "LinearBackend"},
        resume=True,
    )
    records = {r["cell_id"]: r for r in run_dir.read_records()[0]}
    cells = by_framework(records)
    assert summary.skipped == [first_ok["cell_id"]]
    assert cells["torch"]["finished_at"] == first_ok["finished_at"]
    assert cells["tf"]["status"] == "ok"


def test_report_rows_and_columns(tmp_path):
    _, run_dir, _ = run(tmp_path, "LinearBackend", "MissingBackend")
    paths = build_report(run_dir, tmp_path / "out")
    with paths["csv"].open() as handle:
        rows = list(csv.DictReader(handle))
    assert set(REQUIRED_COLUMNS) <= set(rows[0])
    torch_rows = [row for row in rows if row["framework"] == "torch"]
    tf_rows = [row for row in rows if row["framework"] == "tf"]
    assert {row["runtime"] for row in torch_rows} == {"numpy", "onnxruntime", "onnxruntime-cuda"}
    skipped = next(row for row in torch_rows if row["runtime"] == "onnxruntime-cuda")
    assert skipped["status"] == "skipped"
    assert skipped["accuracy"] == "" and skipped["latency_ms_p50"] == ""
    assert "CUDAExecutionProvider" in skipped["skip_reason"]
    assert len(tf_rows) == 1
    assert tf_rows[0]["status"] == "missing"
    assert tf_rows[0]["accuracy"] == ""
    markdown = paths["markdown"].read_text()
    assert "| missing |" in markdown
    assert "not implemented" in markdown
    # A skipped runtime is listed with its reason, never as a row of the Results table.
    results_table = markdown.split("\n## Results\n")[1].split("\n## ")[0]
    assert "### baseline" in results_table
    assert "| torch | baseline | digits | numpy |" in results_table
    assert "onnxruntime-cuda" not in results_table
    not_measured = markdown.split("### Runtimes not measured on this machine")[1].split("##")[0]
    assert "| onnxruntime-cuda | torch | 1 |" in not_measured
    runtimes_table = markdown.split("## Runtime measurements")[1].split("##")[0]
    assert "| torch | baseline | 0 | numpy |" in runtimes_table


def test_report_lists_corrupt_record(tmp_path):
    _, run_dir, _ = run(tmp_path, "LinearBackend", "LinearBackend")
    (run_dir.records_dir / "broken.json").write_text("{ not json")
    paths = build_report(run_dir, tmp_path / "out")
    assert "broken.json" in paths["markdown"].read_text()


def test_record_is_valid_json_without_nan(tmp_path):
    _, run_dir, _ = run(tmp_path, "LinearBackend", "LinearBackend")
    for path in run_dir.records_dir.glob("*.json"):
        json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{path} contains {name}"))


def test_report_compares_frameworks(tmp_path):
    _, run_dir, _ = run(tmp_path, "LinearBackend", "LinearBackend")
    markdown = build_report(run_dir, tmp_path / "out")["markdown"].read_text()
    assert "## torch vs tf" in markdown
    comparison = markdown.split("## torch vs tf")[1]
    assert "| baseline | digits | 0 |" in comparison
    # Both fake cells train the same numpy model on the same order, so the gap is exactly zero.
    assert "+0.00 |" in comparison


def test_wall_time_line_spans_a_resumed_run():
    info = {"started_at": "2026-12-05T07:19:13+00:00", "resumed_at": ["2026-12-05T08:44:06+00:00"]}
    records = [
        {"finished_at": "2026-12-05T07:49:58+00:00", "wall_seconds": 1800.0},
        {"finished_at": "2026-12-05T09:30:30+01:00", "wall_seconds": 2700.5},
    ]
    line = wall_time_line(info, records)
    # The span runs to the latest finish (08:30 UTC), whatever offset the record carries.
    assert line.startswith("1 h 11 min from the start (2026-12-05 07:19 UTC) to the last record (2026-12-05 08:30 UTC)")
    assert ", resumed once;" in line
    assert line.endswith("the 2 cells' own times add up to 1 h 15 min")
    assert wall_time_line({}, records).startswith("unknown")
    assert wall_time_line(info, []).startswith("unknown")


def test_report_header_names_the_wall_time(tmp_path):
    _, run_dir, _ = run(tmp_path, "LinearBackend", "LinearBackend")
    markdown = build_report(run_dir, tmp_path / "out")["markdown"].read_text()
    assert "- wall time: " in markdown
    assert "the 2 cells' own times add up to" in markdown


def test_machine_line_says_when_the_tree_was_dirty():
    env = {"cpu_model": "AMD EPYC", "physical_cores": 2, "memory_total_bytes": 24 * 2**30, "git_commit": "a" * 40}
    clean = _machine_line({**env, "git_dirty": False})
    assert clean.startswith("AMD EPYC, 2 physical cores, 24.0 GiB RAM, ")
    assert clean.endswith("git commit aaaaaaaaaaaa")
    assert _machine_line({**env, "git_dirty": True}).endswith("(the tree had uncommitted or untracked files)")
    assert _machine_line({**env, "git_dirty": None}).endswith("(tree state unknown)")
