"""Unstructured pruning: global magnitude masks over conv and dense kernels, and their schedule.

A mask is a boolean array of its kernel's shape where True keeps the weight and False prunes it, so
`kernel * mask` applies it. Biases are never masked.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np

from bench.compress._layers import kernel_layers, resolve_layers
from bench.spec.model import ModelSpec
from bench.spec.strategy import PruneParams
from bench.spec.weights import Weights

log = logging.getLogger(__name__)

Masks = dict[str, np.ndarray]


def prunable_kernels(spec: ModelSpec, layers: Sequence[str] | None = None) -> list[str]:
    """Return the canonical kernel names ("conv1.weight", ...) of the conv and dense layers, in model order.

    `layers` restricts the result to those layer names. Raises ValueError for an unknown layer name or
    a layer without a kernel (pooling, ReLU, ...), listing the valid names.
    """
    eligible = [layer.name for layer in kernel_layers(spec)]
    selected = resolve_layers(spec, layers, eligible, "prunable_kernels")
    return [f"{name}.weight" for name in selected]


def pruned_count(sparsity: float, total: int) -> int:
    """Return how many of `total` weights a sparsity prunes: Python's round(sparsity * total), so halves go to even."""
    return round(sparsity * total)


def global_magnitude_masks(weights: Weights, sparsity: float, names: Sequence[str]) -> Masks:
    """Build masks that prune the round(sparsity * total) smallest |w| over all `names` together.

    One threshold applies to all listed kernels at once, so layers end at different sparsities. Ties
    are broken by a stable sort over the kernels in the order of `names`, then by flat (C-order) index:
    the earlier weight is pruned first. The same weights and names therefore always give the same
    masks, and weights that are already zero are pruned before any nonzero one.
    """
    _check_sparsity(sparsity)
    _check_kernel_names("global_magnitude_masks", weights, names)

    magnitudes = np.concatenate([np.abs(weights[name]).ravel() for name in names])
    if not np.all(np.isfinite(magnitudes)):
        bad = [name for name in names if not np.all(np.isfinite(weights[name]))]
        raise ValueError(f"global_magnitude_masks: kernels {bad} contain NaN or infinite values")

    count = pruned_count(sparsity, magnitudes.size)
    keep = np.ones(magnitudes.size, dtype=bool)
    keep[np.argsort(magnitudes, kind="stable")[:count]] = False

    masks: Masks = {}
    start = 0
    for name in names:
        size = weights[name].size
        masks[name] = keep[start : start + size].reshape(weights[name].shape)
        start += size

    log.debug("global magnitude masks: pruned %d of %d weights in %d kernels", count, magnitudes.size, len(names))
    return masks


def polynomial_sparsity(epoch: int, params: PruneParams) -> float:
    """Return the target sparsity at the start of fine-tuning epoch `epoch` (0-based).

    s(e) = s_f + (s_i - s_f) * (1 - min(1, (e + 1) / n)) ** power with n = ceil(finetune_epochs *
    end_fraction), so the final sparsity is reached at epoch n - 1 and stays until the last epoch.
    """
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch < params.finetune_epochs:
        raise ValueError(
            f"polynomial_sparsity: epoch must be an integer in [0, {params.finetune_epochs - 1}] "
            f"(finetune_epochs is {params.finetune_epochs}), got {epoch!r}"
        )

    ramp_epochs = math.ceil(params.finetune_epochs * params.end_fraction)
    remaining = 1.0 - min(1.0, (epoch + 1) / ramp_epochs)
    return params.sparsity + (params.initial_sparsity - params.sparsity) * remaining**params.power


def apply_masks(weights: Weights, masks: Mapping[str, np.ndarray]) -> Weights:
    """Return a copy of `weights` with the entries that `masks` prune set to exactly 0.0.

    Weights without a mask are copied unchanged. Raises ValueError for a mask whose name is not in
    `weights`, whose shape differs from its kernel's or whose dtype is not bool.
    """
    masked = {name: np.array(value, copy=True) for name, value in weights.items()}
    for name, mask in masks.items():
        if name not in weights:
            raise ValueError(f"apply_masks: mask {name!r} has no weight of that name; weights are {sorted(weights)}")
        mask = np.asarray(mask)
        if mask.dtype != np.bool_:
            raise ValueError(f"apply_masks: mask {name!r} must have dtype bool (True keeps), got {mask.dtype}")
        if mask.shape != weights[name].shape:
            raise ValueError(
                f"apply_masks: mask {name!r} has shape {mask.shape}, expected the weight's shape {weights[name].shape}"
            )

        # np.where writes +0.0, where multiplying a negative weight by 0 would leave -0.0.
        kernel = weights[name]
        masked[name] = np.where(mask, kernel, np.zeros((), dtype=kernel.dtype)).astype(kernel.dtype, copy=False)
    return masked


def sparsity_report(weights: Weights, names: Sequence[str]) -> dict:
    """Count the parameters, nonzero entries and sparsity of each kernel in `names` and of all together.

    Returns {"layers": {name: {"parameters", "nonzero", "sparsity"}}, "total": {the same keys}}, where
    sparsity is the fraction of exactly zero entries.
    """
    _check_kernel_names("sparsity_report", weights, names)

    layers = {}
    for name in names:
        layers[name] = _count(weights[name].size, int(np.count_nonzero(weights[name])))

    parameters = sum(entry["parameters"] for entry in layers.values())
    nonzero = sum(entry["nonzero"] for entry in layers.values())
    return {"layers": layers, "total": _count(parameters, nonzero)}


def _count(parameters: int, nonzero: int) -> dict:
    sparsity = (parameters - nonzero) / parameters if parameters else 0.0
    return {"parameters": parameters, "nonzero": nonzero, "sparsity": sparsity}


def _check_sparsity(sparsity: float) -> None:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0.0 <= sparsity < 1.0:
        raise ValueError(f"global_magnitude_masks: sparsity must be a number in [0.0, 1.0), got {sparsity!r}")


def _check_kernel_names(owner: str, weights: Weights, names: Sequence[str]) -> None:
    if isinstance(names, str) or not names:
        raise ValueError(f"{owner}: names must be a non-empty sequence of kernel names, got {names!r}")
    missing = [name for name in names if name not in weights]
    if missing:
        raise ValueError(f"{owner}: kernels {missing} are not in the weights; weights are {sorted(weights)}")
    if len(set(names)) != len(names):
        repeated = sorted({name for name in names if list(names).count(name) > 1})
        raise ValueError(f"{owner}: kernel names must be unique, repeated: {repeated}")
