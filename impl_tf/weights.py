"""Canonical weights in and out of a Keras model (also used for pruning masks, which share the layout).

Keras stores conv kernels as HWIO and dense kernels as (in, out), and its Flatten orders features as
(H, W, C). Canonical weights are OIHW, (out, in) and channel-major (C, H, W). The dense layer that
follows a Flatten therefore has its input rows permuted as well as transposed.
"""

from __future__ import annotations

import keras
import numpy as np

from bench.spec import ModelSpec, Weights, check_weights
from bench.spec.model import Adapter, Conv2D, Dense, Flatten


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


def _rows_to_keras(matrix: np.ndarray, flattened: tuple[int, int, int] | None) -> np.ndarray:
    """Convert a canonical (rows, in) matrix acting on dense inputs to Keras's (in, rows)."""
    if flattened is not None:
        channels, height, width = flattened
        matrix = matrix.reshape(len(matrix), channels, height, width).transpose(0, 2, 3, 1).reshape(len(matrix), -1)
    return matrix.T


def _rows_from_keras(matrix: np.ndarray, flattened: tuple[int, int, int] | None) -> np.ndarray:
    """Convert Keras's (in, rows) back to a canonical (rows, in) matrix."""
    canonical = matrix.T
    if flattened is not None:
        channels, height, width = flattened
        rows = len(canonical)
        canonical = canonical.reshape(rows, height, width, channels).transpose(0, 3, 1, 2).reshape(rows, -1)
    return canonical


def to_keras(spec: ModelSpec, weights: Weights) -> dict[str, list[np.ndarray]]:
    """Convert canonical weights to Keras variable lists by layer name, in Keras's variable order.

    Conv and dense layers hold [kernel, bias] plus [lora_kernel_a, lora_kernel_b] with LoRA; adapters
    hold [down_kernel, down_bias, up_kernel, up_bias].
    """
    check_weights(spec, weights)
    flattened = _flattened_chw_by_dense(spec)
    converted: dict[str, list[np.ndarray]] = {}
    for layer in spec.layers:
        name = layer.name
        if isinstance(layer, Conv2D):
            values = [weights[f"{name}.weight"].transpose(2, 3, 1, 0)]
        elif isinstance(layer, Dense):
            values = [_rows_to_keras(weights[f"{name}.weight"], flattened.get(name))]
        elif isinstance(layer, Adapter):
            down, up = weights[f"{name}.down_weight"], weights[f"{name}.up_weight"]
            values = [
                down.reshape(down.shape[0], down.shape[1]).T,
                weights[f"{name}.down_bias"],
                up.reshape(up.shape[0], up.shape[1]).T,
                weights[f"{name}.up_bias"],
            ]
        else:
            continue
        if isinstance(layer, (Conv2D, Dense)):
            if layer.bias:
                values.append(weights[f"{name}.bias"])
            if layer.lora_rank:
                lora_a, lora_b = weights[f"{name}.lora_a"], weights[f"{name}.lora_b"]
                if isinstance(layer, Conv2D):
                    values += [lora_a.transpose(2, 3, 1, 0), lora_b[:, :, 0, 0].T]
                else:
                    values += [_rows_to_keras(lora_a, flattened.get(name)), lora_b.T]
        converted[name] = [np.ascontiguousarray(value, dtype=np.float32) for value in values]
    return converted


def from_keras(spec: ModelSpec, keras_weights: dict[str, list[np.ndarray]]) -> Weights:
    """Convert Keras variable lists by layer name (in to_keras's order) back to canonical weights."""
    flattened = _flattened_chw_by_dense(spec)
    shapes = spec.parameter_shapes()
    weights: Weights = {}
    for layer in spec.layers:
        name = layer.name
        if name not in keras_weights:
            continue
        values = list(keras_weights[name])
        if isinstance(layer, Adapter):
            down_kernel, down_bias, up_kernel, up_bias = values
            weights[f"{name}.down_weight"] = down_kernel.T.reshape(shapes[f"{name}.down_weight"])
            weights[f"{name}.down_bias"] = down_bias
            weights[f"{name}.up_weight"] = up_kernel.T.reshape(shapes[f"{name}.up_weight"])
            weights[f"{name}.up_bias"] = up_bias
            continue
        if not isinstance(layer, (Conv2D, Dense)):
            continue
        kernel = values.pop(0)
        if isinstance(layer, Conv2D):
            weights[f"{name}.weight"] = kernel.transpose(3, 2, 0, 1)
        else:
            weights[f"{name}.weight"] = _rows_from_keras(kernel, flattened.get(name))
        if layer.bias:
            weights[f"{name}.bias"] = values.pop(0)
        if layer.lora_rank:
            lora_a, lora_b = values
            if isinstance(layer, Conv2D):
                weights[f"{name}.lora_a"] = lora_a.transpose(3, 2, 0, 1)
                weights[f"{name}.lora_b"] = lora_b.T[:, :, None, None]
            else:
                weights[f"{name}.lora_a"] = _rows_from_keras(lora_a, flattened.get(name))
                weights[f"{name}.lora_b"] = lora_b.T
    weights = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in weights.items()}
    check_weights(spec, weights)
    return weights


def set_weights(model: keras.Model, spec: ModelSpec, weights: Weights) -> None:
    for name, values in to_keras(spec, weights).items():
        model.get_layer(name).set_weights(values)


def get_weights(model: keras.Model, spec: ModelSpec) -> Weights:
    keras_weights = {
        layer.name: [np.asarray(value) for value in model.get_layer(layer.name).get_weights()]
        for layer in spec.layers
        if isinstance(layer, (Conv2D, Dense, Adapter))
    }
    return from_keras(spec, keras_weights)
