"""Training-strategy specs: parameter checks, nested dicts, the teacher model, dropout and profiles."""

import dataclasses
import re

import pytest

from bench.spec import PROFILES, STRATEGIES, Profile, get_model, lenet5
from bench.spec.model import Conv2D, Dense, Dropout, Flatten, ModelSpec, ReLU, lenet5_wide, with_dropout, without_dropout
from bench.spec.profile import ALL_STRATEGIES
from bench.spec.strategy import (
    AdversarialParams,
    AttackParams,
    AugmentParams,
    DistillParams,
    RegularizeParams,
    StepSpec,
    TrainParams,
)

NEW_STRATEGIES = ("augment", "regularize", "adversarial", "distill")


# --- invalid values name the field -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: RegularizeParams(l2=-1e-4), "RegularizeParams.l2"),
        (lambda: RegularizeParams(l2=1.5), "RegularizeParams.l2"),
        (lambda: RegularizeParams(l2=float("nan")), "RegularizeParams.l2"),
        (lambda: RegularizeParams(dropout=1.0), "RegularizeParams.dropout"),
        (lambda: RegularizeParams(dropout=1.2), "RegularizeParams.dropout"),
        (lambda: RegularizeParams(dropout=-0.1), "RegularizeParams.dropout"),
        (lambda: AttackParams(epsilon=-0.01), "AttackParams.epsilon"),
        (lambda: AttackParams(epsilon=1.01), "AttackParams.epsilon"),
        (lambda: AttackParams(steps=0), "AttackParams.steps"),
        (lambda: AttackParams(steps=2.0), "AttackParams.steps"),
        (lambda: AttackParams(method="cw"), "AttackParams.method"),
        (lambda: AttackParams(method="fgsm", steps=3), "FGSM"),
        (lambda: AttackParams(method="fgsm", epsilon=0.1, steps=1, step_size=0.05), "FGSM"),
        (lambda: AttackParams(step_size=0.0), "AttackParams.step_size"),
        (lambda: AdversarialParams(ratio=1.5), "AdversarialParams.ratio"),
        (lambda: AdversarialParams(ratio=-0.5), "AdversarialParams.ratio"),
        (lambda: AdversarialParams(attack="fgsm"), "AdversarialParams.attack"),
        (lambda: DistillParams(temperature=0.0), "DistillParams.temperature"),
        (lambda: DistillParams(temperature=-2.0), "DistillParams.temperature"),
        (lambda: DistillParams(alpha=-0.1), "DistillParams.alpha"),
        (lambda: DistillParams(alpha=1.1), "DistillParams.alpha"),
        (lambda: DistillParams(teacher_epochs=0), "DistillParams.teacher_epochs"),
        (lambda: AugmentParams(crop_padding=-1), "AugmentParams.crop_padding"),
        (lambda: AugmentParams(crop_padding=17), "AugmentParams.crop_padding"),
        (lambda: AugmentParams(crop_padding=2.0), "AugmentParams.crop_padding"),
        (lambda: AugmentParams(rotation_degrees=-1.0), "AugmentParams.rotation_degrees"),
        (lambda: AugmentParams(rotation_degrees=181.0), "AugmentParams.rotation_degrees"),
        (lambda: AugmentParams(translation=-0.01), "AugmentParams.translation"),
        (lambda: AugmentParams(translation=0.6), "AugmentParams.translation"),
        (lambda: AugmentParams(horizontal_flip=1), "AugmentParams.horizontal_flip"),
        (lambda: AugmentParams(horizontal_flip="yes"), "AugmentParams.horizontal_flip"),
        (lambda: AugmentParams(horizontal_flip=None), "AugmentParams.horizontal_flip"),
    ],
)
def test_training_params_reject_invalid_values(build, field):
    with pytest.raises(ValueError, match=re.escape(field)):
        build()


