"""StrategySpec: a named pipeline of steps that each backend implements step by step."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.spec._validate import check_choice, check_name

# Steps a backend may be asked to run. A backend that lacks one raises NotImplementedError naming
# itself and the step, and the cell is recorded as missing.
STEPS = ("train",)


@dataclass(frozen=True)
class StepSpec:
    name: str
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("StepSpec", "name", self.name, STEPS)


@dataclass(frozen=True)
class StrategySpec:
    name: str
    description: str
    steps: tuple[StepSpec, ...]

    def __post_init__(self) -> None:
        check_name("StrategySpec", "name", self.name)
        if not self.steps:
            raise ValueError(f"StrategySpec {self.name!r}: steps must not be empty")

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "steps": [{"name": s.name, "params": dict(s.params)} for s in self.steps],
        }


STRATEGIES: dict[str, StrategySpec] = {
    "baseline": StrategySpec(
        name="baseline",
        description="the seed network trained with SGD and cross-entropy, no optimization",
        steps=(StepSpec("train"),),
    ),
}


def get_strategy(name: str) -> StrategySpec:
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; valid strategies: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[name]
