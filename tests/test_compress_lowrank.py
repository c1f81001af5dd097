import numpy as np
import pytest

from bench.compress import energy_fraction, factorize, forward, select_rank, truncated_svd_factors
from bench.spec import check_weights, initial_weights, lenet5
from bench.spec.model import Conv2D, Dense, Flatten, MaxPool2D, ModelSpec, ReLU
from bench.spec.strategy import LowRankParams


def _matrix_of_rank(rows: int, cols: int, singular_values: list[float], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rank = len(singular_values)
    u, _ = np.linalg.qr(rng.standard_normal((rows, rank)))
    v, _ = np.linalg.qr(rng.standard_normal((cols, rank)))
    return (u * np.asarray(singular_values)) @ v.T


def _low_rank_spec() -> ModelSpec:
    return ModelSpec(
        name="low-rank",
        input_shape=(2, 10, 10),
        num_classes=6,
        layers=(
            Conv2D("conv", 8, 3, stride=2, padding=1),
            ReLU("relu1"),
            MaxPool2D("pool", 2),
            Flatten("flatten"),
            Dense("fc1", 32),
            ReLU("relu2"),
            Dense("fc2", 6),
        ),
    )


def _low_rank_weights(spec: ModelSpec) -> dict[str, np.ndarray]:
    """Weights whose kernels, seen as matrices, have rank 3 with singular values 3, 2, 1."""
    rng = np.random.default_rng(0)
    weights = {}
    for seed, (name, shape) in enumerate(spec.parameter_shapes().items()):
        if name.endswith(".bias"):
            weights[name] = rng.standard_normal(shape).astype(np.float32)
            continue
        cols = int(np.prod(shape[1:]))
        matrix = _matrix_of_rank(shape[0], cols, [3.0, 2.0, 1.0], seed)
        weights[name] = matrix.reshape(shape).astype(np.float32)
    return weights


def _images(spec: ModelSpec, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count,) + tuple(spec.input_shape)).astype(np.float32)


def test_truncated_factors_full_rank_exact():
    matrix = np.random.default_rng(1).standard_normal((7, 5))

    a, b, singular_values = truncated_svd_factors(matrix, 5)

    assert a.shape == (5, 5)
    assert b.shape == (7, 5)
    assert len(singular_values) == 5
    np.testing.assert_allclose(b @ a, matrix, atol=1e-12)


def test_truncated_factors_balanced_scale():
    matrix = _matrix_of_rank(6, 9, [4.0, 1.0], seed=2)

    a, b, _ = truncated_svd_factors(matrix, 2)

    # Both factors carry sqrt(S), so their row and column norms match.
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=0))
    np.testing.assert_allclose(b @ a, matrix, atol=1e-12)


@pytest.mark.parametrize(("energy", "expected"), [(0.5, 1), (9 / 14, 1), (0.9, 2), (13 / 14, 2), (0.95, 3), (1.0, 3)])
def test_select_rank_by_energy(energy, expected):
    assert select_rank(np.array([3.0, 2.0, 1.0]), energy=energy) == expected


def test_select_rank_zero_matrix():
    assert select_rank(np.zeros(4), energy=0.9) == 1
    assert energy_fraction(np.zeros(4), 1) == 1.0


def test_select_rank_fixed():
    assert select_rank(np.array([3.0, 2.0, 1.0]), rank=2) == 2


def test_select_rank_fixed_too_large():
    with pytest.raises(ValueError, match=r"layer 'fc9': rank 4 is invalid.*\[1, 3\]"):
        select_rank(np.array([3.0, 2.0, 1.0]), rank=4, layer="fc9")


def test_select_rank_needs_one_rule():
    with pytest.raises(ValueError, match="exactly one of energy and rank"):
        select_rank(np.array([1.0]), energy=0.9, rank=1)


def test_energy_fraction_values():
    singular_values = np.array([3.0, 2.0, 1.0])

    assert energy_fraction(singular_values, 1) == pytest.approx(9 / 14)
    assert energy_fraction(singular_values, 2) == pytest.approx(13 / 14)
    assert energy_fraction(singular_values, 3) == 1.0


