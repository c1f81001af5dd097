"""Dataset discovery, loading from each source, provenance and download."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import logging
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest

import bench.data.download as download_module
import bench.data.locations as locations_module
from bench.data import (
    DATASETS,
    CorruptDatasetError,
    DatasetNotFoundError,
    default_download_dir,
    download_dataset,
    list_datasets,
    load_dataset,
    locate_dataset,
    verify_dataset,
    write_idx,
)

IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


def write_dataset_dir(directory: Path, train: int = 20, test: int = 10, seed: int = 0) -> Path:
    """Write four small gzip IDX files in the MNIST layout and return the directory."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = (
        rng.integers(0, 256, (train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, train, dtype=np.uint8),
        rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, test, dtype=np.uint8),
    )
    for stem, array in zip(IDX_STEMS, arrays):
        write_idx(directory / f"{stem}.gz", array, gzip=True)
    return directory


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every machine-wide location at empty folders under tmp_path and return tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for variable in ("TWINBENCH_DATA_DIR", "XDG_CACHE_HOME", "KERAS_HOME", "TFDS_DATA_DIR"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(locations_module, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "debian" / "fashion-mnist")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


@pytest.fixture
def local_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Serve a fresh folder over HTTP on 127.0.0.1; yield the base URL and the folder."""
    served = tmp_path / "served"
    served.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", served
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def publish_digests(monkeypatch: pytest.MonkeyPatch, name: str, directory: Path) -> dict[str, str]:
    """Make the expected download digests of `name` those of the files in `directory`."""
    digests = {f"{stem}.gz": sha256_of(directory / f"{stem}.gz") for stem in IDX_STEMS}
    release = download_module.Release(base_url="file:///nonexistent/", sha256=digests)
    monkeypatch.setitem(download_module.RELEASES, name, release)
    return digests


def test_fashion_mnist_from_data_dir(isolated: Path) -> None:
    data_dir = write_dataset_dir(isolated / "data", train=20, test=10)

    dataset = load_dataset("fashion-mnist", data_dir=data_dir)

    assert dataset.name == "fashion-mnist"
    assert dataset.train_images.shape == (20, 28, 28)
    assert dataset.train_images.dtype == np.uint8
    assert dataset.train_labels.shape == (20,)
    assert dataset.train_labels.dtype == np.int64
    assert dataset.test_images.shape == (10, 28, 28)
    assert dataset.test_labels.dtype == np.int64
    assert dataset.num_classes == 10
    assert dataset.class_names[0] == "T-shirt/top"
    assert dataset.hflip_preserves_label is True
    assert dataset.provenance["train_size"] == 20
    assert dataset.provenance["test_size"] == 10
    assert "data_dir argument" in dataset.provenance["source"]


def test_hflip_flag_only_for_fashion_mnist() -> None:
    flags = {name: info.hflip_preserves_label for name, info in DATASETS.items()}
    assert flags == {"fashion-mnist": True, "mnist": False, "mnist-5k": False, "digits": False}


def test_data_dir_subfolder_and_raw_files(isolated: Path) -> None:
    root = isolated / "data"
    folder = write_dataset_dir(root / "mnist")
    for stem in IDX_STEMS:
        compressed = folder / f"{stem}.gz"
        raw = folder / stem
        raw.write_bytes(gzip.decompress(compressed.read_bytes()))
        compressed.unlink()

    dataset = load_dataset("mnist", data_dir=root)

    assert dataset.provenance["location"] == str(folder)
    assert [Path(entry["path"]).name for entry in dataset.provenance["files"]] == list(IDX_STEMS)


def test_torchvision_layout_in_data_dir(isolated: Path) -> None:
    raw = write_dataset_dir(isolated / "root" / "FashionMNIST" / "raw")

    assert locate_dataset("fashion-mnist", data_dir=isolated / "root") == str(raw)


def test_environment_variable(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = isolated / "shared"
    folder = write_dataset_dir(root / "fashion-mnist", train=12, test=6)
    monkeypatch.setenv("TWINBENCH_DATA_DIR", str(root))

    dataset = load_dataset("fashion-mnist")

    assert len(dataset.train_labels) == 12
    assert dataset.provenance["location"] == str(folder)
    assert "$TWINBENCH_DATA_DIR" in dataset.provenance["source"]


def test_data_dir_before_environment_variable(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_dataset_dir(isolated / "from-env", train=12)
    argument = write_dataset_dir(isolated / "from-argument", train=14)
    monkeypatch.setenv("TWINBENCH_DATA_DIR", str(isolated / "from-env"))

    dataset = load_dataset("fashion-mnist", data_dir=argument)

    assert len(dataset.train_labels) == 14


def test_unused_data_dir_logs_warning(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    write_dataset_dir(isolated / "from-env")
    monkeypatch.setenv("TWINBENCH_DATA_DIR", str(isolated / "from-env"))
    empty = isolated / "empty"
    empty.mkdir()

    with caplog.at_level(logging.WARNING, logger="bench.data.datasets"):
        load_dataset("fashion-mnist", data_dir=empty)

    assert f"no complete copy in data_dir {empty}" in caplog.text


def test_debian_location(isolated: Path) -> None:
    folder = write_dataset_dir(isolated / "debian" / "fashion-mnist")

    dataset = load_dataset("fashion-mnist")

    assert dataset.provenance["location"] == str(folder)
    assert "Debian package dataset-fashion-mnist" in dataset.provenance["source"]


def test_torchvision_root_in_working_directory(isolated: Path) -> None:
    raw = write_dataset_dir(isolated / "work" / "data" / "MNIST" / "raw")

    assert locate_dataset("mnist") == str(raw)


def test_keras_fashion_mnist_cache(isolated: Path) -> None:
    folder = write_dataset_dir(isolated / "home" / ".keras" / "datasets" / "fashion-mnist")

    dataset = load_dataset("fashion-mnist")

    assert dataset.provenance["location"] == str(folder)
    assert "Keras cache" in dataset.provenance["source"]


def test_missing_dataset_lists_locations(isolated: Path) -> None:
    data_dir = isolated / "nowhere"

    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("fashion-mnist", data_dir=data_dir)

    message = str(error.value)
    home = isolated / "home"
    expected_paths = [
        data_dir / "fashion-mnist",
        data_dir,
        isolated / "debian" / "fashion-mnist",
        isolated / "work" / "data" / "FashionMNIST" / "raw",
        home / "data" / "FashionMNIST" / "raw",
        home / ".keras" / "datasets" / "fashion-mnist",
        home / ".cache" / "twinbench" / "fashion-mnist",
        home / "tensorflow_datasets" / "fashion_mnist",
    ]
    lines = message.splitlines()
    for path in expected_paths:
        assert any(line.strip().startswith(f"{path} (") for line in lines), path
    assert "$TWINBENCH_DATA_DIR: not set" in message
    assert "apt-get install -y dataset-fashion-mnist" in message
    assert "python -m bench data --dataset fashion-mnist --download" in message
    assert len(error.value.searched) >= len(expected_paths)
    assert isinstance(error.value, FileNotFoundError)


def test_missing_mnist_suggests_sample(isolated: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("mnist")

    message = str(error.value)
    assert "python -m bench data --dataset mnist --download" in message
    assert "--dataset mnist-5k" in message
    assert str(isolated / "home" / ".keras" / "datasets" / "mnist.npz") in message


def test_incomplete_directory_reported(isolated: Path) -> None:
    folder = write_dataset_dir(isolated / "data")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()

    with pytest.raises(DatasetNotFoundError, match=r"incomplete, missing t10k-labels-idx1-ubyte\[\.gz\]"):
        load_dataset("fashion-mnist", data_dir=folder)


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="valid names: fashion-mnist, mnist, mnist-5k, digits"):
        load_dataset("cifar-10")


def test_keras_mnist_npz(isolated: Path) -> None:
    rng = np.random.default_rng(1)
    path = isolated / "home" / ".keras" / "datasets" / "mnist.npz"
    path.parent.mkdir(parents=True)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (15, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, 15, dtype=np.uint8),
        x_test=rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, 5, dtype=np.uint8),
    )

    dataset = load_dataset("mnist")

    assert dataset.train_images.shape == (15, 28, 28)
    assert dataset.test_labels.shape == (5,)
    assert dataset.provenance["files"][0]["sha256"] == sha256_of(path)
    assert "Keras cache" in dataset.provenance["source"]


def test_keras_mnist_npz_missing_array(isolated: Path) -> None:
    path = isolated / "home" / ".keras" / "datasets" / "mnist.npz"
    path.parent.mkdir(parents=True)
    np.savez(path, x_train=np.zeros((2, 28, 28), dtype=np.uint8), y_train=np.zeros(2, dtype=np.uint8))

    with pytest.raises(CorruptDatasetError, match="mnist.npz: missing arrays x_test, y_test"):
        load_dataset("mnist")


def test_keras_mnist_npz_wrong_dtype(isolated: Path) -> None:
    path = isolated / "home" / ".keras" / "datasets" / "mnist.npz"
    path.parent.mkdir(parents=True)
    np.savez(
        path,
        x_train=np.zeros((2, 28, 28), dtype=np.float32),
        y_train=np.zeros(2, dtype=np.uint8),
        x_test=np.zeros((1, 28, 28), dtype=np.uint8),
        y_test=np.zeros(1, dtype=np.uint8),
    )

    with pytest.raises(CorruptDatasetError, match="mnist.npz:x_train: expected uint8 images"):
        load_dataset("mnist")


def test_keras_mnist_npz_not_a_zip(isolated: Path) -> None:
    path = isolated / "home" / ".keras" / "datasets" / "mnist.npz"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"<html>not found</html>")

    with pytest.raises(CorruptDatasetError, match="mnist.npz: not a .npz archive"):
        load_dataset("mnist")


def test_mnist_5k_split() -> None:
    dataset = load_dataset("mnist-5k")

    assert dataset.train_images.shape == (4000, 28, 28)
    assert dataset.test_images.shape == (1000, 28, 28)
    assert dataset.train_images.dtype == np.uint8
    assert int(dataset.train_images.max()) == 255
    assert set(np.unique(dataset.train_labels)) == set(range(10))
    assert set(np.unique(dataset.test_labels)) == set(range(10))
    # The sample has 500 images per digit, so a stratified 4000/1000 split keeps 400 and 100 of each.
    assert np.bincount(dataset.train_labels).tolist() == [400] * 10
    assert np.bincount(dataset.test_labels).tolist() == [100] * 10
    assert dataset.provenance["split_seed"] == 0
    assert len(dataset.provenance["files"][0]["sha256"]) == 64


def test_mnist_5k_deterministic() -> None:
    first = load_dataset("mnist-5k")
    second = load_dataset("mnist-5k")

    np.testing.assert_array_equal(first.train_images, second.train_images)
    np.testing.assert_array_equal(first.train_labels, second.train_labels)
    np.testing.assert_array_equal(first.test_labels, second.test_labels)


def test_digits_layout() -> None:
    from sklearn.datasets import load_digits

    dataset = load_dataset("digits")

    assert dataset.train_images.shape == (1437, 28, 28)
    assert dataset.test_images.shape == (360, 28, 28)
    assert dataset.train_images.dtype == np.uint8
    for images in (dataset.train_images, dataset.test_images):
        assert not images[:, :2, :].any()
        assert not images[:, -2:, :].any()
        assert not images[:, :, :2].any()
        assert not images[:, :, -2:].any()
    assert int(dataset.train_images.max()) == 255
    assert "transform" in dataset.provenance
    assert dataset.provenance["split_seed"] == 0

    # Every 8x8 source image appears exactly once, scaled and upscaled, in train or test.
    source = np.rint(load_digits().images * 255 / 16).astype(np.uint8)
    all_images = np.concatenate([dataset.train_images, dataset.test_images])
    downsampled = all_images[:, 2:26:3, 2:26:3]
    assert sorted(map(bytes, downsampled)) == sorted(map(bytes, source))
    interior = all_images[:, 2:26, 2:26]
    np.testing.assert_array_equal(interior, downsampled.repeat(3, axis=1).repeat(3, axis=2))


def test_provenance_has_file_digests(isolated: Path) -> None:
    data_dir = write_dataset_dir(isolated / "data")

    provenance = verify_dataset("fashion-mnist", data_dir=data_dir)

    files = {Path(entry["path"]).name: entry for entry in provenance["files"]}
    assert sorted(files) == sorted(f"{stem}.gz" for stem in IDX_STEMS)
    for name, entry in files.items():
        assert entry["sha256"] == sha256_of(data_dir / name)
        assert entry["bytes"] == (data_dir / name).stat().st_size
    assert provenance["name"] == "fashion-mnist"
    assert provenance["release"] == "unknown"


def test_list_datasets(isolated: Path) -> None:
    rows = {row["name"]: row for row in list_datasets()}

    assert list(rows) == ["fashion-mnist", "mnist", "mnist-5k", "digits"]
    assert rows["fashion-mnist"]["available"] is False
    assert rows["fashion-mnist"]["location"] is None
    assert rows["digits"]["available"] is True
    assert rows["mnist-5k"]["location"].endswith("mnist_5k.csv.gz")
    assert all(row["description"] for row in rows.values())


def test_tfds_skipped_without_prepared_dir(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tfds_root = isolated / "tfds"
    (tfds_root / "fashion_mnist" / "incomplete.tmp").mkdir(parents=True)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_root))

    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("fashion-mnist")

    assert f"{tfds_root / 'fashion_mnist'} (TensorFlow Datasets): no prepared version" in str(error.value)


@pytest.mark.slow
@pytest.mark.tf
def test_tfds_prepared_dir(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tf = pytest.importorskip("tensorflow")
    tfds = pytest.importorskip("tensorflow_datasets")
    version_dir = isolated / "tfds" / "fashion_mnist" / "3.0.1"
    version_dir.mkdir(parents=True)
    features = tfds.features.FeaturesDict(
        {"image": tfds.features.Image(shape=(28, 28, 1)), "label": tfds.features.ClassLabel(num_classes=10)}
    )
    template = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
    rng = np.random.default_rng(2)
    split_infos = []
    for split, count in (("train", 8), ("test", 4)):
        record_path = version_dir / f"fashion_mnist-{split}.tfrecord-00000-of-00001"
        with tf.io.TFRecordWriter(str(record_path)) as writer:
            for _ in range(count):
                image = rng.integers(0, 256, (28, 28, 1), dtype=np.uint8)
                writer.write(features.serialize_example({"image": image, "label": int(rng.integers(10))}))
        file_template = tfds.core.ShardedFileTemplate(
            data_dir=version_dir, template=template, dataset_name="fashion_mnist", filetype_suffix="tfrecord"
        )
        split_infos.append(
            tfds.core.SplitInfo(
                name=split, shard_lengths=[count], num_bytes=0, filename_template=file_template
            )
        )
    tfds.folder_dataset.write_metadata(
        data_dir=version_dir, features=features, split_infos=split_infos, filename_template=template
    )
    monkeypatch.setenv("TFDS_DATA_DIR", str(isolated / "tfds"))

    dataset = load_dataset("fashion-mnist")

    assert dataset.train_images.shape == (8, 28, 28)
    assert dataset.test_images.shape == (4, 28, 28)
    assert dataset.train_images.dtype == np.uint8
    assert dataset.provenance["location"] == str(version_dir)
    assert dataset.provenance["tfds_version"] == "3.0.1"
    digested = sorted(Path(entry["path"]).name for entry in dataset.provenance["files"])
    assert digested == [
        "fashion_mnist-test.tfrecord-00000-of-00001",
        "fashion_mnist-train.tfrecord-00000-of-00001",
    ]


def test_download_from_file_url(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = write_dataset_dir(isolated / "mirror", train=16, test=8)
    publish_digests(monkeypatch, "fashion-mnist", mirror)
    target = isolated / "downloads"

    returned = download_dataset("fashion-mnist", target, base_url=mirror.as_uri())

    assert returned == target
    assert sorted(path.name for path in target.iterdir()) == sorted(f"{stem}.gz" for stem in IDX_STEMS)
    dataset = load_dataset("fashion-mnist", data_dir=target)
    assert len(dataset.train_labels) == 16
    assert dataset.provenance["release"] == "official"


def test_download_from_local_http_server(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, local_server: tuple[str, Path]
) -> None:
    base_url, served = local_server
    write_dataset_dir(served, train=16, test=8, seed=3)
    digests = publish_digests(monkeypatch, "mnist", served)

    target = download_dataset("mnist", isolated / "downloads", base_url=base_url)

    for name, digest in digests.items():
        assert sha256_of(target / name) == digest
    assert len(load_dataset("mnist", data_dir=target).test_labels) == 8


def test_download_checksum_mismatch_leaves_nothing(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, local_server: tuple[str, Path]
) -> None:
    base_url, served = local_server
    write_dataset_dir(served)
    digests = publish_digests(monkeypatch, "fashion-mnist", served)
    wrong = "0" * 64
    digests["train-images-idx3-ubyte.gz"] = wrong
    target = isolated / "downloads"

    with pytest.raises(CorruptDatasetError) as error:
        download_dataset("fashion-mnist", target, base_url=base_url)

    message = str(error.value)
    assert message.startswith("train-images-idx3-ubyte.gz: sha256 mismatch")
    assert f"expected {wrong}" in message
    assert f"got {sha256_of(served / 'train-images-idx3-ubyte.gz')}" in message
    assert list(target.iterdir()) == []


def test_download_missing_file_leaves_nothing(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = write_dataset_dir(isolated / "mirror")
    publish_digests(monkeypatch, "fashion-mnist", mirror)
    (mirror / "train-images-idx3-ubyte.gz").unlink()
    target = isolated / "downloads"

    with pytest.raises(OSError, match="downloading file:.*train-images-idx3-ubyte.gz failed"):
        download_dataset("fashion-mnist", target, base_url=mirror.as_uri())

    assert list(target.iterdir()) == []


def test_download_keeps_verified_files(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = write_dataset_dir(isolated / "mirror")
    publish_digests(monkeypatch, "fashion-mnist", mirror)
    target = download_dataset("fashion-mnist", isolated / "downloads", base_url=mirror.as_uri())
    empty_mirror = isolated / "empty-mirror"
    empty_mirror.mkdir()

    again = download_dataset("fashion-mnist", target, base_url=empty_mirror.as_uri())

    assert again == target


def test_download_default_target_is_searched(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = write_dataset_dir(isolated / "mirror")
    publish_digests(monkeypatch, "mnist", mirror)

    target = download_dataset("mnist", base_url=mirror.as_uri())

    assert target == default_download_dir("mnist")
    assert target == isolated / "home" / ".cache" / "twinbench" / "mnist"
    assert locate_dataset("mnist") == str(target)


def test_download_rejects_bad_requests(isolated: Path) -> None:
    with pytest.raises(ValueError, match="download is available for fashion-mnist, mnist"):
        download_dataset("digits", isolated / "x")
    with pytest.raises(ValueError, match="base_url must be an http, https or file URL"):
        download_dataset("mnist", isolated / "x", base_url="ftp://127.0.0.1/mnist/")
    with pytest.raises(ValueError, match="download source must be 'idx' or 'tfds'"):
        download_dataset("mnist", isolated / "x", source="torchvision")


def test_debian_fashion_mnist_loads() -> None:
    if not all((DEBIAN_DIR / f"{stem}.gz").is_file() for stem in IDX_STEMS):
        pytest.skip(f"Debian package dataset-fashion-mnist is not installed ({DEBIAN_DIR} missing)")

    dataset = load_dataset("fashion-mnist", data_dir=DEBIAN_DIR)

    assert dataset.train_images.shape == (60000, 28, 28)
    assert dataset.test_images.shape == (10000, 28, 28)
    assert np.bincount(dataset.train_labels).tolist() == [6000] * 10
    assert np.bincount(dataset.test_labels).tolist() == [1000] * 10
    assert dataset.provenance["release"] == "debian"
