"""The common spec: models, weights layout, training recipes, strategies and profiles."""

from bench.spec.model import MODELS, ModelSpec, get_model, lenet5
from bench.spec.profile import (
    DEFAULT_PROFILE,
    FRAMEWORKS,
    PROFILES,
    Profile,
    TimingSpec,
    get_profile,
    load_profile_file,
    name_fields_as_keys,
    resolve_profile,
)
from bench.spec.recipe import TrainRecipe
from bench.spec.strategy import STRATEGIES, StepSpec, StrategySpec, get_strategy
from bench.spec.weights import Weights, check_weights, initial_weights, load_weights, save_weights

__all__ = [
    "DEFAULT_PROFILE",
    "FRAMEWORKS",
    "MODELS",
    "PROFILES",
    "STRATEGIES",
    "ModelSpec",
    "Profile",
    "StepSpec",
    "StrategySpec",
    "TimingSpec",
    "TrainRecipe",
    "Weights",
    "check_weights",
    "get_model",
    "get_profile",
    "get_strategy",
    "initial_weights",
    "lenet5",
    "load_profile_file",
    "load_weights",
    "name_fields_as_keys",
    "resolve_profile",
    "save_weights",
]