def test_factorize_true_low_rank_is_exact():
    spec = _low_rank_spec()
    weights = _low_rank_weights(spec)
    images = _images(spec, 6, 3)

    new_spec, new_weights, report = factorize(spec, weights, LowRankParams(energy=0.999))

    for name in ("conv", "fc1", "fc2"):
        assert report["layers"][name]["factorized"]
        assert report["layers"][name]["rank"] == 3
    np.testing.assert_allclose(forward(new_spec, new_weights, images), forward(spec, weights, images), atol=1e-4)


def test_factorize_layer_structure():
    spec = _low_rank_spec()

    new_spec, new_weights, _ = factorize(spec, _low_rank_weights(spec), LowRankParams(energy=0.999))

    names = [layer.name for layer in new_spec.layers]
    assert names == ["conv_a", "conv_b", "relu1", "pool", "flatten", "fc1_a", "fc1_b", "relu2", "fc2_a", "fc2_b"]
    assert new_spec.name == "low-rank-lowrank"
    conv_a, conv_b = new_spec.layers[0], new_spec.layers[1]
    assert (conv_a.out_channels, conv_a.kernel_size, conv_a.stride, conv_a.padding, conv_a.bias) == (3, 3, 2, 1, False)
    assert (conv_b.out_channels, conv_b.kernel_size, conv_b.stride, conv_b.padding, conv_b.bias) == (8, 1, 1, 0, True)
    assert new_weights["conv_a.weight"].shape == (3, 2, 3, 3)
    assert new_weights["conv_b.weight"].shape == (8, 3, 1, 1)
    assert new_weights["fc1_a.weight"].shape == (3, 32)
    assert new_weights["fc1_b.weight"].shape == (32, 3)
    assert "fc1_a.bias" not in new_weights
    assert all(value.dtype == np.float32 for value in new_weights.values())
    check_weights(new_spec, new_weights)


def test_factorize_keeps_bias():
    spec = _low_rank_spec()
    weights = _low_rank_weights(spec)

    _, new_weights, _ = factorize(spec, weights, LowRankParams(energy=0.999))

    np.testing.assert_array_equal(new_weights["conv_b.bias"], weights["conv.bias"])
    np.testing.assert_array_equal(new_weights["fc2_b.bias"], weights["fc2.bias"])


@pytest.mark.parametrize("energy", [0.3, 0.5, 0.8, 0.9, 0.99])
def test_factorize_energy_kept_reaches_threshold(energy):
    spec = lenet5()

    _, _, report = factorize(spec, initial_weights(spec, 0), LowRankParams(energy=energy))

    for name, entry in report["layers"].items():
        assert entry["energy_kept"] >= energy, name
        assert entry["rank"] <= entry["full_rank"], name


def test_factorize_energy_rank_is_smallest():
    spec = lenet5()
    weights = initial_weights(spec, 1)

    _, _, report = factorize(spec, weights, LowRankParams(energy=0.8, layers=("fc1",)))

    entry = report["layers"]["fc1"]
    singular_values = np.linalg.svd(weights["fc1.weight"].astype(np.float64), compute_uv=False)
    assert entry["factorized"]
    assert energy_fraction(singular_values, entry["rank"]) >= 0.8
    assert energy_fraction(singular_values, entry["rank"] - 1) < 0.8


def test_factorize_skips_without_saving():
    spec = lenet5()
    weights = initial_weights(spec, 0)

    new_spec, new_weights, report = factorize(spec, weights, LowRankParams(energy=0.9, layers=("conv1",)))

    entry = report["layers"]["conv1"]
    assert entry["factorized"] is False
    assert entry["reason"] == "skipped: no parameter saving"
    assert entry["rank"] == entry["full_rank"] == 6
    assert entry["candidate_rank"] * (6 + 25) >= 6 * 25
    assert entry["energy_kept"] == 1.0
    assert entry["parameters_after"] == entry["parameters_before"] == 156
    assert new_spec.layers == spec.layers
    np.testing.assert_array_equal(new_weights["conv1.weight"], weights["conv1.weight"])


