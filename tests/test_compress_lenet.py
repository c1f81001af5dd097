import dataclasses
import json

import numpy as np

from bench.compress import (
    apply_masks,
    factorize,
    forward,
    global_magnitude_masks,
    polynomial_sparsity,
    prunable_kernels,
    prune_structured,
    sparsity_report,
)
from bench.spec import check_weights, initial_weights, lenet5
from bench.spec.model import ModelSpec
from bench.spec.strategy import LowRankParams, PruneParams, StructuredPruneParams


def _rebuild(spec: ModelSpec) -> ModelSpec:
    """Construct the spec again from its fields, which runs ModelSpec's validation and shape inference."""
    return ModelSpec(**{field.name: getattr(spec, field.name) for field in dataclasses.fields(spec)})


def _images(count: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((count, 1, 32, 32)).astype(np.float32)


def test_lenet_structured_half():
    spec = lenet5()
    weights = initial_weights(spec, 0)

    new_spec, new_weights, report = prune_structured(spec, weights, StructuredPruneParams(ratio=0.5))

    assert _rebuild(new_spec) == new_spec
    check_weights(new_spec, new_weights)
    kept = {name: entry["kept_channels"] for name, entry in report["layers"].items()}
    assert kept == {"conv1": 3, "conv2": 8, "fc1": 60, "fc2": 42, "fc3": 10}
    assert new_spec.parameter_shapes()["fc1.weight"] == (60, 8 * 5 * 5)
    assert report["parameters_after"] == new_spec.count_parameters()
    assert forward(new_spec, new_weights, _images(2)).shape == (2, 10)


def test_lenet_lowrank_energy():
    spec = lenet5()
    weights = initial_weights(spec, 0)

    new_spec, new_weights, report = factorize(spec, weights, LowRankParams(energy=0.9))

    assert _rebuild(new_spec) == new_spec
    check_weights(new_spec, new_weights)
    assert report["parameters_after"] == new_spec.count_parameters()
    assert report["parameters_after"] < report["parameters_before"]
    assert any(entry["factorized"] for entry in report["layers"].values())
    assert forward(new_spec, new_weights, _images(2)).shape == (2, 10)


def test_lenet_structured_then_lowrank():
    spec = lenet5()
    pruned_spec, pruned_weights, _ = prune_structured(spec, initial_weights(spec, 1), StructuredPruneParams(ratio=0.5))

    final_spec, final_weights, report = factorize(pruned_spec, pruned_weights, LowRankParams(energy=0.9))

    assert final_spec.name == "lenet5-structured-lowrank"
    check_weights(final_spec, final_weights)
    assert report["parameters_after"] == final_spec.count_parameters()


def test_lenet_unstructured_schedule():
    spec = lenet5()
    params = PruneParams()
    names = prunable_kernels(spec, params.layers)
    weights = initial_weights(spec, 2)
    total = sum(weights[name].size for name in names)

    for epoch in range(params.finetune_epochs):
        sparsity = polynomial_sparsity(epoch, params)
        weights = apply_masks(weights, global_magnitude_masks(weights, sparsity, names))
        report = sparsity_report(weights, names)
        assert report["total"]["nonzero"] == total - round(sparsity * total)

    check_weights(spec, weights)
    assert report["total"]["sparsity"] == round(0.9 * total) / total


def test_lenet_reports_are_json():
    spec = lenet5()
    weights = initial_weights(spec, 3)
    names = prunable_kernels(spec)

    reports = [
        sparsity_report(apply_masks(weights, global_magnitude_masks(weights, 0.5, names)), names),
        prune_structured(spec, weights, StructuredPruneParams(ratio=0.5))[2],
        factorize(spec, weights, LowRankParams(energy=0.9))[2],
        factorize(spec, weights, LowRankParams(energy=None, rank=3))[2],
    ]

    for report in reports:
        assert json.loads(json.dumps(report, allow_nan=False)) == report
