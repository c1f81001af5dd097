"""Canonical weights: one numpy layout that both backends import and export.

Names are "<layer>.weight" and "<layer>.bias"; layouts are those of bench.spec.model (conv OIHW, dense
out x in, channel-major flatten). Initial weights are drawn here, in numpy, so that both frameworks
start a run from the same values for a given seed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from bench.spec.model import ModelSpec

Weights = dict[str, np.ndarray]


def initial_weights(spec: ModelSpec, seed: int, stream: int | None = None) -> Weights:
    """Draw Glorot-uniform kernels and zero biases (the Keras defaults) from `seed`.

    Fan-in and fan-out of a conv kernel include the receptive field: in_channels * k * k and
    out_channels * k * k. A `stream` draws from default_rng([seed, stream]) instead, for weights that
    must differ from the network's initial ones (a new head, adapters).
    """
    rng = np.random.default_rng(seed if stream is None else [seed, stream])
    weights: Weights = {}
    for name, shape in spec.parameter_shapes().items():
        if name.endswith("bias"):
            weights[name] = np.zeros(shape, dtype=np.float32)
            continue
        receptive_field = int(np.prod(shape[2:])) if len(shape) > 2 else 1
        fan_out = shape[0] * receptive_field
        fan_in = shape[1] * receptive_field
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        weights[name] = rng.uniform(-limit, limit, size=shape).astype(np.float32)
    return weights


def check_weights(spec: ModelSpec, weights: Weights) -> None:
    """Raise ValueError unless `weights` has exactly the spec's parameter names and shapes."""
    expected = spec.parameter_shapes()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"weights do not match model {spec.name!r}: missing {missing}, unexpected {unexpected}"
        )
    for name, shape in expected.items():
        if tuple(weights[name].shape) != tuple(shape):
            raise ValueError(
                f"weight {name!r} of model {spec.name!r} has shape {tuple(weights[name].shape)}, "
                f"expected {tuple(shape)}"
            )


def save_weights(path: str | Path, weights: Weights) -> None:
    np.savez(path, **weights)


def load_weights(path: str | Path) -> Weights:
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def weights_digest(weights: Weights) -> str:
    """Return a sha256 over the names, dtypes, shapes and bytes of `weights`: equal digests mean bit-identical weights."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        array = np.ascontiguousarray(weights[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
