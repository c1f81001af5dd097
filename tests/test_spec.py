import dataclasses

import numpy as np
import pytest

from bench.spec import (
    PROFILES,
    Profile,
    TimingSpec,
    TrainRecipe,
    check_weights,
    get_model,
    get_profile,
    get_strategy,
    initial_weights,
    lenet5,
)
from bench.spec.model import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ModelSpec
from bench.spec.strategy import (
    LowRankParams,
    PruneParams,
    QuantizeParams,
    SearchCandidate,
    SearchParams,
    StepSpec,
    StructuredPruneParams,
)


def test_lenet5_has_61706_parameters():
    spec = lenet5()
    assert spec.count_parameters() == 61_706


def test_lenet5_layer_shapes():
    shapes = {info.layer.name: info.output_shape for info in lenet5().layer_infos()}
    assert shapes["conv1"] == (6, 28, 28)
    assert shapes["pool1"] == (6, 14, 14)
    assert shapes["conv2"] == (16, 10, 10)
    assert shapes["pool2"] == (16, 5, 5)
    assert shapes["flatten"] == (400,)
    assert shapes["fc1"] == (120,)
    assert shapes["fc2"] == (84,)
    assert shapes["fc3"] == (10,)


def test_lenet5_parameter_shapes_canonical():
    shapes = lenet5().parameter_shapes()
    assert shapes["conv1.weight"] == (6, 1, 5, 5)
    assert shapes["conv2.weight"] == (16, 6, 5, 5)
    assert shapes["fc1.weight"] == (120, 400)
    assert shapes["fc3.bias"] == (10,)


def test_initial_weights_deterministic_per_seed():
    spec = lenet5()
    first = initial_weights(spec, 3)
    again = initial_weights(spec, 3)
    other = initial_weights(spec, 4)
    check_weights(spec, first)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["conv1.weight"], other["conv1.weight"])
    assert all(v.dtype == np.float32 for v in first.values())
    assert not first["fc1.bias"].any()


def test_initial_weights_glorot_limit():
    weights = initial_weights(lenet5(), 0)
    limit = np.sqrt(6.0 / (400 + 120))
    assert np.abs(weights["fc1.weight"]).max() <= limit
    assert np.abs(weights["fc1.weight"]).max() > 0.9 * limit


def test_check_weights_rejects_wrong_shape():
    spec = lenet5()
    weights = initial_weights(spec, 0)
    weights["fc2.weight"] = np.zeros((84, 121), np.float32)
    with pytest.raises(ValueError, match="fc2.weight"):
        check_weights(spec, weights)


def test_check_weights_rejects_missing_name():
    spec = lenet5()
    weights = initial_weights(spec, 0)
    del weights["conv1.bias"]
    with pytest.raises(ValueError, match="conv1.bias"):
        check_weights(spec, weights)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Conv2D("c", 0, 5), "out_channels"),
        (lambda: Conv2D("c", 6, 0), "kernel_size"),
        (lambda: Conv2D("c", 6, 5, stride=0), "stride"),
        (lambda: Conv2D("c", 6, 5, padding=-1), "padding"),
        (lambda: Dense("d", 0), "units"),
        (lambda: Dense("bad name!", 3), "name"),
        (lambda: Dropout("drop", 1.0), "rate"),
        (lambda: Dropout("drop", -0.1), "rate"),
        (lambda: MaxPool2D("p", 0), "pool_size"),
    ],
)
def test_layer_validation_names_field(build, field):
    with pytest.raises(ValueError, match=field):
        build()


def test_model_spec_rejects_wrong_logits():
    with pytest.raises(ValueError, match=r"expected \(10,\) logits"):
        ModelSpec("m", (1, 8, 8), 10, (Flatten(), Dense("fc", 9)))


def test_model_spec_rejects_kernel_larger_than_input():
    with pytest.raises(ValueError, match="does not fit"):
        ModelSpec("m", (1, 4, 4), 10, (Conv2D("c", 2, 5), Flatten(), Dense("fc", 10)))


