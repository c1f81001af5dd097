"""Field checks shared by the spec dataclasses.

Each check raises ValueError naming the owner, the field, the bad value and what is allowed, so that a
user who mistypes a profile or a recipe can find the value to change.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def check_int(owner: str, field: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    allowed = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{owner}.{field} must be an integer {allowed}, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{owner}.{field} must be an integer {allowed}, got {value!r}")


def check_float(
    owner: str,
    field: str,
    value: Any,
    minimum: float,
    maximum: float,
    *,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
) -> None:
    low = "[" if min_inclusive else "("
    high = "]" if max_inclusive else ")"
    allowed = f"a number in {low}{minimum}, {maximum}{high}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{owner}.{field} must be {allowed}, got {value!r}")
    too_low = value < minimum if min_inclusive else value <= minimum
    too_high = value > maximum if max_inclusive else value >= maximum
    if too_low or too_high or value != value:  # value != value catches NaN
        raise ValueError(f"{owner}.{field} must be {allowed}, got {value!r}")


def check_choice(owner: str, field: str, value: Any, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{owner}.{field} must be one of {', '.join(choices)}; got {value!r}")


def check_name(owner: str, field: str, value: Any) -> None:
    if not isinstance(value, str) or not value or not value.replace("-", "").replace("_", "").isalnum():
        raise ValueError(
            f"{owner}.{field} must be a non-empty name of letters, digits, '-' and '_', got {value!r}"
        )


def check_layer_names(owner: str, layers: Any) -> None:
    """Check an optional layer selection: None (every eligible layer) or a non-empty tuple of names."""
    if layers is None:
        return
    if not isinstance(layers, tuple) or not layers or not all(isinstance(name, str) and name for name in layers):
        raise ValueError(f"{owner}.layers must be None (all eligible layers) or a non-empty tuple of layer names, got {layers!r}")
