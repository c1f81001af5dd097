"""Parameter-efficient fine-tuning in Keras 3: residual adapters, LoRA through Keras's own
`enable_lora`, and trainable-parameter selection by canonical name.

Keras computes a LoRA layer's kernel as kernel + lora_alpha / rank * (lora_kernel_a @ lora_kernel_b),
with lora_kernel_a of shape kernel.shape[:-1] + (rank,) and lora_kernel_b of (rank, units), the same
update as the canonical B A once the layouts are converted (impl_tf.weights).
"""

from __future__ import annotations

import keras
import numpy as np

from bench.spec import ModelSpec
from bench.spec.model import Adapter as AdapterSpec
from bench.spec.model import Conv2D, Dense


class Adapter(keras.layers.Layer):
    """x + up(relu(down(x))) on the last axis: a 1x1 conv bottleneck on NHWC inputs, dense on flat ones."""

    def __init__(self, bottleneck: int, **kwargs):
        super().__init__(**kwargs)
        self.bottleneck = bottleneck

    def build(self, input_shape):
        width = input_shape[-1]
        self.down_kernel = self.add_weight(name="down_kernel", shape=(width, self.bottleneck), initializer="zeros")
        self.down_bias = self.add_weight(name="down_bias", shape=(self.bottleneck,), initializer="zeros")
        self.up_kernel = self.add_weight(name="up_kernel", shape=(self.bottleneck, width), initializer="zeros")
        self.up_bias = self.add_weight(name="up_bias", shape=(width,), initializer="zeros")

    def call(self, inputs):
        hidden = keras.ops.relu(keras.ops.matmul(inputs, self.down_kernel) + self.down_bias)
        return inputs + keras.ops.matmul(hidden, self.up_kernel) + self.up_bias

    def get_config(self):
        return {**super().get_config(), "bottleneck": self.bottleneck}


def enable_lora(model: keras.Model, spec: ModelSpec) -> None:
    """Turn on Keras LoRA for the spec's LoRA layers; every variable stays trainable."""
    for layer in spec.layers:
        if isinstance(layer, (Conv2D, Dense)) and layer.lora_rank:
            keras_layer = model.get_layer(layer.name)
            keras_layer.enable_lora(layer.lora_rank, lora_alpha=layer.lora_alpha)
            for variable in keras_layer.weights:
                variable.trainable = True


def canonical_variables(model: keras.Model, spec: ModelSpec) -> dict[str, keras.Variable]:
    """Map canonical parameter names to the Keras variables that hold them."""
    result: dict[str, keras.Variable] = {}
    for layer in spec.layers:
        if isinstance(layer, (Conv2D, Dense)):
            names = ["weight"] + (["bias"] if layer.bias else []) + (["lora_a", "lora_b"] if layer.lora_rank else [])
        elif isinstance(layer, AdapterSpec):
            names = ["down_weight", "down_bias", "up_weight", "up_bias"]
        else:
            continue
        # Keras creates kernel and bias in build and the LoRA factors in enable_lora, in this order.
        variables = model.get_layer(layer.name).weights
        if len(variables) != len(names):
            raise RuntimeError(f"tf backend: layer {layer.name!r} has {len(variables)} variables, expected {names}")
        result.update({f"{layer.name}.{name}": variable for name, variable in zip(names, variables)})
    return result


def set_trainable(model: keras.Model, spec: ModelSpec, names: set[str]) -> None:
    """Let the optimizer update exactly the canonical parameters in `names`."""
    variables = canonical_variables(model, spec)
    unknown = sorted(set(names) - set(variables))
    if unknown:
        raise ValueError(f"tf backend: no parameters named {unknown} in {spec.name}")
    for name, variable in variables.items():
        variable.trainable = name in names


def count_trainable(model: keras.Model) -> int:
    return int(sum(np.prod(variable.shape) for variable in model.trainable_variables))
