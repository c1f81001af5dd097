"""IDX reading and writing, and the checks that reject corrupt files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.data import CorruptDatasetError, file_digest, load_dataset, read_idx, write_idx

IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def write_dataset_dir(
    directory: Path,
    train: int = 20,
    test: int = 10,
    train_labels: np.ndarray | None = None,
    compress: bool = True,
) -> Path:
    """Write four small IDX files in the MNIST layout and return the directory."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    labels = train_labels if train_labels is not None else rng.integers(0, 10, train, dtype=np.uint8)
    arrays = (
        rng.integers(0, 256, (train, 28, 28), dtype=np.uint8),
        labels,
        rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, test, dtype=np.uint8),
    )
    suffix = ".gz" if compress else ""
    for stem, array in zip(IDX_STEMS, arrays):
        write_idx(directory / f"{stem}{suffix}", array, gzip=compress)
    return directory


def idx_bytes(code: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
def test_round_trip(tmp_path: Path, compress: bool, dtype: str) -> None:
    offset = 0 if dtype == "uint8" else -7
    array = (np.arange(2 * 3 * 4) + offset).astype(dtype).reshape(2, 3, 4)
    path = write_idx(tmp_path / "array.idx", array, gzip=compress)

    loaded = read_idx(path)

    assert loaded.shape == (2, 3, 4)
    assert loaded.dtype == np.dtype(dtype)
    assert loaded.dtype.isnative
    np.testing.assert_array_equal(loaded, array)
    assert loaded.flags.writeable


def test_multibyte_data_is_big_endian(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "values.idx", np.array([1, 256], dtype=np.int32))
    content = path.read_bytes()
    assert content[:4] == bytes([0, 0, 0x0C, 1])
    assert content[8:] == b"\x00\x00\x00\x01\x00\x00\x01\x00"


def test_gzip_detected_by_content(tmp_path: Path) -> None:
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    raw = idx_bytes(0x08, (3, 4), array.tobytes())
    compressed_without_suffix = tmp_path / "compressed-idx1-ubyte"
    compressed_without_suffix.write_bytes(gzip.compress(raw))
    raw_with_suffix = tmp_path / "raw-idx1-ubyte.gz"
    raw_with_suffix.write_bytes(raw)

    np.testing.assert_array_equal(read_idx(compressed_without_suffix), array)
    np.testing.assert_array_equal(read_idx(raw_with_suffix), array)


def test_write_rejects_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot store dtype"):
        write_idx(tmp_path / "x.idx", np.zeros(3, dtype=np.uint16))


def test_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "bad-magic-idx1-ubyte"
    path.write_bytes(b"\x01\x00\x08\x01" + struct.pack(">I", 2) + b"\x00\x01")

    with pytest.raises(CorruptDatasetError, match="invalid magic number") as error:
        read_idx(path)
    assert "bad-magic-idx1-ubyte" in str(error.value)


def test_unknown_dtype_code(tmp_path: Path) -> None:
    path = tmp_path / "code-idx1-ubyte"
    path.write_bytes(idx_bytes(0x0A, (2,), b"\x00\x01"))

    with pytest.raises(CorruptDatasetError, match="unknown IDX data type code 0x0a") as error:
        read_idx(path)
    assert "code-idx1-ubyte" in str(error.value)


def test_truncated_payload(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(0x08, (60000, 28, 28), bytes(1000))))

    with pytest.raises(CorruptDatasetError) as error:
        read_idx(path)
    message = str(error.value)
    assert message.startswith("train-images-idx3-ubyte.gz: truncated")
    assert "47040000 bytes" in message
    assert "file has 1000" in message


def test_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "short-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">I", 5))

    with pytest.raises(CorruptDatasetError, match="truncated") as error:
        read_idx(path)
    assert "short-idx3-ubyte" in str(error.value)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty-idx1-ubyte"
    path.write_bytes(b"")

    with pytest.raises(CorruptDatasetError, match="empty-idx1-ubyte: truncated"):
        read_idx(path)


def test_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "trailing-idx1-ubyte"
    path.write_bytes(idx_bytes(0x08, (3,), b"\x01\x02\x03\x04\x05"))

    with pytest.raises(CorruptDatasetError, match="2 trailing bytes") as error:
        read_idx(path)
    assert "trailing-idx1-ubyte" in str(error.value)


