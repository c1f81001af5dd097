"""Build a Keras 3 model from a framework-neutral ModelSpec.

Keras on CPU computes in NHWC, so the model's input is (H, W, C). The backend transposes canonical
NCHW images on the way in, and impl_tf.weights converts kernels to and from the canonical layout.
"""

from __future__ import annotations

import keras

from bench.spec import ModelSpec
from bench.spec.model import Adapter, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from impl_tf import peft


def build_model(spec: ModelSpec) -> keras.Model:
    """Return a keras.Sequential whose layer names are the spec's layer names (NHWC input)."""
    channels, height, width = spec.input_shape
    layers: list[keras.layers.Layer] = [keras.Input(shape=(height, width, channels), name="input")]
    for layer in spec.layers:
        if isinstance(layer, Conv2D):
            if layer.padding:
                layers.append(keras.layers.ZeroPadding2D(layer.padding, name=f"{layer.name}_padding"))
            layers.append(
                keras.layers.Conv2D(
                    layer.out_channels,
                    layer.kernel_size,
                    strides=layer.stride,
                    padding="valid",
                    use_bias=layer.bias,
                    name=layer.name,
                )
            )
        elif isinstance(layer, MaxPool2D):
            layers.append(keras.layers.MaxPooling2D(layer.pool_size, name=layer.name))
        elif isinstance(layer, Flatten):
            layers.append(keras.layers.Flatten(name=layer.name))
        elif isinstance(layer, Dense):
            layers.append(keras.layers.Dense(layer.units, use_bias=layer.bias, name=layer.name))
        elif isinstance(layer, ReLU):
            layers.append(keras.layers.ReLU(name=layer.name))
        elif isinstance(layer, Dropout):
            layers.append(keras.layers.Dropout(layer.rate, name=layer.name))
        elif isinstance(layer, Adapter):
            layers.append(peft.Adapter(layer.bottleneck, name=layer.name))
        else:
            raise NotImplementedError(f"tf backend: layer kind {layer.kind!r} is not implemented (build)")
    model = keras.Sequential(layers, name=spec.name)
    peft.enable_lora(model, spec)
    return model
