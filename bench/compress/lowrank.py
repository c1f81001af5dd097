"""Low-rank factorization: replace a dense or conv layer by two thinner layers from a truncated SVD.

A kernel seen as a matrix W (rows x cols) is factorized as W ~ B @ A with A = sqrt(S_r) Vt_r (r x cols)
and B = U_r sqrt(S_r) (rows x r), so both factors carry the same scale. Dense (out, in) kernels are
already matrices. A conv kernel (O, I, k, k) is the matrix (O, I*k*k). Its first factor becomes a
k x k conv with r filters and the original stride and padding, and its second a 1x1 conv.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bench.compress._layers import kernel_layers, resolve_layers
from bench.spec.model import Conv2D, Dense, Layer, LayerInfo, ModelSpec
from bench.spec.strategy import LowRankParams
from bench.spec.weights import Weights, check_weights

log = logging.getLogger(__name__)

SKIPPED_NO_SAVING = "skipped: no parameter saving"


@dataclass(frozen=True)
class _LayerResult:
    """The layers and weights that replace one layer, and its report entry."""

    layers: tuple[Layer, ...]
    weights: Weights
    report: dict


def factorize(
    spec: ModelSpec, weights: Weights, params: LowRankParams, ranks: Mapping[str, int] | None = None
) -> tuple[ModelSpec, Weights, dict]:
    """Factorize each selected conv and dense layer whose two factors have fewer parameters.

    The rank r is the smallest that keeps `params.energy` of the squared singular-value sum, or the
    fixed `params.rank`. Layer "<name>" becomes "<name>_a" (r outputs, no bias) followed by "<name>_b"
    (the original outputs and bias), at the same position. A layer is kept unchanged unless
    r * (rows + cols) < rows * cols. `params.layers` = None selects every conv and dense layer, the
    logits layer included.

    Returns the new spec (named "<name>-lowrank"), the new weights and a report: {"energy", "rank",
    "parameters_before", "parameters_after", "layers": {layer: {"kind", "factorized", "reason",
    "rank", "candidate_rank", "full_rank", "energy_kept", "parameters_before", "parameters_after"}}}
    with one entry per selected layer. "rank" and "energy_kept" describe the resulting network, so a
    skipped layer reports rank = full_rank = min(rows, cols) and energy 1.0, with "reason" set to
    SKIPPED_NO_SAVING (None for a factorized layer). "candidate_rank" is the rank the rule chose.
    Raises ValueError, naming the layer, when a fixed rank exceeds min(rows, cols) of a selected layer.

    `ranks` replaces the rule with a given rank per layer (a report's "rank" of its factorized layers),
    so another framework's trained weights can be factorized to the same architecture. Layers not in
    `ranks` are kept.
    """
    check_weights(spec, weights)
    eligible = [layer.name for layer in kernel_layers(spec)]
    targets = set(resolve_layers(spec, params.layers, eligible, "factorize"))
    taken_names = {layer.name for layer in spec.layers}

    layers: list[Layer] = []
    new_weights: Weights = {}
    report_layers = {}
    for info in spec.layer_infos():
        name = info.layer.name
        if name not in targets:
            layers.append(info.layer)
            new_weights.update(_copy_layer_weights(name, info, weights))
            continue

        if ranks is None:
            result = _factorize_layer(info, weights, params.energy, params.rank, taken_names)
        elif name in ranks:
            result = _factorize_layer(info, weights, None, int(ranks[name]), taken_names)
        else:
            layers.append(info.layer)
            new_weights.update(_copy_layer_weights(name, info, weights))
            continue
        layers.extend(result.layers)
        new_weights.update(result.weights)
        report_layers[name] = result.report

    new_spec = _lowrank_spec(spec, layers, params)
    check_weights(new_spec, new_weights)

    report = {
        "energy": params.energy,
        "rank": params.rank,
        "parameters_before": spec.count_parameters(),
        "parameters_after": new_spec.count_parameters(),
        "layers": report_layers,
    }
    factorized = [name for name, entry in report_layers.items() if entry["factorized"]]
    log.info(
        "low-rank factorization of %s: %d -> %d parameters",
        ", ".join(factorized) or "no layers",
        report["parameters_before"],
        report["parameters_after"],
    )
    return new_spec, new_weights, report


def select_rank(
    singular_values: np.ndarray, energy: float | None = None, rank: int | None = None, layer: str = "matrix"
) -> int:
    """Return the fixed `rank`, or the smallest rank whose squared singular values keep `energy` of their sum.

    Exactly one of `energy` and `rank` must be set. A zero matrix has rank 1 for any energy. Raises
    ValueError, naming `layer`, when a fixed rank exceeds the number of singular values.
    """
    if (energy is None) == (rank is None):
        raise ValueError(f"layer {layer!r}: set exactly one of energy and rank, got energy={energy!r}, rank={rank!r}")

    full_rank = len(singular_values)
    if rank is not None:
        if rank < 1 or rank > full_rank:
            raise ValueError(
                f"layer {layer!r}: rank {rank} is invalid, the kernel matrix allows a rank in [1, {full_rank}]"
            )
        return rank

    fractions = _cumulative_energy(singular_values)
    if fractions is None:
        return 1

    # searchsorted finds the first position whose cumulative fraction reaches the energy.
    return min(int(np.searchsorted(fractions, energy, side="left")) + 1, full_rank)


def truncated_svd_factors(matrix: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (A, B, S): A = sqrt(S_r) Vt_r (rank x cols) and B = U_r sqrt(S_r) (rows x rank), float64.

    B @ A is the best rank-`rank` approximation of `matrix` in the Frobenius norm. S contains all
    the singular values, in decreasing order.
    """
    u, s, vt = np.linalg.svd(np.asarray(matrix, dtype=np.float64), full_matrices=False)
    root = np.sqrt(s[:rank])
    a = root[:, None] * vt[:rank]
    b = u[:, :rank] * root[None, :]
    return a, b, s


def _factorize_layer(
    info: LayerInfo, weights: Weights, energy: float | None, rank: int | None, taken_names: set[str]
) -> _LayerResult:
    layer = info.layer
    kernel = weights[f"{layer.name}.weight"]
    matrix = kernel.reshape(kernel.shape[0], -1)
    rows, cols = matrix.shape
    full_rank = min(rows, cols)
    bias_count = rows if layer.bias else 0
    parameters_before = rows * cols + bias_count

    singular_values = np.linalg.svd(matrix.astype(np.float64), compute_uv=False)
    candidate = select_rank(singular_values, energy, rank, layer.name)
    report = {
        "kind": layer.kind,
        "factorized": False,
        "reason": SKIPPED_NO_SAVING,
        "rank": full_rank,
        "candidate_rank": candidate,
        "full_rank": full_rank,
        "energy_kept": 1.0,
        "parameters_before": parameters_before,
        "parameters_after": parameters_before,
    }
    if candidate * (rows + cols) >= rows * cols:
        return _LayerResult((layer,), _copy_layer_weights(layer.name, info, weights), report)

    first, second = _factor_layers(layer, candidate, rows, taken_names)
    a, b, _ = truncated_svd_factors(matrix, candidate)
    factor_weights = {
        f"{first.name}.weight": a.astype(kernel.dtype).reshape((candidate,) + kernel.shape[1:]),
        f"{second.name}.weight": b.astype(kernel.dtype).reshape((rows, candidate) + (1,) * (kernel.ndim - 2)),
    }
    if layer.bias:
        factor_weights[f"{second.name}.bias"] = weights[f"{layer.name}.bias"].copy()

    report.update(
        factorized=True,
        reason=None,
        rank=candidate,
        energy_kept=energy_fraction(singular_values, candidate),
        parameters_after=candidate * (rows + cols) + bias_count,
    )
    return _LayerResult((first, second), factor_weights, report)


def energy_fraction(singular_values: np.ndarray, rank: int) -> float:
    """Return the fraction of the squared singular-value sum that the first `rank` values keep (1.0 for zeros)."""
    fractions = _cumulative_energy(singular_values)
    return 1.0 if fractions is None else float(fractions[rank - 1])


def _cumulative_energy(singular_values: np.ndarray) -> np.ndarray | None:
    squared = np.asarray(singular_values, dtype=np.float64) ** 2
    total = squared.sum()
    if total == 0.0:
        return None
    return np.cumsum(squared) / total


def _factor_layers(layer: Layer, rank: int, outputs: int, taken_names: set[str]) -> tuple[Layer, Layer]:
    first_name = f"{layer.name}_a"
    second_name = f"{layer.name}_b"
    clashes = sorted({first_name, second_name} & taken_names)
    if clashes:
        raise ValueError(
            f"factorize: cannot split layer {layer.name!r} because the model already has layers named "
            f"{clashes}; rename them or leave {layer.name!r} out of params.layers"
        )
    taken_names.update((first_name, second_name))

    if isinstance(layer, Conv2D):
        first = Conv2D(first_name, rank, layer.kernel_size, stride=layer.stride, padding=layer.padding, bias=False)
        second = Conv2D(second_name, outputs, 1, bias=layer.bias)
        return first, second

    if isinstance(layer, Dense):
        return Dense(first_name, rank, bias=False), Dense(second_name, outputs, bias=layer.bias)

    raise ValueError(f"factorize: layer {layer.name!r} of kind {layer.kind!r} has no kernel to factorize")


def _copy_layer_weights(name: str, info: LayerInfo, weights: Weights) -> Weights:
    return {f"{name}.{param}": weights[f"{name}.{param}"].copy() for param in info.parameter_shapes}


def _lowrank_spec(spec: ModelSpec, layers: Sequence[Layer], params: LowRankParams) -> ModelSpec:
    rule = f"energy {params.energy}" if params.energy is not None else f"rank {params.rank}"
    return ModelSpec(
        name=f"{spec.name}-lowrank",
        input_shape=spec.input_shape,
        num_classes=spec.num_classes,
        layers=tuple(layers),
        description=f"{spec.description} (low-rank factorization at {rule})",
    )
