"""TrainRecipe: how a model is trained, with one meaning in both backends."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from bench.spec._validate import check_choice, check_float, check_int

OPTIMIZERS = ("sgd",)
LR_SCHEDULES = ("constant", "cosine")
LOSSES = ("cross-entropy",)


@dataclass(frozen=True)
class TrainRecipe:
    """Optimizer, schedule, batch size, epochs and seed of one training run.

    SGD with momentum follows PyTorch's form: v = momentum * v + g, then w -= lr * v. Keras keeps
    m = momentum * m - lr * g, then w += m, which is the same step while lr is constant because
    m = -lr * v. When the schedule changes lr between epochs, the tf backend rescales its momentum
    buffers by lr_new / lr_old so that the two forms stay equal step for step.

    The learning rate is set once per epoch: "constant" keeps `learning_rate`; "cosine" decays it
    from `learning_rate` towards 0 by half a cosine period over `epochs`. The loss is the batch mean
    of softmax cross-entropy on logits. Every epoch visits all training samples in the order given by
    bench.data.epoch_order(seed, epoch), and the last batch may be smaller.
    """

    optimizer: str = "sgd"
    learning_rate: float = 0.02
    momentum: float = 0.9
    batch_size: int = 64
    epochs: int = 5
    seed: int = 0
    lr_schedule: str = "constant"
    loss: str = "cross-entropy"

    def __post_init__(self) -> None:
        check_choice("TrainRecipe", "optimizer", self.optimizer, OPTIMIZERS)
        check_float("TrainRecipe", "learning_rate", self.learning_rate, 0.0, 10.0, min_inclusive=False)
        check_float("TrainRecipe", "momentum", self.momentum, 0.0, 1.0, max_inclusive=False)
        check_int("TrainRecipe", "batch_size", self.batch_size, 1, 65536)
        check_int("TrainRecipe", "epochs", self.epochs, 1, 10000)
        check_int("TrainRecipe", "seed", self.seed, 0, 2**31 - 1)
        check_choice("TrainRecipe", "lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("TrainRecipe", "loss", self.loss, LOSSES)

    def learning_rate_at(self, epoch: int) -> float:
        """Compute the learning rate of a 0-based epoch; both backends set it when the epoch starts."""
        if self.lr_schedule == "cosine":
            return self.learning_rate * 0.5 * (1.0 + math.cos(math.pi * epoch / self.epochs))
        return self.learning_rate

    def to_dict(self) -> dict:
        return asdict(self)
