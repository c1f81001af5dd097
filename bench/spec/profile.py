"""Profiles: named sizes of a benchmark run (sample counts, epochs, seeds, timing effort)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from bench.spec._validate import check_choice, check_float, check_int, check_name
from bench.spec.recipe import TrainRecipe
from bench.spec.strategy import AttackParams

FRAMEWORKS = ("torch", "tf")
ALL_STRATEGIES = (
    "baseline",
    "augment",
    "regularize",
    "adversarial",
    "distill",
    "prune-unstructured",
    "prune-structured",
    "lowrank",
    "quantize",
    "compress",
    "peft-full",
    "peft-linear-probe",
    "peft-bitfit",
    "peft-adapters",
    "peft-lora",
)


@dataclass(frozen=True)
class TimingSpec:
    """How latency and throughput are timed (see bench.measure.timing for the method).

    A "value" is the mean time of one call over `loops` back-to-back calls, where `loops` is
    calibrated so that a value lasts at least `min_value_s`. Warmup values are measured and discarded.
    Timing stops once both `min_values` values and `min_duration_s` seconds are reached, or at
    `max_duration_s`.
    """

    warmup_values: int = 10
    min_values: int = 700
    min_duration_s: float = 1.0
    max_duration_s: float = 30.0
    min_value_s: float = 0.001
    latency_batch_size: int = 1
    throughput_batch_size: int = 256
    throughput_min_values: int = 20
    throughput_min_duration_s: float = 2.0

    def __post_init__(self) -> None:
        check_int("TimingSpec", "warmup_values", self.warmup_values, 0)
        check_int("TimingSpec", "min_values", self.min_values, 1)
        check_float("TimingSpec", "min_duration_s", self.min_duration_s, 0.0, 3600.0)
        check_float("TimingSpec", "max_duration_s", self.max_duration_s, 0.0, 36000.0, min_inclusive=False)
        check_float("TimingSpec", "min_value_s", self.min_value_s, 0.0, 10.0, min_inclusive=False)
        check_int("TimingSpec", "latency_batch_size", self.latency_batch_size, 1)
        check_int("TimingSpec", "throughput_batch_size", self.throughput_batch_size, 1)
        check_int("TimingSpec", "throughput_min_values", self.throughput_min_values, 1)
        check_float("TimingSpec", "throughput_min_duration_s", self.throughput_min_duration_s, 0.0, 3600.0)
        if self.max_duration_s < self.min_duration_s:
            raise ValueError(
                f"TimingSpec.max_duration_s ({self.max_duration_s}) must be >= "
                f"min_duration_s ({self.min_duration_s})"
            )


@dataclass(frozen=True)
class Profile:
    """What `bench all` runs: the matrix (frameworks x strategies x seeds) on one dataset and model."""

    name: str
    description: str
    dataset: str
    model: str = "lenet5"
    frameworks: tuple[str, ...] = FRAMEWORKS
    strategies: tuple[str, ...] = ALL_STRATEGIES
    seeds: tuple[int, ...] = (0,)
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 0.02
    lr_schedule: str = "cosine"
    momentum: float = 0.9
    train_limit: int | None = None
    test_limit: int | None = None
    threads: int | None = None
    cell_timeout_s: float = 3600.0
    timing: TimingSpec = field(default_factory=TimingSpec)
    # Robust accuracy of every model: this attack on the first `robust_samples` test images (None: all).
    # Epsilon 0.03 rather than the adversarial strategy's training epsilon of 0.1. At 0.1, 10-step PGD
    # left every model that was not trained adversarially at 0-9% accuracy on Fashion-MNIST (quick
    # profile, measured), too low to show how pruning or quantization changes robustness.
    robustness: AttackParams = field(default_factory=lambda: AttackParams(method="pgd", epsilon=0.03, steps=10))
    robust_samples: int | None = None
    # Time to accuracy: training seconds until the test accuracy of the `train` step first reaches this.
    # In the published quick run, baseline, L2 + dropout and distillation reached 0.89 on Fashion-MNIST
    # in 4-7 of 10 epochs; augmentation and adversarial training did not. None turns the check off.
    target_accuracy: float | None = 0.89

    def __post_init__(self) -> None:
        check_name("Profile", "name", self.name)
        if not self.frameworks:
            raise ValueError("Profile.frameworks must name at least one framework")
        for framework in self.frameworks:
            check_choice("Profile", "frameworks", framework, FRAMEWORKS)
        if not self.strategies:
            raise ValueError("Profile.strategies must name at least one strategy")
        from bench.spec.strategy import get_strategy

        for strategy in self.strategies:
            get_strategy(strategy)
        if not self.seeds:
            raise ValueError("Profile.seeds must contain at least one seed")
        for seed in self.seeds:
            check_int("Profile", "seeds", seed, 0, 2**31 - 1)
        if self.train_limit is not None:
            check_int("Profile", "train_limit", self.train_limit, 1)
        if self.test_limit is not None:
            check_int("Profile", "test_limit", self.test_limit, 1)
        if self.threads is not None:
            check_int("Profile", "threads", self.threads, 1, 1024)
        if not isinstance(self.robustness, AttackParams):
            raise ValueError(f"Profile.robustness must be AttackParams, got {type(self.robustness).__name__}")
        if self.robust_samples is not None:
            check_int("Profile", "robust_samples", self.robust_samples, 1)
        if self.target_accuracy is not None:
            check_float("Profile", "target_accuracy", self.target_accuracy, 0.0, 1.0, min_inclusive=False)
        check_float("Profile", "cell_timeout_s", self.cell_timeout_s, 1.0, 7 * 24 * 3600.0)
        # Building one recipe validates epochs, batch size, learning rate and momentum.
        self.recipe(self.seeds[0])

    def recipe(self, seed: int) -> TrainRecipe:
        return TrainRecipe(
            learning_rate=self.learning_rate,
            lr_schedule=self.lr_schedule,
            momentum=self.momentum,
            batch_size=self.batch_size,
            epochs=self.epochs,
            seed=seed,
        )

    def with_overrides(self, **changes) -> "Profile":
        """Return a copy with the non-None `changes` applied and validated."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Profile":
        """Rebuild a profile from `to_dict` output (as stored in a run's run.json), validating it again."""
        values = dict(data)
        try:
            values["timing"] = TimingSpec(**values.get("timing", {}))
            values["robustness"] = AttackParams(**values.get("robustness", {}))
        except TypeError as error:
            raise ValueError(f"invalid profile {data.get('name')!r}: {error}") from None
        for name in ("frameworks", "strategies", "seeds"):
            if name in values:
                values[name] = tuple(values[name])
        try:
            return cls(**values)
        except TypeError as error:
            raise ValueError(f"invalid profile {data.get('name')!r}: {error}") from None


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="seconds per cell, for tests: scikit-learn's 8x8 digits, 3 epochs, short timing",
        dataset="digits",
        epochs=3,
        batch_size=32,
        target_accuracy=0.9,
        timing=TimingSpec(
            warmup_values=2,
            min_values=20,
            min_duration_s=0.05,
            max_duration_s=5.0,
            throughput_batch_size=64,
            throughput_min_values=5,
            throughput_min_duration_s=0.05,
        ),
    ),
    "quick": Profile(
        name="quick",
        description="Fashion-MNIST, 10 epochs, one seed, every strategy",
        dataset="fashion-mnist",
        epochs=10,
    ),
    "full": Profile(
        name="full",
        description="published tables: Fashion-MNIST, 20 epochs, three seeds, longer timing",
        dataset="fashion-mnist",
        epochs=20,
        seeds=(0, 1, 2),
        timing=TimingSpec(min_values=1000, min_duration_s=3.0, throughput_min_duration_s=5.0),
    ),
}

DEFAULT_PROFILE = "quick"


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    return PROFILES[name]
