"""Pruning masks on a torch model through torch.nn.utils.prune.

Masks arrive in the canonical layout, which is PyTorch's own, keyed "layer.weight". The first call
attaches them with prune.custom_from_mask (the module then computes weight = weight_orig * weight_mask
in a forward pre-hook, so masked weights stay zero through every optimizer step); later calls replace
the mask buffer in place. `make_permanent` folds the masks into plain weights before export.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune


def apply_masks(model: nn.Module, masks: dict[str, np.ndarray]) -> None:
    for name, mask in masks.items():
        layer_name, parameter = name.rsplit(".", 1)
        module = model.get_submodule(layer_name)
        mask_tensor = torch.from_numpy(np.asarray(mask, dtype=np.float32))
        buffer = getattr(module, f"{parameter}_mask", None)
        if buffer is None:
            prune.custom_from_mask(module, parameter, mask_tensor)
        else:
            buffer.copy_(mask_tensor)


def effective_weight(module: nn.Module, parameter: str = "weight") -> torch.Tensor:
    """Return the weight the module computes with: weight_orig * weight_mask while pruned."""
    original = getattr(module, f"{parameter}_orig", None)
    if original is None:
        return getattr(module, parameter)
    return original * getattr(module, f"{parameter}_mask")


def make_permanent(model: nn.Module) -> None:
    for module in model.modules():
        if prune.is_pruned(module):
            for hook in list(module._forward_pre_hooks.values()):
                if isinstance(hook, prune.BasePruningMethod):
                    prune.remove(module, hook._tensor_name)
