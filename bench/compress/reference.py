"""A plain numpy forward pass over canonical weights, to check compression transforms without a framework.

It computes in float64 and returns float32 logits. It is written to be easy to check, not to be fast.
"""

from __future__ import annotations

import numpy as np

from bench.spec.model import Conv2D, Dense, LayerInfo, MaxPool2D, ModelSpec
from bench.spec.weights import Weights, check_weights


def forward(spec: ModelSpec, weights: Weights, images: np.ndarray) -> np.ndarray:
    """Compute the logits (N, num_classes) of `spec` with `weights` on NCHW `images`, in inference mode.

    Dropout is the identity. Raises ValueError if the weights do not match the spec or the images do
    not have the shape (N,) + spec.input_shape.
    """
    check_weights(spec, weights)
    _check_images(spec, images)

    activations = np.asarray(images, dtype=np.float64)
    for info in spec.layer_infos():
        activations = _apply_layer(info, weights, activations)

    return activations.astype(np.float32)


def _check_images(spec: ModelSpec, images: np.ndarray) -> None:
    expected = tuple(spec.input_shape)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(
            f"images must have shape (N, {', '.join(map(str, expected))}) for model {spec.name!r}, "
            f"got {tuple(images.shape)}"
        )


def _apply_layer(info: LayerInfo, weights: Weights, activations: np.ndarray) -> np.ndarray:
    layer = info.layer
    kind = layer.kind

    if kind == "conv2d":
        return _conv2d(layer, weights, activations)
    if kind == "dense":
        return _dense(layer, weights, activations)
    if kind == "maxpool2d":
        return _max_pool(layer, activations)
    if kind == "flatten":
        # NCHW activations flatten to channel-major (C, H, W) features, the canonical order.
        return activations.reshape(activations.shape[0], -1)
    if kind == "relu":
        return np.maximum(activations, 0.0)
    if kind == "dropout":
        return activations

    raise ValueError(f"layer {layer.name!r}: the reference forward pass has no rule for kind {kind!r}")


def _layer_parameters(layer: Conv2D | Dense, weights: Weights) -> tuple[np.ndarray, np.ndarray | None]:
    kernel = weights[f"{layer.name}.weight"].astype(np.float64)
    bias = weights[f"{layer.name}.bias"].astype(np.float64) if layer.bias else None
    return kernel, bias


def _conv2d(layer: Conv2D, weights: Weights, activations: np.ndarray) -> np.ndarray:
    kernel, bias = _layer_parameters(layer, weights)
    padding = layer.padding
    size = layer.kernel_size
    stride = layer.stride

    padded = np.pad(activations, ((0, 0), (0, 0), (padding, padding), (padding, padding)))

    # windows has shape (N, C, out_h, out_w, k, k): every k x k patch, then every stride-th one.
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size), axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride]

    output = np.einsum("nchwij,ocij->nohw", windows, kernel, optimize=True)
    if bias is not None:
        output = output + bias[None, :, None, None]
    return output


def _max_pool(layer: MaxPool2D, activations: np.ndarray) -> np.ndarray:
    pool = layer.pool_size
    batch, channels, height, width = activations.shape
    out_h = height // pool
    out_w = width // pool

    # Rows and columns that do not fill a whole window are dropped, as floor-mode pooling does.
    cropped = activations[:, :, : out_h * pool, : out_w * pool]
    blocks = cropped.reshape(batch, channels, out_h, pool, out_w, pool)
    return blocks.max(axis=(3, 5))


def _dense(layer: Dense, weights: Weights, activations: np.ndarray) -> np.ndarray:
    kernel, bias = _layer_parameters(layer, weights)
    output = activations @ kernel.T
    if bias is not None:
        output = output + bias
    return output
