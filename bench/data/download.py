"""Download of the MNIST and Fashion-MNIST IDX files, run only when the user asks for it.

Each file is written to a temporary file in the target directory and its sha256 is checked against
the table below. Only a file that matches is renamed to its final name, so a failed or corrupted
download leaves no file behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from bench.data.errors import CorruptDatasetError
from bench.data.idx import file_digest
from bench.data.locations import IDX_STEMS, TFDS_NAMES, default_download_dir, tfds_root

log = logging.getLogger(__name__)

_CHUNK_BYTES = 1 << 20
_ALLOWED_SCHEMES = ("http", "https", "file")


@dataclass(frozen=True)
class Release:
    """Official download location of a dataset's four gzip IDX files and their sha256 digests."""

    base_url: str
    sha256: dict[str, str]


# The URLs and digests are those in tensorflow_datasets 4.9.10, url_checksums/fashion_mnist.txt and
# url_checksums/mnist.txt. The Fashion-MNIST digests were also checked against the Debian package
# dataset-fashion-mnist: its files are the official gzip streams with the stored file name removed
# and the gzip timestamp changed, and restoring both reproduces these digests exactly.
# NOTE: the MNIST digests have not been checked against a copy of the files.
RELEASES: dict[str, Release] = {
    "fashion-mnist": Release(
        base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        sha256={
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
    ),
    "mnist": Release(
        base_url="https://storage.googleapis.com/cvdf-datasets/mnist/",
        sha256={
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    ),
}

# sha256 of the files installed by the Debian package dataset-fashion-mnist (package files dated 2020-06-05).
DEBIAN_FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}


def download_dataset(
    name: str,
    target_dir: str | Path | None = None,
    base_url: str | None = None,
    source: str = "idx",
    timeout_s: float = 60.0,
) -> Path:
    """Download dataset `name` and return the directory that now contains it.

    source="idx" fetches the four gzip IDX files from `base_url` (default: the official location) into
    `target_dir` (default: default_download_dir(name)); files already present with the expected sha256
    are kept. source="tfds" runs TensorFlow Datasets' download_and_prepare into `target_dir` (default:
    $TFDS_DATA_DIR or ~/tensorflow_datasets). A checksum mismatch raises CorruptDatasetError.
    """
    if name not in RELEASES:
        raise ValueError(f"download is available for {', '.join(RELEASES)}, not {name!r}")
    if source == "tfds":
        return _download_tfds(name, target_dir)
    if source != "idx":
        raise ValueError(f"download source must be 'idx' or 'tfds', got {source!r}")

    release = RELEASES[name]
    base_url = base_url or release.base_url
    _check_scheme(base_url)
    target = Path(target_dir).expanduser() if target_dir is not None else default_download_dir(name)
    target.mkdir(parents=True, exist_ok=True)

    for file_name in (f"{stem}.gz" for stem in IDX_STEMS):
        url = urllib.parse.urljoin(base_url if base_url.endswith("/") else base_url + "/", file_name)
        _fetch_verified(url, target / file_name, release.sha256[file_name], timeout_s)

    log.info("%s: downloaded to %s", name, target)
    return target


def identify_release(name: str, files: list[dict]) -> str:
    """Return which published release has the files' sha256 digests: "official", "debian" or "unknown"."""
    digests = {Path(digest["path"]).name: digest["sha256"] for digest in files}
    release = RELEASES.get(name)
    if release is not None and digests == release.sha256:
        return "official"
    if name == "fashion-mnist" and digests == DEBIAN_FASHION_MNIST_SHA256:
        return "debian"
    return "unknown"


def _fetch_verified(url: str, destination: Path, expected_sha256: str, timeout_s: float) -> None:
    if destination.is_file():
        if file_digest(destination)["sha256"] == expected_sha256:
            log.info("%s: already present with the expected sha256, skipping the download", destination)
            return
        log.warning("%s: sha256 differs from the published one, downloading it again", destination)

    log.info("downloading %s", url)
    handle, temporary_name = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.name}.", suffix=".part"
    )
    temporary = Path(temporary_name)
    try:
        with os.fdopen(handle, "wb") as output:
            actual_sha256 = _copy_url(url, output, timeout_s)
        if actual_sha256 != expected_sha256:
            raise CorruptDatasetError(
                f"{destination.name}: sha256 mismatch for {url}: "
                f"expected {expected_sha256}, got {actual_sha256}"
            )
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _copy_url(url: str, output: BinaryIO, timeout_s: float) -> str:
    sha256 = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            while chunk := response.read(_CHUNK_BYTES):
                sha256.update(chunk)
                output.write(chunk)
    except urllib.error.URLError as error:
        raise OSError(
            f"downloading {url} failed: {error.reason}. Check the URL or pass base_url of a mirror"
        ) from error
    return sha256.hexdigest()


def _check_scheme(base_url: str) -> None:
    scheme = urllib.parse.urlsplit(base_url).scheme
    if scheme not in _ALLOWED_SCHEMES:
        raise ValueError(f"base_url must be an http, https or file URL, got {base_url!r}")


def _download_tfds(name: str, target_dir: str | Path | None) -> Path:
    # NOTE: not run by the tests, which have no network access.
    import tensorflow_datasets as tfds

    data_dir = Path(target_dir).expanduser() if target_dir is not None else tfds_root()
    builder = tfds.builder(TFDS_NAMES[name], data_dir=str(data_dir))
    builder.download_and_prepare()
    log.info("%s: prepared by TensorFlow Datasets in %s", name, builder.data_dir)
    return Path(builder.data_dir)
