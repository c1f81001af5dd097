"""The TF training loop: SGD with momentum on softmax cross-entropy, batches in the shared order.

The whole training set lives in one tensor and each step gathers its batch by index, so the order is
exactly bench.data's epoch order and no tf.data shuffling is involved.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from bench.backend import EpochReport, TrainData, TrainResult
from bench.spec import TrainRecipe


def make_optimizer(recipe: TrainRecipe) -> keras.optimizers.Optimizer:
    if recipe.optimizer != "sgd":
        raise NotImplementedError(f"tf backend: optimizer {recipe.optimizer!r} is not implemented (train)")
    # Keras SGD keeps m = momentum * m - lr * g; set_learning_rate keeps it equal to torch's form.
    return keras.optimizers.SGD(learning_rate=recipe.learning_rate, momentum=recipe.momentum)


def set_learning_rate(optimizer: keras.optimizers.SGD, learning_rate: float) -> None:
    """Set the learning rate and keep Keras's momentum equal to torch's across the change.

    Keras's buffer is m = -lr * v, where v is torch's buffer; rescaling m by lr_new / lr_old keeps
    m = -lr_new * v, so the next step matches torch's w -= lr_new * (momentum * v + g).
    """
    old = float(optimizer.learning_rate.numpy())
    optimizer.learning_rate.assign(learning_rate)
    if optimizer.built and optimizer.momentums and old != learning_rate:
        ratio = learning_rate / old
        for buffer in optimizer.momentums:
            buffer.assign(buffer * ratio)


def train_model(
    model: keras.Model,
    recipe: TrainRecipe,
    data: TrainData,
    on_epoch: Callable[[EpochReport], None],
) -> TrainResult:
    optimizer = make_optimizer(recipe)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    images = tf.constant(np.ascontiguousarray(data.images.transpose(0, 2, 3, 1)))
    labels = tf.constant(data.labels)
    result = TrainResult(samples_per_epoch=len(data.labels))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)], reduce_retracing=True)
    def train_step(index: tf.Tensor) -> tf.Tensor:
        batch_images = tf.gather(images, index)
        batch_labels = tf.gather(labels, index)
        with tf.GradientTape() as tape:
            logits = model(batch_images, training=True)
            loss = loss_fn(batch_labels, logits)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    for epoch in range(recipe.epochs):
        set_learning_rate(optimizer, recipe.learning_rate_at(epoch))
        loss_sum = 0.0
        start = time.perf_counter()

        for batch in data.batch_order(epoch):
            loss = train_step(tf.constant(batch, dtype=tf.int64))
            loss_sum += float(loss) * len(batch)

        seconds = time.perf_counter() - start
        mean_loss = loss_sum / len(data.labels)
        result.epoch_seconds.append(seconds)
        result.epoch_losses.append(mean_loss)
        on_epoch(EpochReport(epoch, recipe.epochs, mean_loss, seconds, len(data.labels)))

    return result
