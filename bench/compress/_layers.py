"""Layer lookups shared by the compression transforms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bench.spec.model import Layer, ModelSpec

# Layer kinds that own a kernel ("<layer>.weight"): the only ones the transforms change.
KERNEL_KINDS = ("conv2d", "dense")


def kernel_layers(spec: ModelSpec) -> list[Layer]:
    return [layer for layer in spec.layers if layer.kind in KERNEL_KINDS]


def resolve_layers(
    spec: ModelSpec,
    requested: Sequence[str] | None,
    eligible: Sequence[str],
    owner: str,
    reasons: Mapping[str, str] | None = None,
) -> list[str]:
    """Return the eligible layer names that `requested` selects (all of them for None), in model order.

    Raises ValueError for a name the model lacks or a layer that is not eligible. The message gives the
    reason from `reasons` when it has one for that layer, and lists the eligible names.
    """
    if requested is None:
        return list(eligible)

    valid = ", ".join(eligible) or "none"
    if isinstance(requested, str) or not all(isinstance(name, str) for name in requested):
        raise ValueError(
            f"{owner}: layers must be None or a sequence of layer names, got {requested!r}; valid layers: {valid}"
        )

    by_name = {layer.name: layer for layer in spec.layers}
    for name in requested:
        if name not in by_name:
            raise ValueError(f"{owner}: model {spec.name!r} has no layer {name!r}; valid layers: {valid}")
        if name not in eligible:
            reason = (reasons or {}).get(name, f"{by_name[name].kind} layers have no kernel")
            raise ValueError(f"{owner}: layer {name!r} cannot be selected because {reason}; valid layers: {valid}")

    selected = set(requested)
    return [name for name in eligible if name in selected]
