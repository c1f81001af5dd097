import math

import numpy as np
import pytest

from bench.compress import (
    apply_masks,
    global_magnitude_masks,
    polynomial_sparsity,
    prunable_kernels,
    pruned_count,
    sparsity_report,
)
from bench.spec import initial_weights, lenet5
from bench.spec.strategy import PruneParams

LENET_KERNELS = ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight", "fc3.weight"]


def test_prunable_kernels_all_in_model_order():
    assert prunable_kernels(lenet5()) == LENET_KERNELS


def test_prunable_kernels_restricted_keeps_model_order():
    assert prunable_kernels(lenet5(), ("fc1", "conv1")) == ["conv1.weight", "fc1.weight"]


def test_prunable_kernels_unknown_layer():
    with pytest.raises(ValueError, match="no layer 'fc9'.*valid layers: conv1, conv2, fc1, fc2, fc3"):
        prunable_kernels(lenet5(), ("fc9",))


def test_prunable_kernels_layer_without_kernel():
    with pytest.raises(ValueError, match="'pool1' cannot be selected.*maxpool2d.*valid layers: conv1"):
        prunable_kernels(lenet5(), ("pool1",))


def test_prunable_kernels_rejects_bare_string():
    with pytest.raises(ValueError, match="sequence of layer names"):
        prunable_kernels(lenet5(), "fc1")


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_global_masks_prune_exact_count(sparsity):
    weights = initial_weights(lenet5(), 0)
    total = sum(weights[name].size for name in LENET_KERNELS)

    masks = global_magnitude_masks(weights, sparsity, LENET_KERNELS)

    pruned = sum(int(np.count_nonzero(~mask)) for mask in masks.values())
    assert pruned == round(sparsity * total)
    assert pruned == pruned_count(sparsity, total)


def test_global_masks_share_one_threshold():
    weights = initial_weights(lenet5(), 1)

    masks = global_magnitude_masks(weights, 0.7, LENET_KERNELS)

    pruned = np.concatenate([np.abs(weights[name][~masks[name]]) for name in LENET_KERNELS])
    kept = np.concatenate([np.abs(weights[name][masks[name]]) for name in LENET_KERNELS])
    assert pruned.max() <= kept.min()


def test_global_masks_shapes_and_dtype():
    weights = initial_weights(lenet5(), 2)

    masks = global_magnitude_masks(weights, 0.5, LENET_KERNELS)

    assert list(masks) == LENET_KERNELS
    for name in LENET_KERNELS:
        assert masks[name].shape == weights[name].shape
        assert masks[name].dtype == np.bool_


def test_global_masks_ties_break_by_order():
    weights = {
        "a.weight": np.ones((2, 3), dtype=np.float32),
        "b.weight": -np.ones((4,), dtype=np.float32),
    }

    masks = global_magnitude_masks(weights, 0.5, ["a.weight", "b.weight"])

    # All ten magnitudes are equal, so the first five in (name, flat index) order are pruned.
    np.testing.assert_array_equal(masks["a.weight"], [[False, False, False], [False, False, True]])
    np.testing.assert_array_equal(masks["b.weight"], [True, True, True, True])


def test_global_masks_deterministic():
    weights = initial_weights(lenet5(), 3)
    weights["fc2.weight"][:10] = 0.05

    first = global_magnitude_masks(weights, 0.6, LENET_KERNELS)
    again = global_magnitude_masks({name: value.copy() for name, value in weights.items()}, 0.6, LENET_KERNELS)

    for name in LENET_KERNELS:
        np.testing.assert_array_equal(first[name], again[name])


def test_global_masks_prune_zeros_first():
    weights = initial_weights(lenet5(), 4)
    weights["fc1.weight"][:, :50] = 0.0
    zeros = 120 * 50
    total = sum(weights[name].size for name in LENET_KERNELS)

    masks = global_magnitude_masks(weights, zeros / total, LENET_KERNELS)

    assert not masks["fc1.weight"][:, :50].any()
    assert masks["fc1.weight"][:, 50:].all()
    for name in ["conv1.weight", "conv2.weight", "fc2.weight", "fc3.weight"]:
        assert masks[name].all()


def test_global_masks_only_listed_kernels():
    weights = initial_weights(lenet5(), 5)

    masks = global_magnitude_masks(weights, 0.5, ["fc1.weight"])

    assert list(masks) == ["fc1.weight"]
    assert np.count_nonzero(~masks["fc1.weight"]) == 24_000


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5, float("nan"), True, "0.5"])
def test_global_masks_invalid_sparsity(sparsity):
    weights = initial_weights(lenet5(), 0)

    with pytest.raises(ValueError, match=r"sparsity must be a number in \[0.0, 1.0\)"):
        global_magnitude_masks(weights, sparsity, LENET_KERNELS)


def test_global_masks_missing_kernel():
    weights = initial_weights(lenet5(), 0)

    with pytest.raises(ValueError, match=r"\['fc9.weight'\] are not in the weights"):
        global_magnitude_masks(weights, 0.5, ["fc1.weight", "fc9.weight"])


def test_global_masks_repeated_kernel():
    weights = initial_weights(lenet5(), 0)

    with pytest.raises(ValueError, match="unique, repeated: \\['fc1.weight'\\]"):
        global_magnitude_masks(weights, 0.5, ["fc1.weight", "fc1.weight"])


