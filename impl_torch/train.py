"""The torch training loop: SGD with momentum on softmax cross-entropy, batches in the shared order."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from bench.backend import EpochReport, MasksForEpoch, TrainData, TrainOptions, TrainResult
from bench.spec import TrainRecipe
from impl_torch import adversarial as attacks
from impl_torch import pruning


def make_optimizer(model: nn.Module, recipe: TrainRecipe, l2: float = 0.0) -> torch.optim.Optimizer:
    """SGD with momentum; with `l2`, weight_decay=l2 on conv and dense kernels and none on biases."""
    if recipe.optimizer != "sgd":
        raise NotImplementedError(f"torch backend: optimizer {recipe.optimizer!r} is not implemented (train)")
    kernels = [module.weight for module in model.modules() if isinstance(module, (nn.Conv2d, nn.Linear))]
    kernel_ids = {id(kernel) for kernel in kernels}
    others = [parameter for parameter in model.parameters() if id(parameter) not in kernel_ids]
    groups = [{"params": kernels, "weight_decay": l2}, {"params": others, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=recipe.learning_rate, momentum=recipe.momentum)


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float, alpha: float
) -> torch.Tensor:
    """alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE, batch means."""
    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.log_softmax(teacher_logits / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * temperature**2 * soft + (1.0 - alpha) * F.cross_entropy(student_logits, labels)


def train_model(
    model: nn.Module,
    recipe: TrainRecipe,
    data: TrainData,
    on_epoch: Callable[[EpochReport], None],
    masks_for_epoch: MasksForEpoch | None = None,
    options: TrainOptions | None = None,
) -> TrainResult:
    options = options or TrainOptions()
    optimizer = make_optimizer(model, recipe, options.l2)
    images = torch.from_numpy(data.images)
    labels = torch.from_numpy(data.labels)
    teacher = None if data.teacher_logits is None else torch.from_numpy(data.teacher_logits)
    if options.distill is not None and teacher is None:
        raise ValueError("torch backend: distillation needs TrainData.teacher_logits")
    if options.adversarial is not None and options.input_range is None:
        raise ValueError("torch backend: adversarial training needs TrainOptions.input_range")
    result = TrainResult(samples_per_epoch=len(data.labels))

    for epoch in range(recipe.epochs):
        for group in optimizer.param_groups:
            group["lr"] = recipe.learning_rate_at(epoch)
        masks = masks_for_epoch(epoch) if masks_for_epoch else None
        if masks:
            # custom_from_mask re-registers each weight Parameter as weight_orig (the same object), so
            # the optimizer keeps updating it, momentum buffers included.
            pruning.apply_masks(model, masks)
        if data.images_for_epoch is not None:
            images = torch.from_numpy(data.images_for_epoch(epoch))
        model.train()
        loss_sum = torch.zeros((), dtype=torch.float64)
        start = time.perf_counter()

        for batch in data.batch_order(epoch):
            index = torch.from_numpy(batch)
            loss = _batch_loss(model, images[index], labels[index], None if teacher is None else teacher[index], options)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach().double() * len(batch)

        seconds = time.perf_counter() - start
        mean_loss = float(loss_sum) / len(data.labels)
        result.epoch_seconds.append(seconds)
        result.epoch_losses.append(mean_loss)
        on_epoch(EpochReport(epoch, recipe.epochs, mean_loss, seconds, len(data.labels)))

    pruning.make_permanent(model)
    model.eval()
    return result


def _batch_loss(
    model: nn.Module, batch: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor | None, options: TrainOptions
) -> torch.Tensor:
    if options.adversarial is not None:
        params = options.adversarial
        adversarial = attacks.perturb(model, batch, labels, params.attack, options.input_range)
        clean_loss = F.cross_entropy(model(batch), labels)
        adversarial_loss = F.cross_entropy(model(adversarial), labels)
        return (1.0 - params.ratio) * clean_loss + params.ratio * adversarial_loss
    logits = model(batch)
    if options.distill is not None:
        return distillation_loss(logits, teacher, labels, options.distill.temperature, options.distill.alpha)
    return F.cross_entropy(logits, labels)
