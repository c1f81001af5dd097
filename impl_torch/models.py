"""Build a torch.nn.Module from a framework-neutral ModelSpec."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from bench.spec import ModelSpec
from bench.spec.model import Adapter, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from impl_torch import peft


def build_model(spec: ModelSpec) -> nn.Sequential:
    """Return an nn.Sequential whose child names are the spec's layer names (NCHW input).

    Layers with LoRA become peft LoRA layers around the plain conv or linear layer.
    """
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    for info in spec.layer_infos():
        layer = info.layer
        if isinstance(layer, Conv2D):
            modules[layer.name] = nn.Conv2d(
                info.input_shape[0],
                layer.out_channels,
                layer.kernel_size,
                stride=layer.stride,
                padding=layer.padding,
                bias=layer.bias,
            )
        elif isinstance(layer, MaxPool2D):
            modules[layer.name] = nn.MaxPool2d(layer.pool_size)
        elif isinstance(layer, Flatten):
            modules[layer.name] = nn.Flatten()
        elif isinstance(layer, Dense):
            modules[layer.name] = nn.Linear(info.input_shape[0], layer.units, bias=layer.bias)
        elif isinstance(layer, ReLU):
            modules[layer.name] = nn.ReLU()
        elif isinstance(layer, Dropout):
            modules[layer.name] = nn.Dropout(layer.rate)
        elif isinstance(layer, Adapter):
            modules[layer.name] = peft.Adapter(info.input_shape[0], layer.bottleneck, len(info.input_shape) == 3)
        else:
            raise NotImplementedError(f"torch backend: layer kind {layer.kind!r} is not implemented (build)")
    return peft.inject_lora(nn.Sequential(modules), spec)
