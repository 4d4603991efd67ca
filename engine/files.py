"""Durable file writes: the one place that knows how to make a file change survive a crash.

Config lives in the database; audio (voicemail messages and greetings, recordings, sound clips) lives in files
beside it (ARCHITECTURE, Storage). Each file is written to a temp file in the same directory (``.*.tmp``:
recovery code may remove leftovers by that pattern), fsynced, renamed over its name, and then the directory
is fsynced, so a crash leaves the old file or the new one, never a mix or a half.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from pathlib import Path
from typing import Final

TMP_SUFFIX: Final = ".tmp"
"""The suffix of a temp file that a crash may leave behind (never a finished file)."""


def fsync_dir(directory: str | Path) -> None:
    """Make a rename or unlink in ``directory`` durable (POSIX: the directory entry needs its own fsync).

    Raises:
        OSError: the directory cannot be opened.
    """
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old content or the new, never a mix.

    Raises:
        OSError: the write failed (the temp file is removed; ``path`` is untouched).
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TMP_SUFFIX, dir=target.parent)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)


def move_durably(source: Path, dest: Path) -> None:
    """Move a finished file into place atomically (fsync, rename, fsync the directory). Across file systems
    it is copied to a temp file beside ``dest`` first, then renamed.

    Raises:
        OSError: the move failed; ``dest`` is untouched.
    """
    fd = os.open(source, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(source, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        write_atomic(dest, source.read_bytes())
        source.unlink()
        return
    fsync_dir(dest.parent)


class InUseError(OSError):
    """Another process holds the lock (``hold_lock``)."""


def hold_lock(path: Path, what: str) -> int:
    """Take the exclusive advisory lock (``flock``) on ``path`` for as long as the returned descriptor stays
    open, and write our pid into it; the kernel releases it when the process ends, however it ends (a
    ``kill -9`` leaves no stale lock behind, unlike a pid file).

    Raises:
        InUseError: another process holds it; the message names ``what`` and that process's pid.
        OSError: the file cannot be opened.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise InUseError(f"{what} is in use by another process (pid {holder})") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd
