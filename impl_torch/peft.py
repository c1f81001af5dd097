"""Parameter-efficient fine-tuning in PyTorch: residual adapters, LoRA through the peft library, and
trainable-parameter selection by canonical name.

LoRA layers come from peft's `inject_adapter_in_model`, which replaces each target module in place
with a peft LoRA layer (base layer plus lora_A and lora_B). Its A is a k x k conv (or linear) to the
rank and its B a 1 x 1 conv (or linear) back, the canonical LoRA layout, with scale lora_alpha / r.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from bench.spec import ModelSpec
from bench.spec.model import Conv2D, Dense


class Adapter(nn.Module):
    """x + up(relu(down(x))) with 1x1 convolutions on 4-D inputs and linear maps on flat ones.

    Parameters are named as the canonical ones (down_weight, down_bias, up_weight, up_bias).
    """

    def __init__(self, width: int, bottleneck: int, spatial: bool):
        super().__init__()
        shape = (1, 1) if spatial else ()
        self.spatial = spatial
        self.down_weight = nn.Parameter(torch.zeros(bottleneck, width, *shape))
        self.down_bias = nn.Parameter(torch.zeros(bottleneck))
        self.up_weight = nn.Parameter(torch.zeros(width, bottleneck, *shape))
        self.up_bias = nn.Parameter(torch.zeros(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        project = F.conv2d if self.spatial else F.linear
        hidden = F.relu(project(x, self.down_weight, self.down_bias))
        return x + project(hidden, self.up_weight, self.up_bias)


def lora_layers(spec: ModelSpec) -> dict[str, tuple[int, float]]:
    """Map each layer with LoRA to its (rank, alpha)."""
    return {
        layer.name: (layer.lora_rank, layer.lora_alpha)
        for layer in spec.layers
        if isinstance(layer, (Conv2D, Dense)) and layer.lora_rank
    }


def inject_lora(model: nn.Module, spec: ModelSpec) -> nn.Module:
    """Replace the spec's LoRA layers in `model` by peft LoRA layers; every parameter stays trainable."""
    targets = lora_layers(spec)
    if not targets:
        return model
    from peft import LoraConfig, inject_adapter_in_model

    first_rank, first_alpha = next(iter(targets.values()))
    config = LoraConfig(
        r=first_rank,
        lora_alpha=first_alpha,
        target_modules=list(targets),
        rank_pattern={name: rank for name, (rank, _) in targets.items()},
        alpha_pattern={name: alpha for name, (_, alpha) in targets.items()},
        lora_dropout=0.0,
        bias="none",
    )
    model = inject_adapter_in_model(config, model)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model


def parameter_path(spec: ModelSpec, name: str) -> str:
    """Translate a canonical parameter name into its path in the torch model (peft layers differ)."""
    layer, parameter = name.rsplit(".", 1)
    if layer not in lora_layers(spec):
        return name
    return {
        "weight": f"{layer}.base_layer.weight",
        "bias": f"{layer}.base_layer.bias",
        "lora_a": f"{layer}.lora_A.default.weight",
        "lora_b": f"{layer}.lora_B.default.weight",
    }[parameter]


def set_trainable(model: nn.Module, spec: ModelSpec, names: set[str]) -> None:
    """Let the optimizer update exactly the canonical parameters in `names`."""
    unknown = sorted(set(names) - set(spec.parameter_shapes()))
    if unknown:
        raise ValueError(f"torch backend: no parameters named {unknown} in {spec.name}")
    paths = {parameter_path(spec, name) for name in names}
    for path, parameter in model.named_parameters():
        parameter.requires_grad_(path in paths)


def count_trainable(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
