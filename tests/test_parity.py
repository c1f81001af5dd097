"""Both backends compute the same network: canonical weights in, equal logits out, ONNX matches native."""

import numpy as np
import pytest

from bench.parity import (
    DISTILL_LOSS_RTOL,
    FRAMEWORK_LOGITS_ATOL,
    ONNX_LOGITS_ATOL,
    TRAINED_WEIGHTS_ATOL,
    _compare_strategies,
    check_parity,
)
from tests.frameworks import needs_both, needs_tf, needs_torch


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


# --- training strategies ---------------------------------------------------------------------------


@needs_both
def test_parity_l2_step_agrees(parity_report):
    (comparison,) = parity_report["comparisons"]
    assert comparison["l2_step_weights_max_abs_diff"] is not None
    assert comparison["l2_step_weights_max_abs_diff"] <= 1e-5


@needs_both
def test_parity_distillation_losses_equal(parity_report):
    (comparison,) = parity_report["comparisons"]
    torch_loss, tf_loss = comparison["distill_loss"]
    assert torch_loss > 0
    assert tf_loss == pytest.approx(torch_loss, rel=1e-5)


@needs_both
@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_parity_attack_batches_agree(parity_report, attack):
    (comparison,) = parity_report["comparisons"]
    assert comparison[f"{attack}_batch_max_abs_diff"] is not None
    assert comparison[f"{attack}_batch_max_abs_diff"] <= 1e-5


@needs_both
@pytest.mark.parametrize("probe", ["distill_epoch", "adversarial_epoch"])
def test_parity_strategy_epochs_agree(parity_report, probe):
    (comparison,) = parity_report["comparisons"]
    assert comparison[f"{probe}_weights_max_abs_diff"] is not None
    assert comparison[f"{probe}_weights_max_abs_diff"] <= 1e-5


def l2_step_effect(framework: str, seed: int) -> dict:
    """Measure, in a child process, how the parity L2 lambda changes one SGD step of `framework`.

    The first momentum step is w - lr * (g + l2 * w) on kernels and w - lr * g on biases. So the runs
    with and without L2 should differ by lr * l2 * w0 on kernels, up to float32 rounding, and not at
    all on biases. Returns, per parameter, the max deviation from that and the max change.
    """
    from bench.backend import TrainData, TrainOptions, load_backend
    from bench.data import batch_indices
    from bench.parity import L2_PROBE, training_set
    from bench.spec import TrainRecipe, get_model, initial_weights

    spec = get_model("lenet5")
    backend = load_backend(framework)
    backend.configure(threads=1, seed=seed)
    weights = initial_weights(spec, seed)
    images, labels = training_set("lenet5", seed)
    images, labels = images[:32], labels[:32]
    recipe = TrainRecipe(seed=seed, batch_size=32, epochs=1, learning_rate=0.05, momentum=0.9)

    def one_step(l2: float) -> dict:
        network = backend.build(spec)
        backend.set_weights(network, spec, weights)
        data = TrainData(images, labels, lambda epoch: batch_indices(32, 32, seed, epoch))
        backend.train(network, spec, recipe, data, lambda report: None, None, TrainOptions(l2=l2))
        return backend.get_weights(network, spec)

    plain = one_step(0.0)
    penalized = one_step(L2_PROBE)
    decay = recipe.learning_rate * L2_PROBE
    effect = {}
    for name, initial in weights.items():
        change = plain[name] - penalized[name]
        expected = decay * initial if name.endswith(".weight") else np.zeros_like(initial)
        effect[name] = {
            "error": float(np.max(np.abs(change - expected))),
            "change": float(np.max(np.abs(change))),
        }
    return effect


@pytest.mark.parametrize("framework", [pytest.param("torch", marks=needs_torch), pytest.param("tf", marks=needs_tf)])
def test_l2_lambda_means_weight_decay(framework, tmp_path):
    from bench.runner import child_environment, run_child

    outcome = run_child(
        "tests.test_parity:l2_step_effect",
        {"framework": framework, "seed": 0},
        tmp_path / framework,
        timeout_s=300,
        env=child_environment(1),
    )
    assert outcome.status == "ok", outcome.error
    effect = outcome.value

    for name, values in effect.items():
        assert values["error"] <= 1e-6, name
        if name.endswith(".weight"):
            assert values["change"] > 1e-5, name
        else:
            assert values["change"] == 0.0, name


def strategy_outputs() -> dict:
    """Build fake probe outputs under the names that bench.parity._strategy_probes stores."""
    rng = np.random.default_rng(0)
    outputs = {}
    for prefix in ("l2-step", "distill-epoch", "adversarial-epoch"):
        outputs[f"{prefix}/fc1.weight"] = rng.standard_normal((4, 3)).astype(np.float32)
        outputs[f"{prefix}/fc1.bias"] = rng.standard_normal(4).astype(np.float32)
    outputs["attack/fgsm"] = rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
    outputs["attack/pgd"] = rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
    outputs["distill-loss"] = np.array(2.5, dtype=np.float64)
    return outputs


def compare_strategies(first: dict, second: dict) -> tuple[dict, list[str]]:
    report = {"problems": []}
    result = _compare_strategies(report, "torch", "tf", first, second)
    return result, report["problems"]


