"""Gradient-sign attacks (FGSM, PGD) in TensorFlow, on NHWC inputs in normalized units."""

from __future__ import annotations

import keras
import tensorflow as tf

from bench.backend import InputRange
from bench.spec.strategy import AttackParams

_cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def perturb(model: keras.Model, images: tf.Tensor, labels: tf.Tensor, attack: AttackParams, bounds: InputRange) -> tf.Tensor:
    """Return adversarial copies of `images` (bench.backend.Backend.attack semantics), inference mode.

    The attack steps are a Python loop, so inside a tf.function they are unrolled into the graph.
    """
    epsilon = attack.epsilon * bounds.scale
    step = attack.resolved_step_size * bounds.scale
    clean = tf.stop_gradient(images)
    adversarial = clean
    for _ in range(attack.steps):
        with tf.GradientTape() as tape:
            tape.watch(adversarial)
            loss = _cross_entropy(labels, model(adversarial, training=False))
        gradient = tape.gradient(loss, adversarial)
        adversarial = adversarial + step * tf.sign(gradient)
        adversarial = tf.clip_by_value(adversarial, clean - epsilon, clean + epsilon)
        adversarial = tf.clip_by_value(adversarial, bounds.low, bounds.high)
    return tf.stop_gradient(adversarial)
