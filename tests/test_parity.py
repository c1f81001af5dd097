"""Both backends compute the same network: canonical weights in, equal logits out, ONNX matches native."""

import pytest

from bench.parity import FRAMEWORK_LOGITS_ATOL, ONNX_LOGITS_ATOL, TRAINED_WEIGHTS_ATOL, check_parity
from tests.frameworks import needs_both


@pytest.fixture(scope="module")
def parity_report():
    return check_parity("lenet5", seed=0, batch_size=16)


@needs_both
def test_parity_passes(parity_report):
    assert parity_report["problems"] == []
    assert parity_report["passed"]


@needs_both
def test_parity_logits_equal_within_1e5(parity_report):
    (comparison,) = parity_report["comparisons"]
    assert comparison["logits_max_abs_diff"] <= FRAMEWORK_LOGITS_ATOL
    assert FRAMEWORK_LOGITS_ATOL == 1e-5


@needs_both
def test_parity_training_steps_agree(parity_report):
    (comparison,) = parity_report["comparisons"]
    assert comparison["trained_weights_max_abs_diff"] <= TRAINED_WEIGHTS_ATOL
    torch_losses = parity_report["frameworks"]["torch"]["training_epoch_losses"]
    tf_losses = parity_report["frameworks"]["tf"]["training_epoch_losses"]
    assert len(torch_losses) == len(tf_losses) == 3
    for torch_loss, tf_loss in zip(torch_losses, tf_losses):
        assert abs(torch_loss - tf_loss) < 1e-5


@needs_both
@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_parity_parameter_count(parity_report, framework):
    assert parity_report["frameworks"][framework]["parameters"] == 61_706


@needs_both
@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_parity_onnx_matches_native(parity_report, framework):
    result = parity_report["frameworks"][framework]
    assert result["onnx_max_abs_diff"] <= ONNX_LOGITS_ATOL
    assert result["onnx_label_agreement"] == 1.0


@needs_both
@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_parity_weights_round_trip(parity_report, framework):
    assert parity_report["frameworks"][framework]["weights_round_trip_exact"]


def test_parity_reports_broken_backend():
    report = check_parity(
        "lenet5",
        frameworks=("torch",),
        backend_paths={"torch": "tests.fake_backends:NoSuchBackend"},
    )
    assert not report["passed"]
    assert "NoSuchBackend" in report["problems"][0]


@needs_both
def test_parity_pruning_masks_identical(parity_report):
    (comparison,) = parity_report["comparisons"]
    assert comparison["pruning_masks_equal"]
    assert comparison["pruned_zero_patterns_equal"]


@needs_both
def test_parity_pruned_finetune_agrees(parity_report):
    (comparison,) = parity_report["comparisons"]
    assert comparison["pruned_weights_max_abs_diff"] <= TRAINED_WEIGHTS_ATOL
