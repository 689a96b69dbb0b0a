"""A read-only, seekable file over an object's byte ranges: parquet footers and row groups, or a tar
streamed front to back, without downloading (or holding) the whole object."""

from __future__ import annotations

import io

from cliplens.store.objects import ObjectInfo, ObjectStore

DEFAULT_BUFFER_SIZE = 8 * 1024 * 1024


class RangedFile(io.RawIOBase):
    """``info``'s object in ``store``, read by ranged requests (see :func:`open_ranged`)."""

    def __init__(self, store: ObjectStore, info: ObjectInfo) -> None:
        self.store, self.info = store, info
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.info.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        length = min(len(buffer), self.info.size - self.position)
        if length <= 0:
            return 0
        data = self.store.read_range(self.info.key, self.position, length)
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def open_ranged(
    store: ObjectStore, info: ObjectInfo, buffer_size: int = DEFAULT_BUFFER_SIZE
) -> io.BufferedReader:
    """A buffered reader over ``info``'s object: each refill is one ranged read of ``buffer_size``."""
    return io.BufferedReader(RangedFile(store, info), buffer_size)
