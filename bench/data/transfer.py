"""Class subsets and labelled budgets for the transfer task (bench.spec.peft.TransferTask)."""

from __future__ import annotations

import numpy as np


def class_subset(images: np.ndarray, labels: np.ndarray, classes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Keep the samples of `classes`, in their original order, relabelled 0..k-1 in the order of `classes`.

    Raises ValueError naming the classes that have no sample, so a typo in a class id is not silently
    an empty task.
    """
    labels = np.asarray(labels)
    present = set(np.unique(labels).tolist())
    absent = [value for value in classes if value not in present]
    if absent:
        raise ValueError(
            f"classes {absent} have no samples; the labels present are {sorted(present)}"
        )
    mapping = np.full(max(max(present), max(classes)) + 1, -1, dtype=np.int64)
    mapping[list(classes)] = np.arange(len(classes))
    keep = np.flatnonzero(mapping[labels] >= 0)
    return images[keep], mapping[labels[keep]]


def label_budget(labels: np.ndarray, examples_per_class: int, seed: int) -> np.ndarray:
    """Return the sorted indices of `examples_per_class` samples of each class, drawn from the seed.

    Labels must be 0..k-1. A class with fewer samples than the budget raises ValueError naming it.
    """
    if isinstance(examples_per_class, bool) or not isinstance(examples_per_class, (int, np.integer)) or examples_per_class < 1:
        raise ValueError(f"examples_per_class must be a positive integer, got {examples_per_class!r}")
    labels = np.asarray(labels)
    order = np.random.default_rng([seed, 5]).permutation(len(labels))
    chosen = []
    for value in range(int(labels.max()) + 1 if len(labels) else 0):
        members = order[labels[order] == value]
        if len(members) < examples_per_class:
            raise ValueError(
                f"class {value} has {len(members)} training samples, fewer than examples_per_class="
                f"{examples_per_class}; lower the budget"
            )
        chosen.append(members[:examples_per_class])
    if not chosen:
        raise ValueError("the label budget is empty: there are no training samples")
    return np.sort(np.concatenate(chosen))