@pytest.mark.parametrize(
    "build",
    [
        lambda: RegularizeParams(l2=0.0, dropout=0.0),
        lambda: RegularizeParams(l2=1.0, dropout=0.99),
        lambda: AttackParams(epsilon=0.0),
        lambda: AttackParams(epsilon=1.0, steps=1),
        lambda: AttackParams(method="fgsm", epsilon=0.2, steps=1, step_size=0.2),
        lambda: AdversarialParams(ratio=0.0),
        lambda: AdversarialParams(ratio=1.0),
        lambda: DistillParams(alpha=0.0),
        lambda: DistillParams(alpha=1.0, temperature=100.0),
        lambda: AugmentParams(crop_padding=0, rotation_degrees=0.0, translation=0.0, horizontal_flip=False),
        lambda: AugmentParams(crop_padding=16, rotation_degrees=180.0, translation=0.5),
    ],
)
def test_training_params_accept_boundary_values(build):
    build()


def test_unknown_teacher_lists_valid_models():
    with pytest.raises(ValueError, match="DistillParams.teacher") as error:
        DistillParams(teacher="resnet18")

    message = str(error.value)
    assert "resnet18" in message
    assert "lenet5" in message
    assert "lenet5-wide" in message


def test_teacher_names_are_models():
    params = DistillParams(teacher="lenet5")
    assert get_model(params.teacher).name == "lenet5"
    assert get_model(DistillParams().teacher).name == "lenet5-wide"


@pytest.mark.parametrize(
    "changes",
    [
        {"distill": DistillParams(), "augment": AugmentParams()},
        {"distill": DistillParams(), "adversarial": AdversarialParams()},
        {"distill": {}, "augment": {}},
    ],
)
def test_train_params_reject_distill_with_augment_or_adversarial(changes):
    with pytest.raises(ValueError, match="TrainParams.distill"):
        TrainParams(**changes)


def test_train_params_accept_distill_with_regularize():
    params = TrainParams(distill=DistillParams(), regularize=RegularizeParams())
    assert not params.is_plain


def test_train_params_plain_only_without_options():
    assert TrainParams().is_plain
    assert not TrainParams(augment=AugmentParams()).is_plain
    assert not TrainParams(regularize=RegularizeParams()).is_plain
    assert not TrainParams(adversarial=AdversarialParams()).is_plain
    assert not TrainParams(distill=DistillParams()).is_plain


# --- nested dicts ----------------------------------------------------------------------------------


def test_step_spec_builds_nested_dicts():
    step = StepSpec("train", {"adversarial": {"attack": {"method": "pgd", "epsilon": 0.2, "steps": 3}, "ratio": 0.3}})
    params = step.params

    assert isinstance(params, TrainParams)
    assert isinstance(params.adversarial, AdversarialParams)
    assert params.adversarial.ratio == 0.3
    assert params.adversarial.attack == AttackParams(method="pgd", epsilon=0.2, steps=3)
    assert params.augment is None
    assert params.distill is None


def test_step_spec_nested_dicts_round_trip():
    step = StepSpec(
        "train",
        {
            "augment": {"crop_padding": 3, "horizontal_flip": False},
            "regularize": {"l2": 1e-3},
            "adversarial": {"attack": {"method": "fgsm", "epsilon": 0.05, "steps": 1}},
        },
    )
    again = StepSpec("train", step.to_dict()["params"])

    assert again == step
    assert again.params.augment == AugmentParams(crop_padding=3, horizontal_flip=False)
    assert again.params.regularize == RegularizeParams(l2=1e-3)


@pytest.mark.parametrize(
    ("params", "owner"),
    [
        ({"adversarial": {"attack": {"method": "pgd", "epsilonn": 0.2}}}, "AdversarialParams.attack"),
        ({"adversarial": {"ratioo": 0.3}}, "TrainParams.adversarial"),
        ({"augment": {"rotation": 10.0}}, "TrainParams.augment"),
        ({"regularize": {"weight_decay": 1e-4}}, "TrainParams.regularize"),
        ({"distill": {"temperatur": 3.0}}, "TrainParams.distill"),
        ({"augmentation": {}}, "StepSpec 'train'"),
    ],
)
def test_nested_unknown_keys_name_owner(params, owner):
    with pytest.raises(ValueError, match=re.escape(owner)):
        StepSpec("train", params)


def test_nested_unknown_key_is_named():
    with pytest.raises(ValueError, match="epsilonn"):
        StepSpec("train", {"adversarial": {"attack": {"epsilonn": 0.2}}})


def test_nested_invalid_value_names_field():
    with pytest.raises(ValueError, match=re.escape("AttackParams.epsilon")):
        StepSpec("train", {"adversarial": {"attack": {"epsilon": 2.0}}})


