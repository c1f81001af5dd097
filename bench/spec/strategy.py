"""StrategySpec: a named pipeline of steps that each backend implements step by step.

A step's hyperparameters are a validated dataclass (PruneParams, ...), so an invalid value fails when
the strategy is built, with the field named, before any training starts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Union

from bench.spec._validate import check_float, check_int, check_name


def _check_layers(owner: str, layers: tuple[str, ...] | None) -> None:
    if layers is None:
        return
    if not isinstance(layers, tuple) or not layers or not all(isinstance(name, str) and name for name in layers):
        raise ValueError(f"{owner}.layers must be None (all eligible layers) or a non-empty tuple of layer names, got {layers!r}")


@dataclass(frozen=True)
class FinetuneParams:
    """Fine-tuning after a compression step: epochs and the starting learning rate (cosine decay)."""

    finetune_epochs: int = 4
    finetune_learning_rate: float = 0.005

    def _check_finetune(self, owner: str) -> None:
        check_int(owner, "finetune_epochs", self.finetune_epochs, 1, 10000)
        check_float(owner, "finetune_learning_rate", self.finetune_learning_rate, 0.0, 10.0, min_inclusive=False)


@dataclass(frozen=True)
class TrainParams:
    """Train from the canonical initial weights with the profile's recipe."""

    def validate_for(self, layer_names: set[str]) -> None:
        return None


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
        _check_layers("PruneParams", self.layers)


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
        _check_layers("StructuredPruneParams", self.layers)


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
        _check_layers("LowRankParams", self.layers)


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


StepParams = Union[TrainParams, PruneParams, StructuredPruneParams, LowRankParams, QuantizeParams, SearchParams]

# Steps a backend may be asked to run, with their parameter types. A backend that lacks one raises
# NotImplementedError naming itself and the step, and the cell is recorded as missing.
STEP_PARAMS: dict[str, type] = {
    "train": TrainParams,
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


def get_strategy(name: str) -> StrategySpec:
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; valid strategies: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[name]