def test_model_spec_rejects_duplicate_names():
    with pytest.raises(ValueError, match="unique"):
        ModelSpec("m", (1, 8, 8), 10, (Flatten("x"), Dense("x", 10)))


def test_model_spec_rejects_dense_on_image():
    with pytest.raises(ValueError, match="Flatten"):
        ModelSpec("m", (1, 8, 8), 10, (Dense("fc", 10),))


def test_fingerprint_changes_with_architecture():
    assert lenet5().fingerprint() == lenet5().fingerprint()
    assert lenet5().fingerprint() != lenet5(num_classes=5).fingerprint()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"momentum": 1.0}, "momentum"),
        ({"momentum": -0.5}, "momentum"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"epochs": 0}, "epochs"),
        ({"seed": -1}, "seed"),
        ({"optimizer": "adam"}, "optimizer"),
        ({"lr_schedule": "step"}, "lr_schedule"),
    ],
)
def test_recipe_validation_names_field(changes, field):
    with pytest.raises(ValueError, match=f"TrainRecipe.{field}"):
        TrainRecipe(**changes)


def test_recipe_error_lists_allowed_values():
    with pytest.raises(ValueError, match="one of sgd"):
        TrainRecipe(optimizer="adam")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"min_values": 0}, "min_values"),
        ({"min_value_s": 0.0}, "min_value_s"),
        ({"max_duration_s": 0.5, "min_duration_s": 1.0}, "max_duration_s"),
        ({"throughput_batch_size": 0}, "throughput_batch_size"),
        ({"throughput_batch_size": 65537}, "throughput_batch_size"),
        ({"latency_batch_size": 10**9}, "latency_batch_size"),
    ],
)
def test_timing_validation_names_field(changes, field):
    with pytest.raises(ValueError, match=field):
        TimingSpec(**changes)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"frameworks": ("jax",)}, "frameworks"),
        ({"frameworks": ()}, "frameworks"),
        ({"seeds": ()}, "seeds"),
        ({"train_limit": 0}, "train_limit"),
        ({"threads": 0}, "threads"),
        ({"epochs": 0}, "epochs"),
        ({"frameworks": "torch"}, "frameworks"),
        ({"frameworks": ("torch", "torch")}, "frameworks"),
        ({"seeds": (0, 0)}, "seeds"),
        ({"seeds": [0]}, "seeds"),
        ({"strategies": ("baseline", "baseline")}, "strategies"),
        ({"description": None}, "description"),
        ({"timing": {"min_values": 3}}, "timing"),
    ],
)
def test_profile_validation_names_field(changes, field):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(get_profile("quick"), **changes)


def test_profile_rejects_unknown_strategy():
    with pytest.raises(ValueError, match="valid strategies: adversarial, augment, baseline"):
        dataclasses.replace(get_profile("quick"), strategies=("nope",))


def test_profile_rejects_unhashable_strategy():
    with pytest.raises(ValueError, match=r"unknown strategy \[\]"):
        dataclasses.replace(get_profile("quick"), strategies=([],))


def test_profile_rejects_unknown_dataset():
    with pytest.raises(ValueError, match="Profile.dataset must be one of fashion-mnist, mnist, mnist-5k, digits"):
        dataclasses.replace(get_profile("quick"), dataset="cifar10")


def test_profile_rejects_unknown_model():
    with pytest.raises(ValueError, match="Profile.model must be one of lenet5, lenet5-wide"):
        dataclasses.replace(get_profile("quick"), model="vgg")


def test_profiles_exist_and_quick_is_default():
    from bench.spec import DEFAULT_PROFILE

    assert set(PROFILES) >= {"smoke", "quick", "full"}
    assert DEFAULT_PROFILE == "quick"
    assert get_profile("full").seeds == (0, 1, 2)


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match="valid profiles: smoke, quick, full, claim"):
        get_profile("huge")
    with pytest.raises(ValueError, match="valid models: lenet5"):
        get_model("vgg")
    with pytest.raises(ValueError, match="valid strategies"):
        get_strategy("magic")


