"""Gradient-sign attacks (FGSM, PGD) in PyTorch, in canonical normalized input units."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from bench.backend import InputRange
from bench.spec.strategy import AttackParams


def perturb(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, attack: AttackParams, bounds: InputRange) -> torch.Tensor:
    """Return adversarial copies of `images` (bench.backend.Backend.attack semantics).

    The model is switched to eval mode for the gradients and restored afterwards; parameter gradients
    are neither computed nor changed.
    """
    epsilon = attack.epsilon * bounds.scale
    step = attack.resolved_step_size * bounds.scale
    was_training = model.training
    model.eval()
    requires_grad = [parameter.requires_grad for parameter in model.parameters()]
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    try:
        clean = images.detach()
        adversarial = clean.clone()
        for _ in range(attack.steps):
            adversarial.requires_grad_(True)
            loss = F.cross_entropy(model(adversarial), labels)
            (gradient,) = torch.autograd.grad(loss, adversarial)
            with torch.no_grad():
                adversarial = adversarial + step * gradient.sign()
                adversarial = torch.minimum(torch.maximum(adversarial, clean - epsilon), clean + epsilon)
                adversarial = adversarial.clamp(bounds.low, bounds.high)
        return adversarial.detach()
    finally:
        for parameter, flag in zip(model.parameters(), requires_grad):
            parameter.requires_grad_(flag)
        model.train(was_training)
