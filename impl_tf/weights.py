"""Canonical weights in and out of a Keras model (also used for pruning masks, which share the layout).

Keras stores conv kernels as HWIO and dense kernels as (in, out), and its Flatten orders features as
(H, W, C). Canonical weights are OIHW, (out, in) and channel-major (C, H, W). The dense layer that
follows a Flatten therefore has its input rows permuted as well as transposed.
"""

from __future__ import annotations

import keras
import numpy as np

from bench.spec import ModelSpec, Weights, check_weights
from bench.spec.model import Conv2D, Dense, Flatten


def _flattened_chw_by_dense(spec: ModelSpec) -> dict[str, tuple[int, int, int]]:
    """Map each Dense layer fed by a Flatten of a (C, H, W) activation to that shape."""
    result: dict[str, tuple[int, int, int]] = {}
    pending: tuple[int, int, int] | None = None
    for info in spec.layer_infos():
        if isinstance(info.layer, Flatten) and len(info.input_shape) == 3:
            pending = tuple(info.input_shape)
        elif isinstance(info.layer, Dense):
            if pending is not None:
                result[info.layer.name] = pending
            pending = None
    return result


def kernels_to_keras(spec: ModelSpec, kernels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Convert canonical kernels (or masks of the same shape), keyed "layer.weight", to Keras layout."""
    flattened = _flattened_chw_by_dense(spec)
    layers = {layer.name: layer for layer in spec.layers}
    converted: dict[str, np.ndarray] = {}
    for name, kernel in kernels.items():
        layer = layers[name.rsplit(".", 1)[0]]
        if isinstance(layer, Conv2D):
            kernel = kernel.transpose(2, 3, 1, 0)
        elif isinstance(layer, Dense):
            if layer.name in flattened:
                channels, height, width = flattened[layer.name]
                kernel = kernel.reshape(layer.units, channels, height, width).transpose(0, 2, 3, 1)
                kernel = kernel.reshape(layer.units, -1)
            kernel = kernel.T
        else:
            raise ValueError(f"layer {layer.name!r} of kind {layer.kind!r} has no kernel")
        converted[name] = np.ascontiguousarray(kernel)
    return converted


def to_keras(spec: ModelSpec, weights: Weights) -> dict[str, list[np.ndarray]]:
    """Convert canonical weights to [kernel, bias] lists in Keras layout, by layer name."""
    check_weights(spec, weights)
    names = [f"{layer.name}.weight" for layer in spec.layers if isinstance(layer, (Conv2D, Dense))]
    kernels = kernels_to_keras(spec, {name: weights[name] for name in names})
    converted: dict[str, list[np.ndarray]] = {}
    for layer in spec.layers:
        if not isinstance(layer, (Conv2D, Dense)):
            continue
        kernel = kernels[f"{layer.name}.weight"]
        converted[layer.name] = [np.ascontiguousarray(kernel, dtype=np.float32)]
        if layer.bias:
            converted[layer.name].append(np.asarray(weights[f"{layer.name}.bias"], dtype=np.float32))
    return converted


def from_keras(spec: ModelSpec, keras_weights: dict[str, list[np.ndarray]]) -> Weights:
    """Convert Keras [kernel, bias] lists by layer name back to canonical weights."""
    flattened = _flattened_chw_by_dense(spec)
    weights: Weights = {}
    for layer in spec.layers:
        if layer.name not in keras_weights:
            continue
        kernel = keras_weights[layer.name][0]
        if isinstance(layer, Conv2D):
            canonical = kernel.transpose(3, 2, 0, 1)
        elif isinstance(layer, Dense):
            canonical = kernel.T
            if layer.name in flattened:
                channels, height, width = flattened[layer.name]
                canonical = canonical.reshape(layer.units, height, width, channels).transpose(0, 3, 1, 2)
                canonical = canonical.reshape(layer.units, -1)
        else:
            continue
        weights[f"{layer.name}.weight"] = np.ascontiguousarray(canonical, dtype=np.float32)
        if layer.bias:
            weights[f"{layer.name}.bias"] = np.array(keras_weights[layer.name][1], dtype=np.float32)
    check_weights(spec, weights)
    return weights


def set_weights(model: keras.Model, spec: ModelSpec, weights: Weights) -> None:
    for name, values in to_keras(spec, weights).items():
        model.get_layer(name).set_weights(values)


def get_weights(model: keras.Model, spec: ModelSpec) -> Weights:
    keras_weights = {
        layer.name: [np.asarray(v) for v in model.get_layer(layer.name).get_weights()]
        for layer in spec.layers
        if isinstance(layer, (Conv2D, Dense))
    }
    return from_keras(spec, keras_weights)