def test_wrong_number_of_dimensions(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "flat-idx3-ubyte", np.zeros((4, 784), dtype=np.uint8))

    with pytest.raises(CorruptDatasetError, match="expected 3 dimension") as error:
        read_idx(path, ndim=3)
    assert "flat-idx3-ubyte" in str(error.value)


def test_zero_dimensions(tmp_path: Path) -> None:
    path = tmp_path / "scalar-idx0-ubyte"
    path.write_bytes(bytes([0, 0, 8, 0]) + b"\x07")

    with pytest.raises(CorruptDatasetError, match="number of dimensions is 0"):
        read_idx(path)


def test_truncated_gzip_stream(tmp_path: Path) -> None:
    compressed = gzip.compress(idx_bytes(0x08, (100,), bytes(range(100))))
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(compressed[: len(compressed) // 2])

    with pytest.raises(CorruptDatasetError, match="invalid gzip data") as error:
        read_idx(path)
    assert "labels-idx1-ubyte.gz" in str(error.value)


def test_file_digest(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"abc")

    digest = file_digest(path)

    assert digest == {
        "path": str(path),
        "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "bytes": 3,
    }


def test_dataset_count_mismatch(tmp_path: Path) -> None:
    labels = np.zeros(19, dtype=np.uint8)
    data_dir = write_dataset_dir(tmp_path / "data", train=20, train_labels=labels)

    with pytest.raises(CorruptDatasetError) as error:
        load_dataset("fashion-mnist", data_dir=data_dir)
    message = str(error.value)
    assert "train-images-idx3-ubyte.gz has 20 images" in message
    assert "train-labels-idx1-ubyte.gz has 19 labels" in message


def test_dataset_labels_out_of_range(tmp_path: Path) -> None:
    labels = np.full(20, 3, dtype=np.uint8)
    labels[5] = 10
    data_dir = write_dataset_dir(tmp_path / "data", train=20, train_labels=labels)

    with pytest.raises(CorruptDatasetError) as error:
        load_dataset("fashion-mnist", data_dir=data_dir)
    message = str(error.value)
    assert message.startswith("train-labels-idx1-ubyte.gz: labels must be in [0, 10)")
    assert "from 3 to 10" in message


def test_dataset_images_with_wrong_side(tmp_path: Path) -> None:
    data_dir = write_dataset_dir(tmp_path / "data")
    write_idx(data_dir / "t10k-images-idx3-ubyte.gz", np.zeros((10, 32, 32), dtype=np.uint8), gzip=True)

    with pytest.raises(CorruptDatasetError, match=r"t10k-images-idx3-ubyte.gz: expected uint8 images"):
        load_dataset("fashion-mnist", data_dir=data_dir)


def test_dataset_corrupt_file_is_not_skipped(tmp_path: Path) -> None:
    data_dir = write_dataset_dir(tmp_path / "data")
    path = data_dir / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-3])

    with pytest.raises(CorruptDatasetError, match="t10k-labels-idx1-ubyte.gz"):
        load_dataset("fashion-mnist", data_dir=data_dir)


VALID_ARRAY = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    compress=st.booleans(),
    edits=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=4),
    keep=st.one_of(st.none(), st.integers(min_value=0)),
)
def test_corruption_never_escapes(
    tmp_path: Path, compress: bool, edits: list[tuple[int, int]], keep: int | None
) -> None:
    path = write_idx(tmp_path / "sample-idx3-ubyte", VALID_ARRAY, gzip=compress)
    content = bytearray(path.read_bytes())
    for position, value in edits:
        content[position % len(content)] = value
    if keep is not None:
        content = content[: keep % (len(content) + 1)]
    path.write_bytes(bytes(content))

    try:
        array = read_idx(path)
    except CorruptDatasetError as error:
        assert "sample-idx3-ubyte" in str(error)
        return

    # An edit can leave a valid file, for example a changed pixel; the array must then be complete.
    data = gzip.decompress(bytes(content)) if bytes(content[:2]) == b"\x1f\x8b" else bytes(content)
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    assert array.shape == shape