def test_factorize_fixed_rank():
    spec = lenet5()
    weights = initial_weights(spec, 2)

    new_spec, new_weights, report = factorize(spec, weights, LowRankParams(energy=None, rank=2, layers=("fc1",)))

    entry = report["layers"]["fc1"]
    assert entry["rank"] == 2
    assert entry["parameters_after"] == 2 * (400 + 120) + 120
    assert new_weights["fc1_a.weight"].shape == (2, 400)
    assert new_weights["fc1_b.weight"].shape == (120, 2)
    assert new_spec.count_parameters() == spec.count_parameters() - 48_120 + entry["parameters_after"]


def test_factorize_fixed_rank_too_large():
    spec = lenet5()

    with pytest.raises(ValueError, match=r"layer 'conv1': rank 7 is invalid.*\[1, 6\]"):
        factorize(spec, initial_weights(spec, 0), LowRankParams(energy=None, rank=7))


def test_factorize_parameter_counts():
    spec = lenet5()

    new_spec, _, report = factorize(spec, initial_weights(spec, 3), LowRankParams(energy=0.5))

    # Every LeNet-5 parameter sits in a conv or dense layer, all of which are selected by default.
    assert sum(entry["parameters_after"] for entry in report["layers"].values()) == new_spec.count_parameters()
    assert report["parameters_after"] == new_spec.count_parameters()
    assert report["parameters_before"] == spec.count_parameters() == 61_706
    assert report["energy"] == 0.5
    assert report["rank"] is None
    assert list(report["layers"]) == ["conv1", "conv2", "fc1", "fc2", "fc3"]


def test_factorize_rejects_unknown_layer():
    spec = lenet5()

    with pytest.raises(ValueError, match="no layer 'fc7'.*valid layers: conv1, conv2, fc1, fc2, fc3"):
        factorize(spec, initial_weights(spec, 0), LowRankParams(layers=("fc7",)))


def test_factorize_rejects_layer_without_kernel():
    spec = lenet5()

    with pytest.raises(ValueError, match="'flatten' cannot be selected"):
        factorize(spec, initial_weights(spec, 0), LowRankParams(layers=("flatten",)))


def test_factorize_rejects_name_clash():
    spec = ModelSpec(
        name="clash",
        input_shape=(1, 8, 8),
        num_classes=2,
        layers=(Flatten("flatten"), Dense("fc", 40), Dense("fc_a", 2)),
    )
    weights = {name: np.ones(shape, dtype=np.float32) for name, shape in spec.parameter_shapes().items()}

    with pytest.raises(ValueError, match=r"cannot split layer 'fc'.*\['fc_a'\]"):
        factorize(spec, weights, LowRankParams(energy=0.9))


def test_factorize_without_bias():
    spec = ModelSpec(
        name="no-bias",
        input_shape=(1, 8, 8),
        num_classes=3,
        layers=(Flatten("flatten"), Dense("fc1", 30, bias=False), Dense("fc2", 3)),
    )
    weights = {
        "fc1.weight": _matrix_of_rank(30, 64, [2.0, 1.0], seed=4).astype(np.float32),
        "fc2.weight": np.random.default_rng(5).standard_normal((3, 30)).astype(np.float32),
        "fc2.bias": np.zeros(3, dtype=np.float32),
    }
    images = _images(spec, 4, 6)

    new_spec, new_weights, report = factorize(spec, weights, LowRankParams(energy=0.9999, layers=("fc1",)))

    assert new_spec.layers[2].bias is False
    assert "fc1_b.bias" not in new_weights
    assert report["layers"]["fc1"]["parameters_after"] == 2 * (30 + 64)
    np.testing.assert_allclose(forward(new_spec, new_weights, images), forward(spec, weights, images), atol=1e-4)


def test_factorize_leaves_input_unchanged():
    spec = lenet5()
    weights = initial_weights(spec, 4)
    original = {name: value.copy() for name, value in weights.items()}

    factorize(spec, weights, LowRankParams(energy=0.7))

    for name in weights:
        np.testing.assert_array_equal(weights[name], original[name])