def test_global_masks_empty_names():
    with pytest.raises(ValueError, match="names must be a non-empty sequence"):
        global_magnitude_masks(initial_weights(lenet5(), 0), 0.5, [])


def test_global_masks_nan_weight():
    weights = initial_weights(lenet5(), 0)
    weights["conv2.weight"][0, 0, 0, 0] = np.nan

    with pytest.raises(ValueError, match=r"\['conv2.weight'\] contain NaN"):
        global_magnitude_masks(weights, 0.5, LENET_KERNELS)


def test_polynomial_sparsity_default_schedule():
    params = PruneParams()  # 4 epochs, end_fraction 0.5: the ramp lasts n = 2 epochs.

    values = [polynomial_sparsity(epoch, params) for epoch in range(4)]

    assert values[0] == pytest.approx(0.9 - 0.9 * 0.5**3)
    assert values[1:] == [0.9, 0.9, 0.9]


def test_polynomial_sparsity_formula():
    params = PruneParams(finetune_epochs=10, sparsity=0.8, initial_sparsity=0.2, power=2, end_fraction=0.35)
    ramp = math.ceil(10 * 0.35)

    for epoch in range(10):
        expected = 0.8 + (0.2 - 0.8) * (1 - min(1.0, (epoch + 1) / ramp)) ** 2
        assert polynomial_sparsity(epoch, params) == pytest.approx(expected)


def test_polynomial_sparsity_monotone_to_final():
    params = PruneParams(finetune_epochs=7, sparsity=0.95, initial_sparsity=0.1, power=3, end_fraction=0.8)

    values = [polynomial_sparsity(epoch, params) for epoch in range(7)]

    assert values == sorted(values)
    assert values[0] > 0.1
    assert values[-1] == 0.95


def test_polynomial_sparsity_single_epoch():
    assert polynomial_sparsity(0, PruneParams(finetune_epochs=1, sparsity=0.6)) == 0.6


@pytest.mark.parametrize("epoch", [-1, 4, 1.0, True])
def test_polynomial_sparsity_invalid_epoch(epoch):
    with pytest.raises(ValueError, match=r"epoch must be an integer in \[0, 3\]"):
        polynomial_sparsity(epoch, PruneParams())


def test_apply_masks_zeroes_pruned_entries():
    weights = initial_weights(lenet5(), 6)
    weights["fc3.bias"][:] = 0.25
    masks = global_magnitude_masks(weights, 0.8, LENET_KERNELS)

    pruned = apply_masks(weights, masks)

    for name in LENET_KERNELS:
        assert np.all(pruned[name][~masks[name]] == 0.0)
        assert not np.any(np.signbit(pruned[name][~masks[name]]))
        np.testing.assert_array_equal(pruned[name][masks[name]], weights[name][masks[name]])
        assert pruned[name].dtype == np.float32
    np.testing.assert_array_equal(pruned["fc3.bias"], weights["fc3.bias"])


def test_apply_masks_copies_input():
    weights = initial_weights(lenet5(), 7)
    original = {name: value.copy() for name, value in weights.items()}
    masks = global_magnitude_masks(weights, 0.5, LENET_KERNELS)

    pruned = apply_masks(weights, masks)
    pruned["fc3.bias"][0] = 99.0

    for name in weights:
        np.testing.assert_array_equal(weights[name], original[name])


def test_apply_masks_rejects_unknown_name():
    weights = initial_weights(lenet5(), 0)

    with pytest.raises(ValueError, match="mask 'fc9.weight' has no weight"):
        apply_masks(weights, {"fc9.weight": np.ones((2, 2), dtype=bool)})


def test_apply_masks_rejects_wrong_shape():
    weights = initial_weights(lenet5(), 0)

    with pytest.raises(ValueError, match=r"mask 'fc3.weight' has shape \(84, 10\), expected.*\(10, 84\)"):
        apply_masks(weights, {"fc3.weight": np.ones((84, 10), dtype=bool)})


def test_apply_masks_rejects_non_bool():
    weights = initial_weights(lenet5(), 0)

    with pytest.raises(ValueError, match="must have dtype bool"):
        apply_masks(weights, {"fc3.weight": np.ones((10, 84), dtype=np.float32)})


def test_sparsity_report_counts():
    weights = {
        "a.weight": np.array([[0.0, 1.0], [2.0, 0.0]], dtype=np.float32),
        "b.weight": np.array([0.0, 0.0, 0.0, 5.0], dtype=np.float32),
        "b.bias": np.zeros(4, dtype=np.float32),
    }

    report = sparsity_report(weights, ["a.weight", "b.weight"])

    assert report["layers"]["a.weight"] == {"parameters": 4, "nonzero": 2, "sparsity": 0.5}
    assert report["layers"]["b.weight"] == {"parameters": 4, "nonzero": 1, "sparsity": 0.75}
    assert report["total"] == {"parameters": 8, "nonzero": 3, "sparsity": 0.625}
    assert "b.bias" not in report["layers"]


def test_sparsity_report_after_global_pruning():
    weights = initial_weights(lenet5(), 8)
    total = sum(weights[name].size for name in LENET_KERNELS)

    pruned = apply_masks(weights, global_magnitude_masks(weights, 0.9, LENET_KERNELS))
    report = sparsity_report(pruned, LENET_KERNELS)

    assert report["total"]["parameters"] == total
    assert report["total"]["nonzero"] == total - round(0.9 * total)
