"""Exceptions raised by the data layer."""

from __future__ import annotations

from collections.abc import Sequence


class CorruptDatasetError(ValueError):
    """A dataset file exists but its content is invalid: bad header, wrong size, bad checksum or labels."""


class DatasetNotFoundError(FileNotFoundError):
    """No location contains the dataset. The message lists every location searched and how to get it."""

    def __init__(self, message: str, searched: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.searched = tuple(searched)

    def __str__(self) -> str:
        return str(self.args[0])