def test_profile_overrides_validated():
    profile = get_profile("smoke").with_overrides(epochs=3, seeds=None)
    assert profile.epochs == 3
    assert profile.seeds == get_profile("smoke").seeds
    with pytest.raises(ValueError, match="epochs"):
        get_profile("smoke").with_overrides(epochs=-2)


def test_profile_recipe_carries_seed():
    recipe = Profile(name="p", description="", dataset="digits").recipe(7)
    assert recipe.seed == 7


def test_cosine_schedule_values():
    recipe = TrainRecipe(learning_rate=0.1, epochs=4, lr_schedule="cosine")
    rates = [recipe.learning_rate_at(epoch) for epoch in range(4)]
    assert rates[0] == pytest.approx(0.1)
    assert rates[2] == pytest.approx(0.05)
    assert rates == sorted(rates, reverse=True)
    assert rates[3] > 0


def test_constant_schedule_values():
    recipe = TrainRecipe(learning_rate=0.1, epochs=3, lr_schedule="constant")
    assert [recipe.learning_rate_at(epoch) for epoch in range(3)] == [0.1, 0.1, 0.1]


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: PruneParams(sparsity=1.0), "sparsity"),
        (lambda: PruneParams(sparsity=-0.1), "sparsity"),
        (lambda: PruneParams(sparsity=0.5, initial_sparsity=0.6), "initial_sparsity"),
        (lambda: PruneParams(power=0), "power"),
        (lambda: PruneParams(finetune_epochs=0), "finetune_epochs"),
        (lambda: PruneParams(layers=()), "layers"),
        (lambda: StructuredPruneParams(ratio=1.0), "ratio"),
        (lambda: LowRankParams(energy=0.0), "energy"),
        (lambda: LowRankParams(energy=None, rank=0), "rank"),
        (lambda: LowRankParams(energy=0.9, rank=3), "exactly one of energy and rank"),
        (lambda: QuantizeParams(calibration_samples=0), "calibration_samples"),
        (lambda: SearchCandidate(sparsity=1.0), "sparsity"),
        (lambda: SearchParams(candidates=()), "candidates"),
        (lambda: StepSpec("distill"), "StepSpec.name"),
        (lambda: StepSpec("prune", {"sparsity": 2.0}), "sparsity"),
        (lambda: StepSpec("prune", {"sparsityy": 0.5}), "invalid parameters"),
    ],
)
def test_step_params_validation_names_field(build, field):
    with pytest.raises(ValueError, match=field):
        build()


def test_unknown_layer_names_rejected():
    from bench.compress import factorize, prunable_kernels, prune_structured

    spec = lenet5()
    weights = initial_weights(spec, 0)
    with pytest.raises(ValueError, match="fc9"):
        prunable_kernels(spec, ("fc9",))
    with pytest.raises(ValueError, match="fc9"):
        prune_structured(spec, weights, StructuredPruneParams(layers=("fc9",)))
    with pytest.raises(ValueError, match="fc9"):
        factorize(spec, weights, LowRankParams(layers=("fc9",)))


def test_rank_larger_than_layer_rejected():
    from bench.compress import factorize

    spec = lenet5()
    with pytest.raises(ValueError, match="fc3"):
        factorize(spec, initial_weights(spec, 0), LowRankParams(energy=None, rank=11, layers=("fc3",)))


def test_every_strategy_builds_steps():
    from bench.spec import STRATEGIES
    from bench.spec.strategy import STEPS

    for strategy in STRATEGIES.values():
        # A transfer strategy starts by pretraining on its source task; every other one trains.
        assert strategy.steps[0].name in ("train", "pretrain")
        assert all(step.name in STEPS for step in strategy.steps)
