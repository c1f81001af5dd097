import types

import numpy as np
import pytest

from bench.compress import forward, prune_structured, structured_prune_targets
from bench.spec import check_weights, initial_weights, lenet5
from bench.spec.model import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ModelSpec, ReLU
from bench.spec.strategy import StructuredPruneParams


def _small_spec() -> ModelSpec:
    return ModelSpec(
        name="small",
        input_shape=(2, 16, 16),
        num_classes=3,
        layers=(
            Conv2D("conv1", 4, 3, padding=1),
            ReLU("relu1"),
            MaxPool2D("pool1", 2),
            Conv2D("conv2", 6, 3, stride=2, padding=1),
            ReLU("relu2"),
            MaxPool2D("pool2", 2),
            Flatten("flatten"),
            Dense("fc1", 8),
            ReLU("relu3"),
            Dropout("drop", 0.3),
            Dense("fc2", 4),
            ReLU("relu4"),
            Dense("logits", 3),
        ),
    )


def _random_weights(spec: ModelSpec, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in spec.parameter_shapes().items()}


def _zero_channels(weights: dict[str, np.ndarray], layer: str, channels: list[int]) -> None:
    weights[f"{layer}.weight"][channels] = 0.0
    weights[f"{layer}.bias"][channels] = 0.0


def _images(spec: ModelSpec, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count,) + tuple(spec.input_shape)).astype(np.float32)


def test_structured_ratio_zero_is_identity():
    spec = _small_spec()
    weights = _random_weights(spec, 0)
    images = _images(spec, 3, 1)

    new_spec, new_weights, report = prune_structured(spec, weights, StructuredPruneParams(ratio=0.0))

    assert new_spec.name == "small-structured"
    assert new_spec.layers == spec.layers
    assert set(new_weights) == set(weights)
    for name in weights:
        np.testing.assert_array_equal(new_weights[name], weights[name])
    np.testing.assert_array_equal(forward(new_spec, new_weights, images), forward(spec, weights, images))
    assert report["parameters_after"] == report["parameters_before"]


def test_structured_zero_channels_keep_output():
    spec = _small_spec()
    weights = _random_weights(spec, 2)
    _zero_channels(weights, "conv1", [1, 3])
    _zero_channels(weights, "conv2", [0, 2, 5])
    _zero_channels(weights, "fc1", [0, 4, 5, 6])
    _zero_channels(weights, "fc2", [1, 2])
    images = _images(spec, 5, 3)

    new_spec, new_weights, report = prune_structured(spec, weights, StructuredPruneParams(ratio=0.5))

    assert report["layers"]["conv1"]["kept_indices"] == [0, 2]
    assert report["layers"]["conv2"]["kept_indices"] == [1, 3, 4]
    assert report["layers"]["fc1"]["kept_indices"] == [1, 2, 3, 7]
    assert report["layers"]["fc2"]["kept_indices"] == [0, 3]
    np.testing.assert_allclose(forward(new_spec, new_weights, images), forward(spec, weights, images), atol=1e-5)


def test_structured_new_shapes():
    spec = _small_spec()

    new_spec, new_weights, _ = prune_structured(spec, _random_weights(spec, 4), StructuredPruneParams(ratio=0.5))

    shapes = new_spec.parameter_shapes()
    assert shapes["conv1.weight"] == (2, 2, 3, 3)
    assert shapes["conv2.weight"] == (3, 2, 3, 3)
    # pool2 leaves 3 channels of 2x2, so fc1 keeps 3 * 4 inputs.
    assert shapes["fc1.weight"] == (4, 12)
    assert shapes["fc2.weight"] == (2, 4)
    assert shapes["logits.weight"] == (3, 2)
    assert [layer.name for layer in new_spec.layers] == [layer.name for layer in spec.layers]
    check_weights(new_spec, new_weights)


def test_structured_flatten_keeps_channel_blocks():
    spec = _small_spec()
    weights = _random_weights(spec, 5)

    _, new_weights, report = prune_structured(spec, weights, StructuredPruneParams(ratio=0.5, layers=("conv2",)))

    kept = report["layers"]["conv2"]["kept_indices"]
    columns = [channel * 4 + offset for channel in kept for offset in range(4)]
    np.testing.assert_array_equal(new_weights["fc1.weight"], weights["fc1.weight"][:, columns])


def test_structured_drops_smallest_l1_norm():
    spec = _small_spec()
    weights = _random_weights(spec, 6)
    weights["conv1.weight"][2] *= 0.01
    weights["conv1.weight"][0] *= 0.02

    _, new_weights, report = prune_structured(spec, weights, StructuredPruneParams(ratio=0.5, layers=("conv1",)))

    assert report["layers"]["conv1"]["kept_indices"] == [1, 3]
    np.testing.assert_array_equal(new_weights["conv1.weight"], weights["conv1.weight"][[1, 3]])
    np.testing.assert_array_equal(new_weights["conv1.bias"], weights["conv1.bias"][[1, 3]])
    np.testing.assert_array_equal(new_weights["conv2.weight"], weights["conv2.weight"][:, [1, 3]])


def test_structured_ties_drop_lower_index():
    spec = _small_spec()
    weights = _random_weights(spec, 7)
    weights["fc2.weight"][:] = 1.0

    _, _, report = prune_structured(spec, weights, StructuredPruneParams(ratio=0.5, layers=("fc2",)))

    assert report["layers"]["fc2"]["kept_indices"] == [2, 3]


