"""Structured pruning: remove whole conv filters and dense neurons with the smallest L1 norm.

Channels are removed physically, so the result is a smaller ModelSpec and weights of the new shapes,
not a mask. Each pruned layer's next conv or dense layer (its consumer) loses the matching inputs.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence

import numpy as np

from bench.compress._layers import kernel_layers, resolve_layers
from bench.spec.model import Layer, LayerInfo, ModelSpec
from bench.spec.strategy import StructuredPruneParams
from bench.spec.weights import Weights, check_weights

log = logging.getLogger(__name__)

# Layers that act on each channel (or feature) separately, so that dropping a channel before them
# drops the same channel after them.
_CHANNELWISE_KINDS = ("maxpool2d", "relu", "dropout")


def prune_structured(
    spec: ModelSpec,
    weights: Weights,
    params: StructuredPruneParams,
    kept: Mapping[str, Sequence[int]] | None = None,
) -> tuple[ModelSpec, Weights, dict]:
    """Drop the round(ratio * channels) output channels of smallest L1 norm from each selected layer.

    The L1 norm of a conv filter sums |w| over (in_channels, kernel_h, kernel_w) and that of a dense
    neuron sums |w| over its row. Among equal norms the lower index is dropped first, and each layer
    keeps at least one channel. The count uses Python's round, so halves go to even. Norms come from
    the input `weights`, before any consumer slicing, so each layer's choice does not depend on the
    others. The last conv or dense layer produces the logits and is never pruned.

    Returns the new spec (named "<name>-structured", same layer names and order), the new weights and
    a report: {"ratio", "parameters_before", "parameters_after", "layers": {layer: {"kind", "selected",
    "original_channels", "kept_channels", "kept_indices", "parameters_before", "parameters_after"}}}
    with one entry per conv and dense layer. "selected" is true for the layers whose outputs were
    pruned. The others change only by losing inputs. For a dense layer, channels are its units.

    `kept` replaces the L1 selection with given output-channel indices per layer (a report's
    "kept_indices"), so another framework's trained weights can be cut to the same architecture.
    """
    check_weights(spec, weights)
    ratio = _check_ratio(params.ratio)
    targets = structured_prune_targets(spec, params.layers)

    infos = spec.layer_infos()
    positions = {info.layer.name: index for index, info in enumerate(infos)}

    if kept is None:
        kept_outputs = {name: select_channels(weights[f"{name}.weight"], ratio) for name in targets}
    else:
        kept_outputs = {name: _given_channels(name, kept[name], weights) for name in targets if name in kept}
    kept_inputs = {}
    for name, kept_indices in kept_outputs.items():
        consumer, columns = consumer_inputs(infos, positions[name], kept_indices)
        kept_inputs[consumer] = columns

    new_weights = _slice_weights(weights, kept_outputs, kept_inputs)
    new_spec = _pruned_spec(spec, kept_outputs, ratio)
    check_weights(new_spec, new_weights)

    report = _report(spec, new_spec, kept_outputs, ratio)
    log.info(
        "structured pruning at ratio %s of %s: %d -> %d parameters",
        ratio,
        ", ".join(targets) or "no layers",
        report["parameters_before"],
        report["parameters_after"],
    )
    return new_spec, new_weights, report


def _given_channels(name: str, indices: Sequence[int], weights: Weights) -> np.ndarray:
    channels = weights[f"{name}.weight"].shape[0]
    array = np.asarray(sorted(int(index) for index in indices), dtype=np.int64)
    if len(array) == 0 or array[0] < 0 or array[-1] >= channels or len(set(array.tolist())) != len(array):
        raise ValueError(f"layer {name!r}: kept channel indices must be distinct values in [0, {channels}), got {list(indices)}")
    return array


def structured_prune_targets(spec: ModelSpec, layers: Sequence[str] | None = None) -> list[str]:
    """Return the layers that structured pruning changes: every conv and dense layer but the logits layer.

    `layers` restricts the result to those names. Raises ValueError for an unknown name, a layer
    without a kernel, or the last conv or dense layer, whose outputs are the logits.
    """
    candidates = kernel_layers(spec)
    eligible = [layer.name for layer in candidates[:-1]]
    reasons = {}
    if candidates:
        reasons[candidates[-1].name] = "it produces the logits, which are never pruned"
    return resolve_layers(spec, layers, eligible, "prune_structured", reasons)


def select_channels(kernel: np.ndarray, ratio: float) -> np.ndarray:
    """Return the sorted indices of the output channels (axis 0) that survive pruning at `ratio`."""
    channels = kernel.shape[0]
    norms = np.abs(kernel.astype(np.float64)).reshape(channels, -1).sum(axis=1)
    dropped = min(round(ratio * channels), channels - 1)

    # A stable sort keeps equal norms in index order, so the lower index is dropped first.
    order = np.argsort(norms, kind="stable")
    return np.sort(order[dropped:])


def consumer_inputs(
    infos: Sequence[LayerInfo], position: int, kept_channels: np.ndarray
) -> tuple[str, np.ndarray]:
    """Find the next conv or dense layer after `position` and the input indices it keeps for `kept_channels`.

    Channel-wise layers pass channels through unchanged. After a Flatten, channel c of a (C, H, W)
    activation is the block of features [c * H * W, (c + 1) * H * W), because flattening is channel-major.
    """
    producer = infos[position].layer.name
    block = 1
    for info in infos[position + 1 :]:
        kind = info.layer.kind
        if kind in ("conv2d", "dense"):
            columns = (kept_channels[:, None] * block + np.arange(block)[None, :]).ravel()
            return info.layer.name, columns
        if kind == "flatten":
            block *= int(np.prod(info.input_shape[1:]))
        elif kind not in _CHANNELWISE_KINDS:
            raise ValueError(
                f"prune_structured: cannot map the channels of {producer!r} through layer "
                f"{info.layer.name!r} of kind {kind!r}"
            )

    raise ValueError(f"prune_structured: layer {producer!r} has no conv or dense layer after it to slice")


def _check_ratio(ratio: float) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio < 1.0:
        raise ValueError(f"prune_structured: ratio must be a number in [0.0, 1.0), got {ratio!r}")
    return float(ratio)


def _slice_weights(
    weights: Weights, kept_outputs: Mapping[str, np.ndarray], kept_inputs: Mapping[str, np.ndarray]
) -> Weights:
    new_weights = {name: np.array(value, copy=True) for name, value in weights.items()}

    # Conv (OIHW) and dense (out, in) kernels both have outputs on axis 0 and inputs on axis 1.
    for layer, kept_indices in kept_outputs.items():
        new_weights[f"{layer}.weight"] = np.take(new_weights[f"{layer}.weight"], kept_indices, axis=0)
        bias = f"{layer}.bias"
        if bias in new_weights:
            new_weights[bias] = new_weights[bias][kept_indices]

    for layer, columns in kept_inputs.items():
        new_weights[f"{layer}.weight"] = np.take(new_weights[f"{layer}.weight"], columns, axis=1)

    return new_weights


def _pruned_spec(spec: ModelSpec, kept_outputs: Mapping[str, np.ndarray], ratio: float) -> ModelSpec:
    layers: list[Layer] = []
    for layer in spec.layers:
        if layer.name not in kept_outputs:
            layers.append(layer)
        elif layer.kind == "conv2d":
            layers.append(dataclasses.replace(layer, out_channels=len(kept_outputs[layer.name])))
        else:
            layers.append(dataclasses.replace(layer, units=len(kept_outputs[layer.name])))

    return ModelSpec(
        name=f"{spec.name}-structured",
        input_shape=spec.input_shape,
        num_classes=spec.num_classes,
        layers=tuple(layers),
        description=f"{spec.description} (L1-norm structured pruning at ratio {ratio})",
    )


def _report(spec: ModelSpec, new_spec: ModelSpec, kept_outputs: Mapping[str, np.ndarray], ratio: float) -> dict:
    before = {info.layer.name: info for info in spec.layer_infos()}
    after = {info.layer.name: info for info in new_spec.layer_infos()}

    layers = {}
    for layer in kernel_layers(spec):
        name = layer.name
        original = before[name].output_shape[0]
        kept_indices = kept_outputs.get(name, np.arange(original))
        layers[name] = {
            "kind": layer.kind,
            "selected": name in kept_outputs,
            "original_channels": original,
            "kept_channels": len(kept_indices),
            "kept_indices": [int(index) for index in kept_indices],
            "parameters_before": _count(before[name]),
            "parameters_after": _count(after[name]),
        }

    return {
        "ratio": ratio,
        "parameters_before": spec.count_parameters(),
        "parameters_after": new_spec.count_parameters(),
        "layers": layers,
    }


def _count(info: LayerInfo) -> int:
    return sum(int(np.prod(shape)) for shape in info.parameter_shapes.values())
