"""Canonical weights in and out of a torch model.

PyTorch's native layouts are the canonical ones (conv OIHW, linear out x in, NCHW flatten), so the
conversion is a name-by-name copy with shape checks.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bench.spec import ModelSpec, Weights, check_weights
from impl_torch.peft import parameter_path
from impl_torch.pruning import effective_weight, make_permanent


def set_weights(model: nn.Module, spec: ModelSpec, weights: Weights) -> None:
    check_weights(spec, weights)
    make_permanent(model)
    state = {
        parameter_path(spec, name): torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
        for name, value in weights.items()
    }
    missing, unexpected = model.load_state_dict(state, strict=True)
    assert not missing, missing
    assert not unexpected, unexpected


def get_weights(model: nn.Module, spec: ModelSpec) -> Weights:
    """Export the weights the model computes with (masked weights while pruning masks are attached)."""
    weights = {}
    for name in spec.parameter_shapes():
        module_path, parameter = parameter_path(spec, name).rsplit(".", 1)
        tensor = effective_weight(model.get_submodule(module_path), parameter)
        weights[name] = tensor.detach().cpu().numpy().astype(np.float32, copy=True)
    check_weights(spec, weights)
    return weights
