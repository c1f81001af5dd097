"""StrategySpec: a named pipeline of steps that each backend implements step by step.

A step's hyperparameters are a validated dataclass (PruneParams, ...), so an invalid value fails when
the strategy is built, with the field named, before any training starts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Union

from bench.spec._validate import check_choice, check_float, check_int, check_layer_names, check_name
from bench.spec.peft import PEFT_METHODS, PeftParams, TransferTask


@dataclass(frozen=True)
class FinetuneParams:
    """Fine-tuning after a compression step: epochs and the starting learning rate (cosine decay)."""

    finetune_epochs: int = 4
    finetune_learning_rate: float = 0.005

    def _check_finetune(self, owner: str) -> None:
        check_int(owner, "finetune_epochs", self.finetune_epochs, 1, 10000)
        check_float(owner, "finetune_learning_rate", self.finetune_learning_rate, 0.0, 10.0, min_inclusive=False)


@dataclass(frozen=True)
class AugmentParams:
    """Random geometric augmentation of every training image, drawn anew each epoch.

    Each image is shifted by a random crop of its zero-padded copy (`crop_padding` pixels on each
    side, so an integer shift in [-crop_padding, crop_padding] per axis), rotated about its centre by
    an angle uniform in [-rotation_degrees, rotation_degrees], translated by a fraction of its side
    uniform in [-translation, translation] per axis, and flipped left-right with probability 0.5 when
    `horizontal_flip` is set and the dataset declares flips label-preserving (never for digits). Pixels
    that come from outside the image are background (0). Labels are never changed.
    """

    crop_padding: int = 2
    rotation_degrees: float = 10.0
    translation: float = 0.05
    horizontal_flip: bool = True

    def __post_init__(self) -> None:
        check_int("AugmentParams", "crop_padding", self.crop_padding, 0, 16)
        check_float("AugmentParams", "rotation_degrees", self.rotation_degrees, 0.0, 180.0)
        check_float("AugmentParams", "translation", self.translation, 0.0, 0.5)
        if not isinstance(self.horizontal_flip, bool):
            raise ValueError(f"AugmentParams.horizontal_flip must be true or false, got {self.horizontal_flip!r}")


@dataclass(frozen=True)
class RegularizeParams:
    """L2 penalty on kernels and dropout on the hidden dense layers.

    `l2` is lambda in the gradient lambda * w that the penalty adds to every conv and dense kernel;
    biases are exempt. That is PyTorch SGD's weight_decay=l2 on the kernels and a Keras
    L2 regularizer of l2 / 2 (penalty l2/2 * sum(w^2)). `dropout` is the rate of the Dropout layers
    inserted after the hidden dense layers for training; they are removed from the exported network.
    """

    l2: float = 5e-4
    dropout: float = 0.25

    def __post_init__(self) -> None:
        check_float("RegularizeParams", "l2", self.l2, 0.0, 1.0)
        check_float("RegularizeParams", "dropout", self.dropout, 0.0, 1.0, max_inclusive=False)


ATTACK_METHODS = ("fgsm", "pgd")


@dataclass(frozen=True)
class AttackParams:
    """An L-infinity gradient-sign attack; epsilon and step size are in [0, 1] pixel units.

    PGD takes `steps` steps of size `step_size` (default 2.5 * epsilon / steps) along the sign of the
    input gradient of the cross-entropy. After each step it projects back into the epsilon-ball around
    the clean image and into the valid pixel range. It starts from the clean image (no random start),
    so the attack is deterministic and the same in both frameworks. FGSM is one step of size epsilon.
    Gradients are taken with the model in inference mode (dropout off).
    """

    method: str = "pgd"
    epsilon: float = 0.1
    steps: int = 10
    step_size: float | None = None

    def __post_init__(self) -> None:
        check_choice("AttackParams", "method", self.method, ATTACK_METHODS)
        check_float("AttackParams", "epsilon", self.epsilon, 0.0, 1.0)
        check_int("AttackParams", "steps", self.steps, 1, 1000)
        if self.step_size is not None:
            check_float("AttackParams", "step_size", self.step_size, 0.0, 1.0, min_inclusive=False)
        if self.method == "fgsm" and (self.steps != 1 or self.step_size not in (None, self.epsilon)):
            raise ValueError(
                f"AttackParams: FGSM is one step of size epsilon; got steps={self.steps}, "
                f"step_size={self.step_size} (use method 'pgd' for several steps)"
            )

    @property
    def resolved_step_size(self) -> float:
        if self.method == "fgsm":
            return self.epsilon
        return self.step_size if self.step_size is not None else 2.5 * self.epsilon / self.steps


@dataclass(frozen=True)
class AdversarialParams:
    """Adversarial training: every batch also trains on its adversarial copy.

    The loss of a step is (1 - ratio) * CE(clean batch) + ratio * CE(adversarial batch), the mixed
    objective of Goodfellow et al. (2015). The adversarial batch is crafted from the clean batch
    against the current weights with `attack`.
    """

    attack: AttackParams = field(default_factory=lambda: AttackParams(method="fgsm", epsilon=0.1, steps=1))
    ratio: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.attack, dict):
            object.__setattr__(self, "attack", _nested("AdversarialParams.attack", AttackParams, self.attack))
        if not isinstance(self.attack, AttackParams):
            raise ValueError(f"AdversarialParams.attack must be AttackParams, got {type(self.attack).__name__}")
        check_float("AdversarialParams", "ratio", self.ratio, 0.0, 1.0)


@dataclass(frozen=True)
class DistillParams:
    """Hinton knowledge distillation from a wider teacher trained first on the same data.

    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student).
    The teacher is trained with the profile's recipe (`teacher_epochs` overrides its epochs) once per
    framework and seed. Its logits on the training images are computed once, in inference mode.
    The soft term's gradient is alpha * T times the softened probability gap, so a high T and alpha
    raise the effective learning rate: T = 4 with alpha = 0.9 diverged at learning rate 0.02 on the
    smoke profile, and the defaults T = 2, alpha = 0.5 train stably in both frameworks.
    """

    teacher: str = "lenet5-wide"
    temperature: float = 2.0
    alpha: float = 0.5
    teacher_epochs: int | None = None

    def __post_init__(self) -> None:
        from bench.spec.model import MODELS

        check_choice("DistillParams", "teacher", self.teacher, sorted(MODELS))
        check_float("DistillParams", "temperature", self.temperature, 0.0, 100.0, min_inclusive=False)
        check_float("DistillParams", "alpha", self.alpha, 0.0, 1.0)
        if self.teacher_epochs is not None:
            check_int("DistillParams", "teacher_epochs", self.teacher_epochs, 1, 10000)


def _nested(owner: str, kind: type, value: Any):
    """Build a nested parameter dataclass from a dict, naming the owner on unknown keys."""
    if value is None or isinstance(value, kind):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"{owner} must be a {kind.__name__} or a dict of its fields, got {value!r}")
    try:
        return kind(**value)
    except TypeError as error:
        raise ValueError(f"{owner}: invalid fields {sorted(value)}: {error}") from None


@dataclass(frozen=True)
class TrainParams:
    """Train from the canonical initial weights with the profile's recipe, optionally changed.

    `augment` transforms the images, `regularize` adds L2 and dropout, `adversarial` adds adversarial
    batches and `distill` replaces the loss by the distillation loss. Distillation combines with
    neither augmentation nor adversarial training: its teacher logits are computed once on the clean
    training images.
    """

    augment: AugmentParams | None = None
    regularize: RegularizeParams | None = None
    adversarial: AdversarialParams | None = None
    distill: DistillParams | None = None

    def __post_init__(self) -> None:
        for name, kind in (
            ("augment", AugmentParams),
            ("regularize", RegularizeParams),
            ("adversarial", AdversarialParams),
            ("distill", DistillParams),
        ):
            object.__setattr__(self, name, _nested(f"TrainParams.{name}", kind, getattr(self, name)))
        if self.distill is not None and (self.augment is not None or self.adversarial is not None):
            raise ValueError(
                "TrainParams.distill cannot be combined with augment or adversarial: the teacher's logits "
                "are computed once on the clean training images"
            )

    @property
    def is_plain(self) -> bool:
        return self.augment is None and self.regularize is None and self.adversarial is None and self.distill is None


@dataclass(frozen=True)
class PruneParams(FinetuneParams):
    """Global magnitude pruning of conv and dense kernels (biases kept) during fine-tuning.

    Sparsity rises from `initial_sparsity` to `sparsity` by a polynomial schedule of degree `power`:
    at the start of fine-tuning epoch e it is s_f + (s_i - s_f) * (1 - min(1, (e + 1) / n))^power,
    where n = ceil(finetune_epochs * end_fraction), so the final sparsity holds for the last epochs.
    """

    sparsity: float = 0.9
    initial_sparsity: float = 0.0
    power: int = 3
    end_fraction: float = 0.5
    layers: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        self._check_finetune("PruneParams")
        check_float("PruneParams", "sparsity", self.sparsity, 0.0, 1.0, max_inclusive=False)
        check_float("PruneParams", "initial_sparsity", self.initial_sparsity, 0.0, 1.0, max_inclusive=False)
        if self.initial_sparsity > self.sparsity:
            raise ValueError(
                f"PruneParams.initial_sparsity ({self.initial_sparsity}) must be <= sparsity ({self.sparsity})"
            )
        check_int("PruneParams", "power", self.power, 1, 10)
        check_float("PruneParams", "end_fraction", self.end_fraction, 0.0, 1.0, min_inclusive=False)
        check_layer_names("PruneParams", self.layers)


@dataclass(frozen=True)
class StructuredPruneParams(FinetuneParams):
    """L1-norm filter (conv) and neuron (dense) pruning at `ratio`, channels physically removed.

    The last layer (the logits) is never pruned. `layers` = None prunes every other conv and dense layer.
    """

    ratio: float = 0.5
    layers: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        self._check_finetune("StructuredPruneParams")
        check_float("StructuredPruneParams", "ratio", self.ratio, 0.0, 1.0, max_inclusive=False)
        check_layer_names("StructuredPruneParams", self.layers)


@dataclass(frozen=True)
class LowRankParams(FinetuneParams):
    """Truncated SVD of dense layers and rank-r factorization of conv layers, then fine-tuning.

    Exactly one of `energy` (keep the smallest rank whose singular values retain this fraction of the
    squared singular-value sum) and `rank` (a fixed rank) is set. A layer is factorized only where the
    two factors have fewer parameters than the original.
    """

    energy: float | None = 0.9
    rank: int | None = None
    layers: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        self._check_finetune("LowRankParams")
        if (self.energy is None) == (self.rank is None):
            raise ValueError(
                f"LowRankParams: set exactly one of energy and rank, got energy={self.energy!r}, rank={self.rank!r}"
            )
        if self.energy is not None:
            check_float("LowRankParams", "energy", self.energy, 0.0, 1.0, min_inclusive=False)
        if self.rank is not None:
            check_int("LowRankParams", "rank", self.rank, 1)
        check_layer_names("LowRankParams", self.layers)


@dataclass(frozen=True)
class QuantizeParams:
    """int8 post-training static quantization, calibrated on training images."""

    calibration_samples: int = 512
    per_channel: bool = True
    native: bool = True

    def __post_init__(self) -> None:
        check_int("QuantizeParams", "calibration_samples", self.calibration_samples, 1, 1_000_000)


@dataclass(frozen=True)
class SearchCandidate:
    """One compression pipeline tried by the search: structured pruning, then low-rank, then sparsity.

    A value of 0 (or None for energy) skips that stage.
    """

    structured_ratio: float = 0.0
    lowrank_energy: float | None = None
    sparsity: float = 0.0

    def __post_init__(self) -> None:
        check_float("SearchCandidate", "structured_ratio", self.structured_ratio, 0.0, 1.0, max_inclusive=False)
        if self.lowrank_energy is not None:
            check_float("SearchCandidate", "lowrank_energy", self.lowrank_energy, 0.0, 1.0, min_inclusive=False)
        check_float("SearchCandidate", "sparsity", self.sparsity, 0.0, 1.0, max_inclusive=False)


DEFAULT_CANDIDATES = (
    SearchCandidate(structured_ratio=0.5, sparsity=0.8),
    SearchCandidate(structured_ratio=0.3, sparsity=0.8),
    SearchCandidate(structured_ratio=0.3, lowrank_energy=0.95, sparsity=0.8),
    SearchCandidate(structured_ratio=0.3, sparsity=0.9),
    SearchCandidate(structured_ratio=0.0, sparsity=0.9),
)


@dataclass(frozen=True)
class SearchParams(FinetuneParams):
    """Try each candidate pipeline from the trained network and keep the smallest that stays accurate.

    Accuracy is measured on a validation split held out from the training images (the strategy's
    validation_fraction), never on the test split. A candidate qualifies when its validation accuracy
    is at most `max_accuracy_drop` (0.01 = 1 point) below the trained network's; the smallest
    qualifying gzip-compressed ONNX export wins. If none qualifies, the most accurate one is kept and
    the step records that none qualified.
    """

    candidates: tuple[SearchCandidate, ...] = DEFAULT_CANDIDATES
    max_accuracy_drop: float = 0.01

    def __post_init__(self) -> None:
        self._check_finetune("SearchParams")
        if not self.candidates or not all(isinstance(c, SearchCandidate) for c in self.candidates):
            raise ValueError(f"SearchParams.candidates must be a non-empty tuple of SearchCandidate, got {self.candidates!r}")
        check_float("SearchParams", "max_accuracy_drop", self.max_accuracy_drop, 0.0, 1.0)


StepParams = Union[TrainParams, TransferTask, PeftParams, PruneParams, StructuredPruneParams, LowRankParams, QuantizeParams, SearchParams]

# Steps a backend may be asked to run, with their parameter types. A backend that lacks one raises
# NotImplementedError naming itself and the step, and the cell is recorded as missing.
STEP_PARAMS: dict[str, type] = {
    "train": TrainParams,
    "pretrain": TransferTask,
    "finetune": PeftParams,
    "prune": PruneParams,
    "prune-structured": StructuredPruneParams,
    "lowrank": LowRankParams,
    "quantize": QuantizeParams,
    "search": SearchParams,
}
STEPS = tuple(STEP_PARAMS)


@dataclass(frozen=True)
class StepSpec:
    name: str
    params: Any = None

    def __post_init__(self) -> None:
        if self.name not in STEP_PARAMS:
            raise ValueError(f"StepSpec.name must be one of {', '.join(STEPS)}; got {self.name!r}")
        expected = STEP_PARAMS[self.name]
        if self.params is None:
            object.__setattr__(self, "params", expected())
        elif isinstance(self.params, dict):
            try:
                object.__setattr__(self, "params", expected(**self.params))
            except TypeError as error:
                raise ValueError(f"StepSpec {self.name!r}: invalid parameters {self.params!r}: {error}") from None
        elif not isinstance(self.params, expected):
            raise ValueError(
                f"StepSpec {self.name!r}: params must be {expected.__name__}, got {type(self.params).__name__}"
            )

    def to_dict(self) -> dict:
        return {"name": self.name, "params": asdict(self.params)}


@dataclass(frozen=True)
class StrategySpec:
    name: str
    description: str
    steps: tuple[StepSpec, ...]
    # Fraction of the training images held out as a validation split for searches (0 = none).
    validation_fraction: float = 0.0

    def __post_init__(self) -> None:
        check_name("StrategySpec", "name", self.name)
        if not self.steps:
            raise ValueError(f"StrategySpec {self.name!r}: steps must not be empty")
        check_float("StrategySpec", "validation_fraction", self.validation_fraction, 0.0, 0.5)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "steps": [step.to_dict() for step in self.steps],
            "validation_fraction": self.validation_fraction,
        }


STRATEGIES: dict[str, StrategySpec] = {
    "baseline": StrategySpec(
        name="baseline",
        description="the seed network trained with SGD and cross-entropy, no optimization",
        steps=(StepSpec("train"),),
    ),
    "augment": StrategySpec(
        name="augment",
        description="random crop with 2-pixel padding, rotation up to 10 degrees, translation up to 5%, "
        "horizontal flip where it keeps the label; one numpy augmentation shared by both frameworks",
        steps=(StepSpec("train", TrainParams(augment=AugmentParams())),),
    ),
    "regularize": StrategySpec(
        name="regularize",
        description="L2 penalty 5e-4 on kernels (biases exempt) and dropout 0.25 after the hidden dense layers",
        steps=(StepSpec("train", TrainParams(regularize=RegularizeParams())),),
    ),
    "adversarial": StrategySpec(
        name="adversarial",
        description="FGSM adversarial training at epsilon 0.1 (pixel units), clean and adversarial batches "
        "weighted 1:1",
        steps=(StepSpec("train", TrainParams(adversarial=AdversarialParams())),),
    ),
    "distill": StrategySpec(
        name="distill",
        description="Hinton distillation from LeNet-5 at twice the width (T = 2, alpha = 0.5)",
        steps=(StepSpec("train", TrainParams(distill=DistillParams())),),
    ),
    "prune-unstructured": StrategySpec(
        name="prune-unstructured",
        description="global magnitude pruning to 90% sparsity by a polynomial schedule during fine-tuning",
        steps=(StepSpec("train"), StepSpec("prune", PruneParams())),
    ),
    "prune-structured": StrategySpec(
        name="prune-structured",
        description="L1-norm filter and neuron pruning of half the channels, removed physically, then fine-tuning",
        steps=(StepSpec("train"), StepSpec("prune-structured", StructuredPruneParams())),
    ),
    "lowrank": StrategySpec(
        name="lowrank",
        description="truncated SVD of dense and conv layers keeping 90% of the singular-value energy, then fine-tuning",
        steps=(StepSpec("train"), StepSpec("lowrank", LowRankParams())),
    ),
    "quantize": StrategySpec(
        name="quantize",
        description="int8 post-training static quantization: ONNX Runtime QDQ for both, and each framework's native path",
        steps=(StepSpec("train"), StepSpec("quantize", QuantizeParams())),
    ),
    "compress": StrategySpec(
        name="compress",
        description="search structured pruning, low-rank and sparsity for the smallest model within 1 point, then int8",
        steps=(StepSpec("train"), StepSpec("search", SearchParams()), StepSpec("quantize", QuantizeParams())),
        validation_fraction=0.1,
    ),
}

_PEFT_DESCRIPTIONS = {
    "full": "every parameter",
    "linear-probe": "only the new head",
    "bitfit": "the biases and the new head (BitFit)",
    "adapters": "zero-initialized bottleneck adapters (16 units after the hidden dense layers, 4 channels of "
    "1x1 conv after the conv blocks) and the new head",
    "lora": "rank-4 LoRA updates of the conv and hidden dense kernels (alpha 8, merged before export) and the "
    "new head",
}
for _method in PEFT_METHODS:
    STRATEGIES[f"peft-{_method}"] = StrategySpec(
        name=f"peft-{_method}",
        description=f"pretrain on classes 0-4, fine-tune on 100 labelled images per class of 5-9, training "
        f"{_PEFT_DESCRIPTIONS[_method]}",
        steps=(StepSpec("pretrain", TransferTask()), StepSpec("finetune", PeftParams(method=_method))),
    )
PEFT_STRATEGIES = tuple(f"peft-{method}" for method in PEFT_METHODS)


def get_strategy(name: str) -> StrategySpec:
    if not isinstance(name, str) or name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; valid strategies: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[name]
