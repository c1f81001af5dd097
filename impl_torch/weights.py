"""Canonical weights in and out of a torch model.

PyTorch's native layouts are the canonical ones (conv OIHW, linear out x in, NCHW flatten), so the
conversion is a name-by-name copy with shape checks.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bench.spec import ModelSpec, Weights, check_weights


def set_weights(model: nn.Module, spec: ModelSpec, weights: Weights) -> None:
    check_weights(spec, weights)
    state = {name: torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)) for name, value in weights.items()}
    missing, unexpected = model.load_state_dict(state, strict=True)
    assert not missing and not unexpected, (missing, unexpected)


def get_weights(model: nn.Module, spec: ModelSpec) -> Weights:
    state = model.state_dict()
    weights = {name: state[name].detach().cpu().numpy().astype(np.float32, copy=True) for name in spec.parameter_shapes()}
    check_weights(spec, weights)
    return weights
