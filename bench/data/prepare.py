"""Turning loaded datasets into model inputs and batch orders that both frameworks share."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator

import numpy as np

from bench.data.datasets import Dataset

log = logging.getLogger(__name__)

PIXEL_LEVELS = 256


def normalization(train_images: np.ndarray) -> tuple[float, float]:
    """Compute the mean and standard deviation of pixel/255 over all train images.

    The statistics come from a histogram of the uint8 values, so no float copy of the images is made.
    """
    images = np.asarray(train_images)
    if images.dtype != np.uint8:
        raise ValueError(f"train_images must be uint8, got {images.dtype}")
    if images.size == 0:
        raise ValueError("train_images is empty")

    counts = np.bincount(images.ravel(), minlength=PIXEL_LEVELS).astype(np.float64)
    values = np.arange(PIXEL_LEVELS, dtype=np.float64) / 255.0
    total = counts.sum()
    mean = float((counts * values).sum() / total)
    variance = float((counts * (values - mean) ** 2).sum() / total)
    return mean, variance**0.5


def to_model_input(images: np.ndarray, mean: float, std: float, size: int = 32) -> np.ndarray:
    """Pad uint8 images (N, H, W) with zeros to (size, size), normalize them and add a channel axis.

    Padding happens before normalization on purpose: the padded pixels are raw 0, the background
    value of these datasets, so after normalization they equal a normalized background pixel. Each
    pixel becomes (pixel/255 - mean)/std computed in float64 and stored as float32; the result has
    shape (N, 1, size, size). The difference between `size` and each image side must be even and >= 0.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(
            f"images must be a uint8 array of shape (N, H, W), got {images.dtype} {images.shape}"
        )
    if not std > 0:
        raise ValueError(f"std must be positive, got {std}")
    pad_rows = _padding(images.shape[1], size)
    pad_columns = _padding(images.shape[2], size)

    # A 256-entry table maps each uint8 value to its normalized float32 value in one indexing step.
    table = ((np.arange(PIXEL_LEVELS, dtype=np.float64) / 255.0 - mean) / std).astype(np.float32)
    inputs = np.full((len(images), 1, size, size), table[0], dtype=np.float32)
    rows = slice(pad_rows, pad_rows + images.shape[1])
    columns = slice(pad_columns, pad_columns + images.shape[2])
    inputs[:, 0, rows, columns] = table[images]
    return inputs


def subset(dataset: Dataset, train_limit: int | None, test_limit: int | None, seed: int = 0) -> Dataset:
    """Return a deterministic subset with at most `train_limit` train and `test_limit` test samples.

    The kept samples are the first `limit` entries of a permutation drawn from
    np.random.default_rng(seed) (train first, then test), in their original order. None keeps all,
    and a limit at or above the size keeps all.
    """
    rng = np.random.default_rng(seed)
    train_keep = _kept_indices(rng, len(dataset.train_labels), train_limit, "train_limit")
    test_keep = _kept_indices(rng, len(dataset.test_labels), test_limit, "test_limit")

    provenance = {
        **dataset.provenance,
        "train_limit": train_limit,
        "test_limit": test_limit,
        "subset_seed": seed,
        "train_size": int(len(train_keep)),
        "test_size": int(len(test_keep)),
    }
    return dataclasses.replace(
        dataset,
        train_images=dataset.train_images[train_keep],
        train_labels=dataset.train_labels[train_keep],
        test_images=dataset.test_images[test_keep],
        test_labels=dataset.test_labels[test_keep],
        provenance=provenance,
    )


def epoch_order(num_samples: int, seed: int, epoch: int) -> np.ndarray:
    """Return the order of sample indices in one epoch, default_rng([seed, epoch]).permutation(num_samples).

    Both frameworks train in this order, so a seed gives the same batches in each.
    """
    for field, value in (("num_samples", num_samples), ("seed", seed), ("epoch", epoch)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{field} must be a non-negative integer, got {value!r}")
    return np.random.default_rng([seed, epoch]).permutation(num_samples)


def batch_indices(num_samples: int, batch_size: int, seed: int, epoch: int) -> Iterator[np.ndarray]:
    """Yield consecutive slices of epoch_order as batches; the last batch may be smaller."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    order = epoch_order(num_samples, seed, epoch)
    for start in range(0, num_samples, batch_size):
        yield order[start : start + batch_size]


def _padding(side: int, size: int) -> int:
    if size < side:
        raise ValueError(f"size {size} is smaller than the image side {side}")
    if (size - side) % 2:
        raise ValueError(f"size {size} minus image side {side} is odd, so the padding cannot be symmetric")
    return (size - side) // 2


def _kept_indices(rng: np.random.Generator, size: int, limit: int | None, field: str) -> np.ndarray:
    permutation = rng.permutation(size)
    if limit is None:
        return np.sort(permutation)
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ValueError(f"{field} must be a positive integer or None, got {limit!r}")
    return np.sort(permutation[:limit])
