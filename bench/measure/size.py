"""Model size on disk: the ONNX file, its gzip-compressed size, and the dense float32 size."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

log = logging.getLogger(__name__)

GZIP_LEVEL = 9
FP32_BYTES = 4


def model_size(onnx_path: str | Path) -> dict[str, int]:
    """Return size_onnx_bytes (the file size) and size_gzip_bytes (gzip level 9 of the file bytes).

    The gzip header gets mtime 0 and no file name, so the same bytes give the same size on every run
    with the same zlib build. Zeroed weights compress well, so the gzip size shows what pruning saves even
    when the ONNX file still stores dense tensors.
    """
    data = Path(onnx_path).read_bytes()
    size_gzip_bytes = len(gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0))
    log.debug("%s: %d bytes, %d bytes gzipped", onnx_path, len(data), size_gzip_bytes)
    return {"size_onnx_bytes": len(data), "size_gzip_bytes": size_gzip_bytes}


def dense_fp32_bytes(num_parameters: int) -> int:
    """Return the bytes that `num_parameters` parameters take as dense float32 (4 bytes each)."""
    if num_parameters < 0:
        raise ValueError(f"num_parameters must be >= 0, got {num_parameters}")
    return FP32_BYTES * int(num_parameters)
