"""Framework-neutral data layer: dataset discovery, checked loading, download and model inputs.

Nothing here imports PyTorch or TensorFlow at import time; only reading a prepared TensorFlow Datasets
directory imports tensorflow_datasets, inside that reader.
"""

from bench.data.datasets import (
    DATASETS,
    Dataset,
    DatasetInfo,
    list_datasets,
    load_dataset,
    locate_dataset,
    verify_dataset,
)
from bench.data.download import download_dataset
from bench.data.errors import CorruptDatasetError, DatasetNotFoundError
from bench.data.idx import file_digest, read_idx, write_idx
from bench.data.locations import DATA_DIR_ENV, default_download_dir
from bench.data.prepare import batch_indices, epoch_order, normalization, subset, to_model_input

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "CorruptDatasetError",
    "Dataset",
    "DatasetInfo",
    "DatasetNotFoundError",
    "batch_indices",
    "default_download_dir",
    "download_dataset",
    "epoch_order",
    "file_digest",
    "list_datasets",
    "load_dataset",
    "locate_dataset",
    "normalization",
    "read_idx",
    "subset",
    "to_model_input",
    "verify_dataset",
    "write_idx",
]
