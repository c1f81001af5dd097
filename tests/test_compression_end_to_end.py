"""Every compression strategy through the real CLI in both frameworks, on a small real dataset."""

import json
import subprocess
import sys

import pytest

from tests.frameworks import needs_both

STRATEGIES = ("baseline", "prune-unstructured", "prune-structured", "lowrank", "quantize", "compress")
# int8 accuracy may drop this much below fp32 on the 200-image test subset (1 image = 0.5 points).
INT8_ACCURACY_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    command = [
        sys.executable, "-m", "bench", "all", "--profile", "smoke",
        "--strategies", ",".join(STRATEGIES),
        "--train-limit", "400", "--test-limit", "200", "--epochs", "2",
        "--results-dir", str(results),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert completed.returncode == 0, completed.stderr[-6000:]
    loaded = {}
    for path in (results / "runs").glob("*/records/*.json"):
        record = json.loads(path.read_text())
        loaded[(record["cell"]["strategy"], record["cell"]["framework"])] = record
    return loaded


def runtime(record, name):
    return next(row for row in record["runtimes"] if row["runtime"] == name)


@needs_both
def test_all_strategies_ok(records):
    for strategy in STRATEGIES:
        for framework in ("torch", "tf"):
            assert records[(strategy, framework)]["status"] == "ok", (strategy, framework)


@needs_both
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_smaller_network_same_across_frameworks(records, strategy):
    torch_record = records[(strategy, "torch")]
    tf_record = records[(strategy, "tf")]
    if strategy == "compress":
        # Each framework's search may pick another candidate when validation accuracies land on either
        # side of the threshold, but every candidate builds the same network in both frameworks.
        torch_search = next(step for step in torch_record["steps"] if step["step"] == "search")
        tf_search = next(step for step in tf_record["steps"] if step["step"] == "search")
        for torch_candidate, tf_candidate in zip(torch_search["candidates"], tf_search["candidates"]):
            assert torch_candidate["params"] == tf_candidate["params"]
        return
    assert torch_record["model"]["params"] == tf_record["model"]["params"]
    assert torch_record["model"]["fingerprint"] == tf_record["model"]["fingerprint"]


@needs_both
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_onnx_export_matches_native(records, strategy, framework):
    agreement = runtime(records[(strategy, framework)], "onnxruntime")["agreement"]
    assert agreement["label_agreement"] >= 0.995
    assert agreement["max_abs_diff_logits"] < 1e-3


@needs_both
@pytest.mark.parametrize("strategy", ["prune-structured", "lowrank"])
def test_structural_decision_shared(records, strategy):
    torch_step = records[(strategy, "torch")]["steps"][-1]
    tf_step = records[(strategy, "tf")]["steps"][-1]
    assert torch_step["decision"] == "computed here"
    assert tf_step["decision"] == f"loaded from {records[(strategy, 'torch')]['cell_id']}"


@needs_both
def test_unstructured_sparsity_reached(records):
    for framework in ("torch", "tf"):
        model = records[("prune-unstructured", framework)]["model"]
        step = records[("prune-unstructured", framework)]["steps"][-1]
        assert step["sparsity"]["total"]["sparsity"] == pytest.approx(0.9, abs=1e-3)
        assert model["macs_effective"] < 0.5 * model["macs_dense"]
        assert model["size_gzip_bytes"] < 0.5 * records[("baseline", framework)]["model"]["size_gzip_bytes"]


@needs_both
def test_unstructured_sparsity_equal_across_frameworks(records):
    torch_step = records[("prune-unstructured", "torch")]["steps"][-1]["sparsity"]
    tf_step = records[("prune-unstructured", "tf")]["steps"][-1]["sparsity"]
    assert torch_step["total"]["nonzero"] == tf_step["total"]["nonzero"]


@needs_both
@pytest.mark.parametrize("strategy", ["prune-structured", "lowrank"])
def test_structural_steps_reduce_macs(records, strategy):
    for framework in ("torch", "tf"):
        model = records[(strategy, framework)]["model"]
        assert model["macs_dense"] < 416_520
        assert model["params"] < 61_706


@needs_both
@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_quantized_rows_within_tolerance(records, framework):
    row = runtime(records[("quantize", framework)], "onnxruntime-int8")
    assert row["status"] == "ok"
    assert row["accuracy_drop_vs_fp32"] <= INT8_ACCURACY_TOLERANCE
    assert row["model_size"]["size_int8_bytes"] < records[("quantize", framework)]["model"]["size_onnx_bytes"]
    assert row["coverage"]["quantized_nodes"]


@needs_both
@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_compress_search_trains_without_validation_images(records, framework):
    record = records[("compress", framework)]
    train_step = record["steps"][0]
    baseline_key = records[("baseline", framework)]["steps"][0]["cache_key"]
    assert train_step["step"] == "train"
    assert train_step["cache_key"] != baseline_key
    assert not train_step["from_cache"]


@needs_both
@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_compress_search_recorded(records, framework):
    search = next(step for step in records[("compress", framework)]["steps"] if step["step"] == "search")
    assert len(search["candidates"]) == 5
    candidates = search["candidates"]
    chosen = candidates[search["chosen"]]
    qualifying = [c for c in candidates if c["qualifies"]]
    if qualifying:
        assert search["chosen_qualifies"]
        assert chosen["size_gzip_bytes"] == min(c["size_gzip_bytes"] for c in qualifying)
    else:
        assert chosen["validation_accuracy"] == max(c["validation_accuracy"] for c in candidates)