def test_structured_keeps_one_channel():
    spec = ModelSpec(
        name="narrow",
        input_shape=(1, 4, 4),
        num_classes=2,
        layers=(Conv2D("conv", 2, 3), Flatten("flatten"), Dense("fc", 2)),
    )

    new_spec, _, report = prune_structured(spec, _random_weights(spec, 8), StructuredPruneParams(ratio=0.9))

    assert new_spec.layers[0].out_channels == 1
    assert report["layers"]["conv"]["kept_channels"] == 1
    assert report["layers"]["conv"]["original_channels"] == 2


def test_structured_only_selected_layers():
    spec = _small_spec()

    params = StructuredPruneParams(ratio=0.5, layers=("fc1",))

    new_spec, _, report = prune_structured(spec, _random_weights(spec, 9), params)

    units = {layer.name: getattr(layer, "units", getattr(layer, "out_channels", None)) for layer in new_spec.layers}
    assert units["conv1"] == 4
    assert units["conv2"] == 6
    assert units["fc1"] == 4
    assert units["fc2"] == 4
    assert report["layers"]["fc1"]["selected"]
    assert not report["layers"]["fc2"]["selected"]
    assert report["layers"]["fc2"]["parameters_after"] == 4 * 4 + 4


def test_structured_parameter_counts():
    spec = _small_spec()

    new_spec, _, report = prune_structured(spec, _random_weights(spec, 10), StructuredPruneParams(ratio=0.3))

    assert report["parameters_before"] == spec.count_parameters()
    assert report["parameters_after"] == new_spec.count_parameters()
    assert sum(entry["parameters_after"] for entry in report["layers"].values()) == new_spec.count_parameters()
    assert sum(entry["parameters_before"] for entry in report["layers"].values()) == spec.count_parameters()
    assert report["ratio"] == 0.3


def test_structured_report_keys():
    spec = _small_spec()

    _, _, report = prune_structured(spec, _random_weights(spec, 11), StructuredPruneParams(ratio=0.5))

    assert list(report["layers"]) == ["conv1", "conv2", "fc1", "fc2", "logits"]
    assert report["layers"]["logits"] == {
        "kind": "dense",
        "selected": False,
        "original_channels": 3,
        "kept_channels": 3,
        "kept_indices": [0, 1, 2],
        "parameters_before": 4 * 3 + 3,
        "parameters_after": 2 * 3 + 3,
    }


def test_structured_without_bias():
    spec = ModelSpec(
        name="no-bias",
        input_shape=(1, 6, 6),
        num_classes=2,
        layers=(Conv2D("conv", 4, 3, bias=False), Flatten("flatten"), Dense("fc", 6, bias=False), Dense("out", 2)),
    )
    weights = _random_weights(spec, 12)
    weights["conv.weight"][[0, 1]] = 0.0
    weights["fc.weight"][[2, 3, 4]] = 0.0
    images = _images(spec, 2, 13)

    new_spec, new_weights, _ = prune_structured(spec, weights, StructuredPruneParams(ratio=0.5))

    check_weights(new_spec, new_weights)
    np.testing.assert_allclose(forward(new_spec, new_weights, images), forward(spec, weights, images), atol=1e-5)


def test_structured_targets_exclude_logits():
    assert structured_prune_targets(lenet5()) == ["conv1", "conv2", "fc1", "fc2"]


def test_structured_rejects_logits_layer():
    spec = lenet5()

    message = "'fc3' cannot be selected because it produces the logits.*valid layers: conv1, conv2, fc1, fc2"
    with pytest.raises(ValueError, match=message):
        prune_structured(spec, initial_weights(spec, 0), StructuredPruneParams(layers=("fc3",)))


def test_structured_rejects_unknown_layer():
    spec = lenet5()

    with pytest.raises(ValueError, match="no layer 'conv9'"):
        prune_structured(spec, initial_weights(spec, 0), StructuredPruneParams(layers=("conv9",)))


def test_structured_rejects_layer_without_kernel():
    spec = lenet5()

    with pytest.raises(ValueError, match="'relu1' cannot be selected"):
        prune_structured(spec, initial_weights(spec, 0), StructuredPruneParams(layers=("relu1",)))


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 2.0])
def test_structured_params_reject_ratio(ratio):
    with pytest.raises(ValueError, match="ratio"):
        StructuredPruneParams(ratio=ratio)


@pytest.mark.parametrize("ratio", [-0.1, 1.0, float("nan"), "half"])
def test_structured_rejects_invalid_ratio(ratio):
    spec = lenet5()
    params = types.SimpleNamespace(ratio=ratio, layers=None)

    with pytest.raises(ValueError, match=r"ratio must be a number in \[0.0, 1.0\)"):
        prune_structured(spec, initial_weights(spec, 0), params)


def test_structured_rejects_mismatched_weights():
    spec = lenet5()
    weights = initial_weights(spec, 0)
    weights["fc1.weight"] = weights["fc1.weight"][:, :100]

    with pytest.raises(ValueError, match="fc1.weight"):
        prune_structured(spec, weights, StructuredPruneParams())


def test_structured_leaves_input_unchanged():
    spec = _small_spec()
    weights = _random_weights(spec, 14)
    original = {name: value.copy() for name, value in weights.items()}

    prune_structured(spec, weights, StructuredPruneParams(ratio=0.5))

    for name in weights:
        np.testing.assert_array_equal(weights[name], original[name])
