"""Small, careful file operations shared by state, identity, audit and cleanup: atomic, private, locked."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path


class LockBusy(Exception):
    """Another process (or thread) holds the lock, past the time given to wait for it."""


def private_dir(path: Path) -> Path:
    """`path`, made if need be as every directory of the guardian's files is: private (0700)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with mode 0600, in a private (0700) directory made if need be."""
    private_dir(path.parent)
    write_atomic(path, text, 0o600)


def hold_lock(path: Path, wait: float | None) -> int:
    """A descriptor holding an exclusive flock on `path` (0600, in a private directory made if need be): close it
    to release. A descriptor of its own, so threads exclude each other too.

    `wait`: None waits as long as it takes; else the seconds to keep trying (0: once) before LockBusy. OSError
    when the file cannot be made or opened.
    """
    private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = None if wait is None else time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if deadline is None else fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockBusy(str(path)) from None
                time.sleep(0.05)
    except BaseException:
        os.close(fd)
        raise


def write_atomic(path: Path, text: str, mode: int) -> None:
    """Replace `path` (temp file, fsync, rename), so a crash or a reader sees the old or the new, never half.

    The temp file is hidden (`.NAME.PID.THREAD.tmp`): a collector reading `*.prom` never picks it up.
    It is this thread's own, so threads replacing one file at once never rename each other's.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_native_id()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as handle:
            os.fchmod(fd, mode)  # whatever the umask: a metrics file must stay readable by its collector
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def move_aside(path: Path) -> Path:
    """Rename a corrupt file out of the way (kept for the operator, never deleted)."""
    target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    os.replace(path, target)
    return target
