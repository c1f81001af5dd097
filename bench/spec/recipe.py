"""TrainRecipe: how a model is trained, with one meaning in both backends."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bench.spec._validate import check_choice, check_float, check_int

OPTIMIZERS = ("sgd",)
LR_SCHEDULES = ("constant",)
LOSSES = ("cross-entropy",)


@dataclass(frozen=True)
class TrainRecipe:
    """Optimizer, schedule, batch size, epochs and seed of one training run.

    SGD with momentum follows PyTorch's form (v = momentum * v + g; w -= lr * v). With a constant
    learning rate this equals Keras's form (v = momentum * v - lr * g; w += v) step for step, which
    is why the only schedule offered is "constant" until a backend implements the other form itself.
    The loss is the batch mean of softmax cross-entropy on logits. Every epoch visits all training
    samples in the order given by bench.data.epoch_order(seed, epoch); the last batch may be smaller.
    """

    optimizer: str = "sgd"
    learning_rate: float = 0.05
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
        """Learning rate for a 0-based epoch; both backends set it at the start of every epoch."""
        return self.learning_rate

    def to_dict(self) -> dict:
        return asdict(self)
