"""Reading and writing IDX files, the format of the MNIST and Fashion-MNIST distributions.

An IDX file is a 4-byte magic number (two zero bytes, a data type code, the number of dimensions),
one big-endian uint32 per dimension, then the items in C order as big-endian values. Files may be
gzip-compressed; compression is detected from the gzip magic bytes, not from the file name.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from bench.data.errors import CorruptDatasetError

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"

# IDX data type codes and the numpy types they stand for (all multi-byte types are big-endian).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

MAX_DIMENSIONS = 255
_CHUNK_BYTES = 1 << 20


def file_digest(path: str | Path) -> dict:
    """Compute the sha256 and size of a file, reading it in chunks."""
    path = Path(path)
    sha256 = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            sha256.update(chunk)
            size += len(chunk)
    return {"path": str(path), "sha256": sha256.hexdigest(), "bytes": size}


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Read a raw or gzip-compressed IDX file into a native-endian array.

    `ndim`, when given, is the number of dimensions the caller expects. An invalid header, a payload
    shorter or longer than the header declares, or invalid gzip data raises CorruptDatasetError naming
    the file, so a partial array is never returned.
    """
    array, _ = read_idx_with_digest(path, ndim)
    return array


def read_idx_with_digest(path: str | Path, ndim: int | None = None) -> tuple[np.ndarray, dict]:
    """Read an IDX file like read_idx and also return file_digest's dict for the bytes read."""
    path = Path(path)
    content = path.read_bytes()
    digest = {"path": str(path), "sha256": hashlib.sha256(content).hexdigest(), "bytes": len(content)}

    data = _decompress_if_gzip(content, path.name)
    array = parse_idx(data, path.name, ndim)
    return array, digest


def parse_idx(data: bytes, name: str, ndim: int | None = None) -> np.ndarray:
    """Parse the bytes of an uncompressed IDX file; `name` labels the file in error messages."""
    dtype, shape, header_bytes = _parse_header(data, name)
    if ndim is not None and len(shape) != ndim:
        raise CorruptDatasetError(
            f"{name}: expected {ndim} dimension(s), the header declares {len(shape)} with shape {shape}"
        )

    expected_bytes = math.prod(shape) * dtype.itemsize
    actual_bytes = len(data) - header_bytes
    if actual_bytes < expected_bytes:
        raise CorruptDatasetError(
            f"{name}: truncated: header says {expected_bytes} bytes of data for shape {shape}, "
            f"file has {actual_bytes}"
        )
    if actual_bytes > expected_bytes:
        raise CorruptDatasetError(
            f"{name}: {actual_bytes - expected_bytes} trailing bytes after the {expected_bytes} bytes "
            f"of data that the header declares for shape {shape}"
        )

    array = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=header_bytes)
    return array.reshape(shape).astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | Path, array: np.ndarray, gzip: bool = False) -> Path:
    """Write `array` as an IDX file, gzip-compressed when `gzip` is true, and return the path."""
    path = Path(path)
    array = np.asarray(array)
    code = _dtype_code(array.dtype)
    if not 1 <= array.ndim <= MAX_DIMENSIONS:
        raise ValueError(f"an IDX file stores 1 to {MAX_DIMENSIONS} dimensions, the array has {array.ndim}")
    if any(size >= 2**32 for size in array.shape):
        raise ValueError(f"IDX dimension sizes must fit in uint32, got shape {array.shape}")

    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    content = header + payload
    if gzip:
        content = _gzip_compress(content)

    path.write_bytes(content)
    return path


def _parse_header(data: bytes, name: str) -> tuple[np.dtype, tuple[int, ...], int]:
    if len(data) < 4:
        raise CorruptDatasetError(
            f"{name}: truncated: {len(data)} bytes is shorter than the 4-byte magic number"
        )

    if data[0] != 0 or data[1] != 0:
        raise CorruptDatasetError(
            f"{name}: invalid magic number 0x{data[:4].hex()}: an IDX file starts with two zero bytes"
        )

    code = data[2]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{known_code:02x}" for known_code in IDX_DTYPES)
        raise CorruptDatasetError(f"{name}: unknown IDX data type code 0x{code:02x}, expected one of {known}")

    ndim = data[3]
    if ndim == 0:
        raise CorruptDatasetError(f"{name}: invalid header: the number of dimensions is 0")

    header_bytes = 4 + 4 * ndim
    if len(data) < header_bytes:
        raise CorruptDatasetError(
            f"{name}: truncated: the header declares {ndim} dimensions ({header_bytes} header bytes), "
            f"file has {len(data)} bytes"
        )

    shape = struct.unpack(f">{ndim}I", data[4:header_bytes])
    return IDX_DTYPES[code], shape, header_bytes


def _decompress_if_gzip(content: bytes, name: str) -> bytes:
    if not content.startswith(GZIP_MAGIC):
        return content

    try:
        return gzip.decompress(content)
    except (OSError, EOFError, zlib.error) as error:
        # gzip raises BadGzipFile (an OSError) for bad headers and checksums, EOFError for a cut stream.
        raise CorruptDatasetError(f"{name}: invalid gzip data: {error}") from error


def _gzip_compress(content: bytes) -> bytes:
    # mtime=0 makes the output depend on the content only, so test fixtures have stable digests.
    return gzip.compress(content, mtime=0)


def _dtype_code(dtype: np.dtype) -> int:
    for code, idx_dtype in IDX_DTYPES.items():
        if dtype.kind == idx_dtype.kind and dtype.itemsize == idx_dtype.itemsize:
            return code
    supported = ", ".join(str(idx_dtype.newbyteorder("=")) for idx_dtype in IDX_DTYPES.values())
    raise ValueError(f"IDX cannot store dtype {dtype}; supported: {supported}")
