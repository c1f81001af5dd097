"""The torch training loop: SGD with momentum on softmax cross-entropy, batches in the shared order."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from bench.backend import EpochReport, MasksForEpoch, TrainData, TrainResult
from bench.spec import TrainRecipe
from impl_torch import pruning


def make_optimizer(model: nn.Module, recipe: TrainRecipe) -> torch.optim.Optimizer:
    if recipe.optimizer != "sgd":
        raise NotImplementedError(f"torch backend: optimizer {recipe.optimizer!r} is not implemented (train)")
    return torch.optim.SGD(model.parameters(), lr=recipe.learning_rate, momentum=recipe.momentum)


def train_model(
    model: nn.Module,
    recipe: TrainRecipe,
    data: TrainData,
    on_epoch: Callable[[EpochReport], None],
    masks_for_epoch: MasksForEpoch | None = None,
) -> TrainResult:
    optimizer = make_optimizer(model, recipe)
    images = torch.from_numpy(data.images)
    labels = torch.from_numpy(data.labels)
    result = TrainResult(samples_per_epoch=len(data.labels))

    for epoch in range(recipe.epochs):
        for group in optimizer.param_groups:
            group["lr"] = recipe.learning_rate_at(epoch)
        masks = masks_for_epoch(epoch) if masks_for_epoch else None
        if masks:
            # custom_from_mask re-registers each weight Parameter as weight_orig (the same object), so
            # the optimizer keeps updating it, momentum buffers included.
            pruning.apply_masks(model, masks)
        model.train()
        loss_sum = torch.zeros((), dtype=torch.float64)
        start = time.perf_counter()

        for batch in data.batch_order(epoch):
            index = torch.from_numpy(batch)
            logits = model(images[index])
            loss = F.cross_entropy(logits, labels[index])
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