@pytest.mark.parametrize("value", [3, "fgsm", [0.1]])
def test_nested_non_dict_rejected(value):
    with pytest.raises(ValueError, match=re.escape("TrainParams.augment")):
        TrainParams(augment=value)


# --- attack step size ------------------------------------------------------------------------------


def test_fgsm_step_size_is_epsilon():
    assert AttackParams(method="fgsm", epsilon=0.3, steps=1).resolved_step_size == 0.3


def test_pgd_default_step_size():
    attack = AttackParams(method="pgd", epsilon=0.1, steps=10)
    assert attack.resolved_step_size == pytest.approx(2.5 * 0.1 / 10)

    attack = AttackParams(method="pgd", epsilon=0.2, steps=4)
    assert attack.resolved_step_size == pytest.approx(0.125)


def test_pgd_explicit_step_size_kept():
    attack = AttackParams(method="pgd", epsilon=0.1, steps=10, step_size=0.01)
    assert attack.resolved_step_size == 0.01


def test_adversarial_default_is_fgsm():
    attack = AdversarialParams().attack
    assert attack.method == "fgsm"
    assert attack.steps == 1
    assert attack.resolved_step_size == attack.epsilon


# --- models ----------------------------------------------------------------------------------------


def test_lenet5_wide_has_244362_parameters():
    spec = lenet5_wide()
    assert spec.count_parameters() == 244_362
    assert spec.name == "lenet5-wide"
    assert get_model("lenet5-wide").count_parameters() == 244_362


def test_lenet5_wide_parameter_shapes():
    shapes = lenet5_wide().parameter_shapes()
    assert shapes["conv1.weight"] == (12, 1, 5, 5)
    assert shapes["conv2.weight"] == (32, 12, 5, 5)
    assert shapes["fc1.weight"] == (240, 800)
    assert shapes["fc2.weight"] == (168, 240)
    assert shapes["fc3.weight"] == (10, 168)


def test_lenet5_wide_width_one_is_lenet5_shapes():
    assert lenet5_wide(width=1).parameter_shapes() == lenet5().parameter_shapes()


def test_lenet5_wide_rejects_zero_width():
    with pytest.raises(ValueError, match="width"):
        lenet5_wide(width=0)


def test_with_dropout_after_hidden_relus():
    spec = with_dropout(lenet5(), 0.25)
    names = [layer.name for layer in spec.layers]
    dropouts = [layer for layer in spec.layers if isinstance(layer, Dropout)]

    assert len(dropouts) == 2
    assert all(layer.rate == 0.25 for layer in dropouts)
    assert names[names.index("relu3") + 1] == dropouts[0].name
    assert names[names.index("relu4") + 1] == dropouts[1].name
    assert names[-1] == "fc3"
    assert len(spec.layers) == len(lenet5().layers) + 2


def test_with_dropout_keeps_parameter_shapes():
    for base in (lenet5(), lenet5_wide()):
        spec = with_dropout(base, 0.5)
        assert spec.parameter_shapes() == base.parameter_shapes()
        assert list(spec.parameter_shapes()) == list(base.parameter_shapes())
        assert spec.count_parameters() == base.count_parameters()


def test_with_dropout_without_relu():
    base = ModelSpec(
        name="mlp",
        input_shape=(1, 4, 4),
        num_classes=3,
        layers=(Flatten("flatten"), Dense("fc1", 8), Dense("fc2", 5), ReLU("relu"), Dense("out", 3)),
    )
    spec = with_dropout(base, 0.1)
    kinds = [(layer.kind, layer.name) for layer in spec.layers]

    assert kinds == [
        ("flatten", "flatten"),
        ("dense", "fc1"),
        ("dropout", "dropout_fc1"),
        ("dense", "fc2"),
        ("relu", "relu"),
        ("dropout", "dropout_fc2"),
        ("dense", "out"),
    ]


def test_with_dropout_skips_conv_relus():
    spec = with_dropout(lenet5(), 0.25)
    names = [layer.name for layer in spec.layers]
    assert names[names.index("relu1") + 1] == "pool1"
    assert names[names.index("relu2") + 1] == "pool2"


