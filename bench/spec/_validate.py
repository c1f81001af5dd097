"""Field checks shared by the spec dataclasses.

Each check raises ValueError naming the owner, the field, the bad value and what is allowed, so that a
user who mistypes a profile or a recipe can find the value to change.
"""

from __future__ import annotations

import difflib
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


def check_text(owner: str, field: str, value: Any) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{owner}.{field} must be a string, got {value!r}")


def check_tuple(owner: str, field: str, value: Any, items: str) -> None:
    """Check that `value` is a non-empty tuple. `items` names what it contains, for the message."""
    if not isinstance(value, tuple) or not value:
        raise ValueError(f"{owner}.{field} must be a non-empty tuple of {items}, got {value!r}")


def check_unique(owner: str, field: str, values: tuple) -> None:
    repeated = [value for index, value in enumerate(values) if value in values[:index]]
    if repeated:
        raise ValueError(
            f"{owner}.{field} must not repeat an entry, but {repeated[0]!r} appears more than once in {values!r}"
        )


def check_known_keys(place: str, keys: Iterable[Any], valid: Iterable[str]) -> None:
    """Raise ValueError listing the keys not in `valid`, the closest valid key for each, and all valid keys.

    `place` describes where the keys are, for example "at the top level" or "in table 'timing'".
    """
    valid = tuple(valid)
    unknown = [key for key in keys if key not in valid]
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), valid, n=1)
        if close:
            hints.append(repr(close[0]) if len(unknown) == 1 else f"{close[0]!r} for {key!r}")
    noun = "key" if len(unknown) == 1 else "keys"
    message = f"unknown {noun} {', '.join(repr(key) for key in unknown)} {place}"
    if hints:
        message += f" (did you mean {', '.join(hints)}?)"
    raise ValueError(f"{message}; valid keys: {', '.join(valid)}")


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
