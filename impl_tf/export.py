"""ONNX export of Keras models with tf2onnx (opset 18, dynamic batch, NCHW input like the torch export).

tf2onnx's `inputs_as_nchw` puts a Transpose at the graph input, so both frameworks' exports take the
same canonical (batch, C, H, W) input named "input" and return "logits".
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import onnx
import tensorflow as tf
import tf2onnx

from bench.spec import ModelSpec

log = logging.getLogger(__name__)

OPSET = 18


def export_onnx(model: keras.Model, spec: ModelSpec, path: Path) -> None:
    channels, height, width = spec.input_shape
    signature = (tf.TensorSpec((None, height, width, channels), tf.float32, name="input"),)

    @tf.function(input_signature=signature)
    def inference(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"logits": model(images, training=False)}

    proto, _ = tf2onnx.convert.from_function(
        inference,
        input_signature=signature,
        opset=OPSET,
        inputs_as_nchw=["input"],
    )
    _rename_output(proto, "logits")
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    log.debug("exported %s to %s", spec.name, path)


def _rename_output(proto: onnx.ModelProto, name: str) -> None:
    """Give the single graph output a stable name (tf2onnx derives it from the tf.function)."""
    (output,) = proto.graph.output
    old = output.name
    if old == name:
        return
    for node in proto.graph.node:
        node.output[:] = [name if value == old else value for value in node.output]
        node.input[:] = [name if value == old else value for value in node.input]
    output.name = name
