"""One writer at a time: an exclusive ``fcntl`` lock on ``STORE/.cxql.lock``.

Every read-modify-write of a store (adding a layer, attaching a classifier,
replacing the store) takes this lock and re-reads the manifest under it, so
two ``cxql units add`` at once both keep their layer instead of the later
manifest silently dropping the earlier one. The lock is advisory and held by
the open file, so the kernel releases it when the process dies: a killed
writer never leaves a store locked. Readers never lock; they rely on the
manifest being replaced atomically (see :mod:`cxql.store.manifest`).
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import StoreError

LOCK_FILE = ".cxql.lock"
DEFAULT_TIMEOUT = 600.0


@contextmanager
def store_lock(path: Path, timeout: float = DEFAULT_TIMEOUT) -> Iterator[None]:
    """Hold the store's write lock for the block; wait up to ``timeout`` seconds for another writer."""
    lock_path = Path(path) / LOCK_FILE
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        raise StoreError(f"{lock_path}: cannot lock the store for writing ({exc.strerror})") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise StoreError(f"{lock_path}: cannot lock the store ({exc.strerror})") from None
                if time.monotonic() > deadline:
                    raise StoreError(f"{path}: another process has been writing this store for "
                                     f"{timeout:.0f} s; try again later") from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