def test_compare_strategies_equal_arrays_pass():
    result, problems = compare_strategies(strategy_outputs(), strategy_outputs())

    assert problems == []
    assert result["l2_step_weights_max_abs_diff"] == 0.0
    assert result["distill_epoch_weights_max_abs_diff"] == 0.0
    assert result["adversarial_epoch_weights_max_abs_diff"] == 0.0
    assert result["fgsm_batch_max_abs_diff"] == 0.0
    assert result["pgd_batch_max_abs_diff"] == 0.0
    assert result["distill_loss"] == [2.5, 2.5]


def test_compare_strategies_within_tolerance_pass():
    first = strategy_outputs()
    second = {name: value + 0.5 * TRAINED_WEIGHTS_ATOL for name, value in first.items() if name != "distill-loss"}
    second["distill-loss"] = first["distill-loss"] * (1 + 0.5 * DISTILL_LOSS_RTOL)
    _, problems = compare_strategies(first, second)
    assert problems == []


@pytest.mark.parametrize(
    ("name", "field", "label"),
    [
        ("l2-step/fc1.weight", "l2_step_weights_max_abs_diff", "l2 step weights"),
        ("l2-step/fc1.bias", "l2_step_weights_max_abs_diff", "l2 step weights"),
        ("distill-epoch/fc1.weight", "distill_epoch_weights_max_abs_diff", "distill epoch weights"),
        ("adversarial-epoch/fc1.bias", "adversarial_epoch_weights_max_abs_diff", "adversarial epoch weights"),
        ("attack/fgsm", "fgsm_batch_max_abs_diff", "fgsm batch"),
        ("attack/pgd", "pgd_batch_max_abs_diff", "pgd batch"),
    ],
)
def test_compare_strategies_flags_difference(name, field, label):
    first = strategy_outputs()
    second = strategy_outputs()
    second[name] = second[name].copy()
    second[name].flat[0] += 10 * TRAINED_WEIGHTS_ATOL

    result, problems = compare_strategies(first, second)

    assert result[field] == pytest.approx(10 * TRAINED_WEIGHTS_ATOL, rel=0.1)
    assert len(problems) == 1
    assert label in problems[0]
    assert "torch vs tf" in problems[0]


def test_compare_strategies_flags_distillation_loss():
    first = strategy_outputs()
    second = strategy_outputs()
    second["distill-loss"] = np.array(2.5 * (1 + 10 * DISTILL_LOSS_RTOL))

    _, problems = compare_strategies(first, second)

    assert len(problems) == 1
    assert "distillation losses differ" in problems[0]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("l2-step/fc1.weight", "l2 step weights differs: missing"),
        ("attack/pgd", "pgd batch differs: missing"),
        ("distill-loss", "distillation losses differ: None"),
    ],
)
def test_compare_strategies_flags_missing_output(name, message):
    first = strategy_outputs()
    second = strategy_outputs()
    del second[name]

    _, problems = compare_strategies(first, second)

    assert problems == [f"torch vs tf: {message}"]


# --- parameter-efficient fine-tuning ---------------------------------------------------------------

PEFT_METHODS_LIST = ["full", "linear-probe", "bitfit", "adapters", "lora"]


@needs_both
@pytest.mark.parametrize("framework", ["torch", "tf"])
@pytest.mark.parametrize("method", PEFT_METHODS_LIST)
def test_peft_zero_init_keeps_logits(parity_report, framework, method):
    entry = parity_report["frameworks"][framework]["peft"][method]
    assert entry["start_max_abs_diff"] <= 1e-6


@needs_both
@pytest.mark.parametrize("method", PEFT_METHODS_LIST)
def test_peft_trainable_counts_equal(parity_report, method):
    torch_entry = parity_report["frameworks"]["torch"]["peft"][method]
    tf_entry = parity_report["frameworks"]["tf"]["peft"][method]
    assert torch_entry["trainable"] == tf_entry["trainable"]
    assert torch_entry["trainable"] == torch_entry["expected_trainable"]


@needs_both
@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_peft_merged_lora_export_matches(parity_report, framework):
    entry = parity_report["frameworks"][framework]["peft"]["lora"]
    assert entry["merged_onnx_vs_unmerged_max_abs_diff"] <= 1e-4


@needs_both
def test_peft_layouts_agree_across_frameworks(parity_report):
    (comparison,) = parity_report["comparisons"]
    differences = comparison["peft_logits_max_relative_diff"]
    assert sorted(differences) == sorted(PEFT_METHODS_LIST)
    for value in differences.values():
        assert value <= 1e-5


def test_compare_peft_flags_differing_logits():
    from bench.parity import _compare_peft

    logits = np.ones((2, 5), dtype=np.float32)
    report = {"problems": []}
    _compare_peft(report, "torch", "tf", {"peft/lora": logits}, {"peft/lora": logits + 0.5})
    assert report["problems"] == ["torch vs tf: lora logits with random weights differ: 0.5 > 1e-05"]


def test_compare_peft_accepts_equal_logits():
    from bench.parity import _compare_peft

    logits = np.ones((2, 5), dtype=np.float32)
    report = {"problems": []}
    result = _compare_peft(report, "torch", "tf", {"peft/full": logits}, {"peft/full": logits.copy()})
    assert report["problems"] == []
    assert result["peft_logits_max_relative_diff"] == {"full": 0.0}
