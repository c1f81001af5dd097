"""Model inputs, normalization, subsets and the shared batch order."""

from __future__ import annotations

import numpy as np
import pytest

from bench.data import Dataset, batch_indices, epoch_order, normalization, subset, to_model_input


def make_dataset(train: int = 50, test: int = 20) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset(
        name="fake",
        train_images=rng.integers(0, 256, (train, 28, 28), dtype=np.uint8),
        train_labels=np.arange(train, dtype=np.int64) % 10,
        test_images=rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
        test_labels=np.arange(test, dtype=np.int64) % 10,
        num_classes=10,
        class_names=tuple(str(digit) for digit in range(10)),
        hflip_preserves_label=False,
        provenance={"name": "fake", "train_size": train, "test_size": test},
    )


def test_normalization_matches_numpy() -> None:
    images = np.random.default_rng(1).integers(0, 256, (7, 28, 28), dtype=np.uint8)

    mean, std = normalization(images)

    scaled = images.astype(np.float64) / 255.0
    assert isinstance(mean, float)
    assert isinstance(std, float)
    assert mean == pytest.approx(scaled.mean(), rel=1e-12)
    assert std == pytest.approx(scaled.std(), rel=1e-12)


def test_normalization_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="must be uint8"):
        normalization(np.zeros((2, 28, 28), dtype=np.float32))
    with pytest.raises(ValueError, match="empty"):
        normalization(np.zeros((0, 28, 28), dtype=np.uint8))


def test_model_input_shape_and_dtype() -> None:
    images = np.random.default_rng(2).integers(0, 256, (5, 28, 28), dtype=np.uint8)

    inputs = to_model_input(images, 0.3, 0.35)

    assert inputs.shape == (5, 1, 32, 32)
    assert inputs.dtype == np.float32


def test_model_input_padding_and_values() -> None:
    images = np.random.default_rng(3).integers(1, 256, (4, 28, 28), dtype=np.uint8)
    mean, std = 0.25, 0.5

    inputs = to_model_input(images, mean, std, size=32)

    background = np.float32((0.0 - mean) / std)
    border = np.ones((32, 32), dtype=bool)
    border[2:30, 2:30] = False
    assert np.all(inputs[:, 0][:, border] == background)
    expected = ((images / 255.0 - mean) / std).astype(np.float32)
    np.testing.assert_array_equal(inputs[:, 0, 2:30, 2:30], expected)


def test_model_input_without_padding() -> None:
    images = np.full((2, 28, 28), 255, dtype=np.uint8)

    inputs = to_model_input(images, 0.5, 0.5, size=28)

    assert inputs.shape == (2, 1, 28, 28)
    np.testing.assert_allclose(inputs, 1.0)


@pytest.mark.parametrize("size", [29, 31, 33])
def test_model_input_odd_difference_rejected(size: int) -> None:
    images = np.zeros((1, 28, 28), dtype=np.uint8)

    with pytest.raises(ValueError, match="is odd"):
        to_model_input(images, 0.0, 1.0, size=size)


def test_model_input_rejects_bad_arguments() -> None:
    images = np.zeros((1, 28, 28), dtype=np.uint8)

    with pytest.raises(ValueError, match="smaller than the image side"):
        to_model_input(images, 0.0, 1.0, size=26)
    with pytest.raises(ValueError, match="std must be positive"):
        to_model_input(images, 0.0, 0.0)
    with pytest.raises(ValueError, match="uint8 array of shape"):
        to_model_input(images.astype(np.float32), 0.0, 1.0)
    with pytest.raises(ValueError, match="uint8 array of shape"):
        to_model_input(images[0], 0.0, 1.0)


def test_epoch_order_is_permutation() -> None:
    order = epoch_order(100, seed=0, epoch=0)

    assert sorted(order.tolist()) == list(range(100))


def test_epoch_order_reproducible() -> None:
    np.testing.assert_array_equal(epoch_order(100, 7, 3), epoch_order(100, 7, 3))
    np.testing.assert_array_equal(epoch_order(100, 7, 3), np.random.default_rng([7, 3]).permutation(100))


def test_epoch_order_changes_with_epoch_and_seed() -> None:
    assert not np.array_equal(epoch_order(100, 0, 0), epoch_order(100, 0, 1))
    assert not np.array_equal(epoch_order(100, 0, 0), epoch_order(100, 1, 0))


def test_epoch_order_rejects_negative_values() -> None:
    with pytest.raises(ValueError, match="epoch must be a non-negative integer"):
        epoch_order(10, 0, -1)
    with pytest.raises(ValueError, match="num_samples must be a non-negative integer"):
        epoch_order(10.0, 0, 0)


def test_batch_indices_cover_all_once() -> None:
    batches = list(batch_indices(103, batch_size=10, seed=4, epoch=2))

    assert [len(batch) for batch in batches] == [10] * 10 + [3]
    joined = np.concatenate(batches)
    np.testing.assert_array_equal(joined, epoch_order(103, 4, 2))
    assert sorted(joined.tolist()) == list(range(103))


def test_batch_indices_exact_division() -> None:
    batches = list(batch_indices(40, batch_size=8, seed=0, epoch=0))

    assert [len(batch) for batch in batches] == [8] * 5


def test_batch_indices_rejects_zero_batch_size() -> None:
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        list(batch_indices(10, batch_size=0, seed=0, epoch=0))


def test_subset_deterministic() -> None:
    dataset = make_dataset()

    first = subset(dataset, 10, 5, seed=3)
    second = subset(dataset, 10, 5, seed=3)
    other = subset(dataset, 10, 5, seed=4)

    assert first.train_images.shape == (10, 28, 28)
    assert first.test_labels.shape == (5,)
    np.testing.assert_array_equal(first.train_images, second.train_images)
    np.testing.assert_array_equal(first.test_labels, second.test_labels)
    assert not np.array_equal(first.train_images, other.train_images)


def test_subset_keeps_matching_labels() -> None:
    dataset = make_dataset()

    small = subset(dataset, 10, 5, seed=0)

    original_labels = {bytes(image): label for image, label in zip(dataset.train_images, dataset.train_labels)}
    for image, label in zip(small.train_images, small.train_labels):
        assert original_labels[bytes(image)] == label


def test_subset_limits_above_size_keep_all() -> None:
    dataset = make_dataset()

    everything = subset(dataset, 1000, None)

    np.testing.assert_array_equal(everything.train_images, dataset.train_images)
    np.testing.assert_array_equal(everything.test_labels, dataset.test_labels)


def test_subset_provenance() -> None:
    dataset = make_dataset()

    small = subset(dataset, 10, None, seed=2)

    assert small.provenance["train_limit"] == 10
    assert small.provenance["test_limit"] is None
    assert small.provenance["train_size"] == 10
    assert small.provenance["test_size"] == 20
    assert dataset.provenance["train_size"] == 50


def test_subset_rejects_zero_limit() -> None:
    with pytest.raises(ValueError, match="train_limit must be a positive integer or None"):
        subset(make_dataset(), 0, None)