@pytest.mark.parametrize("rate", [-0.1, 1.0])
def test_with_dropout_rejects_rate(rate):
    with pytest.raises(ValueError, match="rate"):
        with_dropout(lenet5(), rate)


@pytest.mark.parametrize("build", [lenet5, lenet5_wide])
def test_without_dropout_inverts_with_dropout(build):
    base = build()
    assert without_dropout(with_dropout(base, 0.25)) == base
    assert without_dropout(base) == base


def test_without_dropout_restores_fingerprint():
    base = lenet5()
    with_layers = with_dropout(base, 0.3)
    assert with_layers.fingerprint() != base.fingerprint()
    assert without_dropout(with_layers).fingerprint() == base.fingerprint()


def test_dropout_layer_has_no_parameters():
    spec = ModelSpec(
        name="tiny",
        input_shape=(1, 6, 6),
        num_classes=2,
        layers=(Conv2D("conv", 2, 3), Flatten("flatten"), Dropout("drop", 0.5), Dense("fc", 2)),
    )
    assert spec.count_parameters() == 2 * 9 + 2 + 2 * 32 + 2


# --- strategies and profiles -----------------------------------------------------------------------


@pytest.mark.parametrize("name", NEW_STRATEGIES)
def test_new_strategy_registered(name):
    strategy = STRATEGIES[name]
    assert strategy.name == name
    assert len(strategy.steps) == 1
    assert strategy.steps[0].name == "train"
    assert isinstance(strategy.steps[0].params, TrainParams)
    assert getattr(strategy.steps[0].params, name) is not None


def test_new_strategies_set_only_their_option():
    for name in NEW_STRATEGIES:
        params = STRATEGIES[name].steps[0].params
        set_options = [option for option in NEW_STRATEGIES if getattr(params, option) is not None]
        assert set_options == [name], name


def test_new_strategies_in_default_profile_strategies():
    for name in NEW_STRATEGIES:
        assert name in ALL_STRATEGIES
        assert name in Profile(name="p", description="", dataset="digits").strategies
        assert name in PROFILES["quick"].strategies


def test_distill_strategy_defaults():
    distill = STRATEGIES["distill"].steps[0].params.distill
    assert distill == DistillParams(teacher="lenet5-wide", temperature=2.0, alpha=0.5)


def test_profile_round_trip_keeps_robustness():
    profile = Profile(
        name="robust",
        description="test",
        dataset="digits",
        robustness=AttackParams(method="pgd", epsilon=0.05, steps=7, step_size=0.01),
        robust_samples=123,
    )
    again = Profile.from_dict(profile.to_dict())

    assert again == profile
    assert again.robustness == AttackParams(method="pgd", epsilon=0.05, steps=7, step_size=0.01)
    assert again.robust_samples == 123


def test_profile_round_trip_all_named_profiles():
    for profile in PROFILES.values():
        assert Profile.from_dict(profile.to_dict()) == profile


def test_profile_from_older_dict_without_robustness():
    data = PROFILES["smoke"].to_dict()
    del data["robustness"]
    del data["robust_samples"]

    profile = Profile.from_dict(data)

    assert profile.robustness == AttackParams()
    assert profile.robust_samples is None
    assert dataclasses.replace(profile, robustness=PROFILES["smoke"].robustness) == PROFILES["smoke"]


def test_profile_from_dict_rejects_unknown_robustness_key():
    data = PROFILES["smoke"].to_dict()
    data["robustness"] = {"method": "pgd", "epsilonn": 0.1}
    with pytest.raises(ValueError, match="smoke"):
        Profile.from_dict(data)


def test_profile_from_dict_rejects_invalid_robustness():
    data = PROFILES["smoke"].to_dict()
    data["robustness"] = {"method": "pgd", "epsilon": 3.0}
    with pytest.raises(ValueError, match=re.escape("'robustness.epsilon'")):
        Profile.from_dict(data)


def test_profile_rejects_robustness_dict():
    with pytest.raises(ValueError, match=re.escape("Profile.robustness")):
        Profile(name="p", description="", dataset="digits", robustness={"epsilon": 0.1})


def test_profile_rejects_zero_robust_samples():
    with pytest.raises(ValueError, match=re.escape("Profile.robust_samples")):
        Profile(name="p", description="", dataset="digits", robust_samples=0)
