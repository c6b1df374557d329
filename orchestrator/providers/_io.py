"""File wrappers that report progress as an SDK reads or writes through them."""

from __future__ import annotations

from typing import IO, Any

from orchestrator.providers.base import Progress

__all__ = ["ProgressReader", "ProgressWriter"]


class ProgressReader:
    """A binary file that calls ``progress(n)`` for every ``n`` bytes read (and un-counts seeks back)."""

    def __init__(self, fh: IO[bytes], progress: Progress | None) -> None:
        self._fh = fh
        self._progress = progress
        self._high = 0  # furthest offset reported, so a retry that re-reads does not double-count

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        end = self._fh.tell()
        if self._progress is not None and end > self._high:
            self._progress(end - self._high)
            self._high = end
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


class ProgressWriter:
    def __init__(self, fh: IO[bytes], progress: Progress | None) -> None:
        self._fh = fh
        self._progress = progress

    def write(self, data: bytes) -> int:
        n = self._fh.write(data)
        if self._progress is not None:
            self._progress(len(data))
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)
