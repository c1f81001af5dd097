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

from bench.backend import EpochReport, MasksForEpoch, TrainData, TrainOptions, TrainResult
from bench.spec import ModelSpec, TrainRecipe
from bench.spec.model import Conv2D, Dense
from impl_tf import adversarial as attacks
from impl_tf import weights


def make_optimizer(recipe: TrainRecipe) -> keras.optimizers.Optimizer:
    if recipe.optimizer != "sgd":
        raise NotImplementedError(f"tf backend: optimizer {recipe.optimizer!r} is not implemented (train)")
    # Keras SGD keeps m = momentum * m - lr * g; set_learning_rate keeps it equal to torch's form.
    return keras.optimizers.SGD(learning_rate=recipe.learning_rate, momentum=recipe.momentum)


def distillation_loss(
    student_logits: tf.Tensor, teacher_logits: tf.Tensor, labels: tf.Tensor, temperature: float, alpha: float
) -> tf.Tensor:
    """alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE, batch means.

    The KL term is computed from log-softmax values rather than with keras.losses.KLDivergence, which
    clips probabilities at 1e-7 and so departs from the exact divergence that torch computes.
    """
    log_teacher = tf.nn.log_softmax(teacher_logits / temperature, axis=1)
    log_student = tf.nn.log_softmax(student_logits / temperature, axis=1)
    soft = tf.reduce_mean(tf.reduce_sum(tf.exp(log_teacher) * (log_teacher - log_student), axis=1))
    hard = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=student_logits))
    return alpha * temperature**2 * soft + (1.0 - alpha) * hard


def l2_penalty(model: keras.Model, l2: float):
    """The L2 penalty on every conv and dense kernel as a function of no arguments, or None.

    A keras.regularizers.L2 of l2 / 2 adds l2 * w to each kernel's gradient, PyTorch's weight_decay=l2.
    """
    if not l2:
        return None
    regularizer = keras.regularizers.L2(l2 / 2)
    kernels = [layer.kernel for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]
    return lambda: tf.add_n([regularizer(kernel) for kernel in kernels])


def prunable_kernel_names(spec: ModelSpec) -> list[str]:
    return [f"{layer.name}.weight" for layer in spec.layers if isinstance(layer, (Conv2D, Dense))]


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


class KernelMasks:
    """Pruning masks for Keras kernels: one mask variable per masked kernel, in Keras layout.

    TF Model Optimization Toolkit does not support Keras 3, so the masks are applied here: the
    kernels are multiplied by their masks when a mask changes and after every optimizer step.
    """

    def __init__(self, model: keras.Model, spec: ModelSpec, names: list[str]):
        self.spec = spec
        self.pairs: dict[str, tuple[tf.Variable, tf.Variable]] = {}
        for name in names:
            kernel = model.get_layer(name.rsplit(".", 1)[0]).kernel
            mask = tf.Variable(tf.ones_like(kernel), trainable=False, name=f"{name}_mask")
            self.pairs[name] = (kernel, mask)

    def assign(self, masks: dict[str, np.ndarray]) -> None:
        unknown = sorted(set(masks) - set(self.pairs))
        if unknown:
            raise ValueError(f"tf backend: masks for {unknown}, but only {sorted(self.pairs)} can be masked")
        for name, mask in weights.kernels_to_keras(self.spec, masks).items():
            self.pairs[name][1].assign(mask.astype(np.float32))
        self.apply()

    def apply(self) -> None:
        for kernel, mask in self.pairs.values():
            kernel.assign(kernel * mask)


def train_model(
    model: keras.Model,
    spec: ModelSpec,
    recipe: TrainRecipe,
    data: TrainData,
    on_epoch: Callable[[EpochReport], None],
    masks_for_epoch: MasksForEpoch | None = None,
    options: TrainOptions | None = None,
) -> TrainResult:
    options = options or TrainOptions()
    if options.distill is not None and data.teacher_logits is None:
        raise ValueError("tf backend: distillation needs TrainData.teacher_logits")
    if options.adversarial is not None and options.input_range is None:
        raise ValueError("tf backend: adversarial training needs TrainOptions.input_range")
    optimizer = make_optimizer(recipe)
    kernel_masks = KernelMasks(model, spec, prunable_kernel_names(spec)) if masks_for_epoch else None
    penalty = l2_penalty(model, options.l2)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    images = tf.constant(_nhwc(data.images))
    if data.images_for_epoch is not None:
        # A variable, so that the traced train_step reads each epoch's augmented images.
        images = tf.Variable(images, trainable=False)
    labels = tf.constant(data.labels)
    teacher = None if data.teacher_logits is None else tf.constant(data.teacher_logits)
    result = TrainResult(samples_per_epoch=len(data.labels))

    def batch_loss(batch_images: tf.Tensor, batch_labels: tf.Tensor, index: tf.Tensor, adversarial) -> tf.Tensor:
        logits = model(batch_images, training=True)
        if adversarial is not None:
            ratio = options.adversarial.ratio
            adversarial_loss = loss_fn(batch_labels, model(adversarial, training=True))
            return (1.0 - ratio) * loss_fn(batch_labels, logits) + ratio * adversarial_loss
        if options.distill is not None:
            batch_teacher = tf.gather(teacher, index)
            return distillation_loss(
                logits, batch_teacher, batch_labels, options.distill.temperature, options.distill.alpha
            )
        return loss_fn(batch_labels, logits)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)], reduce_retracing=True)
    def train_step(index: tf.Tensor) -> tf.Tensor:
        batch_images = tf.gather(images, index)
        batch_labels = tf.gather(labels, index)
        adversarial = None
        if options.adversarial is not None:
            # Crafted before the training tape opens, so the tape records only the training forward passes.
            adversarial = attacks.perturb(
                model, batch_images, batch_labels, options.adversarial.attack, options.input_range
            )
        with tf.GradientTape() as tape:
            loss = batch_loss(batch_images, batch_labels, index, adversarial)
            objective = loss if penalty is None else loss + penalty()
        gradients = tape.gradient(objective, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        if kernel_masks is not None:
            kernel_masks.apply()
        return loss

    for epoch in range(recipe.epochs):
        set_learning_rate(optimizer, recipe.learning_rate_at(epoch))
        masks = masks_for_epoch(epoch) if masks_for_epoch else None
        if masks:
            kernel_masks.assign(masks)
        if data.images_for_epoch is not None:
            images.assign(_nhwc(data.images_for_epoch(epoch)))
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


def _nhwc(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1))
