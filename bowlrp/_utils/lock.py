"""A lock on an output folder, so that two runs never write into one folder at once.

The lock is the file ``.bowlrp.lock`` with an exclusive ``flock`` held on it for
the run; it also holds the owner's host name, pid and program for messages.
The kernel drops the ``flock`` when its process ends, however it ends, so a
lock left by a run killed with ``kill -9`` is simply taken (no pid guessing, no
race between two runs taking over one stale lock: only one ``flock``
succeeds, and a run whose lock file was replaced meanwhile tries again). A
live lock is refused with one line naming the folder and the pid. The lock file
is opened without following a link and must be a regular file: a link or a
FIFO in its place is refused, never followed or read.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
from pathlib import Path

from ..exceptions import BowlrpError

LOCK_NAME = ".bowlrp.lock"


class LockedError(BowlrpError, RuntimeError):
    """Another live process holds the lock of an output folder (``owner``: what its lock file says,
    ``None`` when the lock file itself is refused: a link or not a regular file)."""

    owner: dict | None = None


_FLAGS = os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_MAX_OWNER_BYTES = 4096


class FolderLock:
    """Exclusive lock on ``folder`` for the lifetime of a ``with`` block."""

    def __init__(self, folder: str | os.PathLike, program: str = "bowlrp"):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.program = program
        self._fd: int | None = None

    @property
    def _held(self) -> bool:
        return self._fd is not None

    def _open(self) -> int:
        try:
            fd = os.open(self.path, _FLAGS, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise LockedError(
                    f"{self.path} is a symbolic link; bowlrp's lock file is never followed: remove the link"
                ) from None
            if exc.errno == errno.EISDIR:
                raise LockedError(
                    f"{self.path} is a folder; remove it (bowlrp's lock file goes there)"
                ) from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise LockedError(f"{self.path} is not a regular file; remove it (bowlrp's lock file goes there)")
        return fd

    @staticmethod
    def _owner(fd: int) -> dict:
        try:
            data = json.loads(os.pread(fd, _MAX_OWNER_BYTES, 0))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def acquire(self) -> FolderLock:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "program": self.program}
        for _ in range(20):
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = self._owner(fd)
                os.close(fd)
                if not owner:  # being written right now: held all the same
                    error = LockedError(f"{self.folder} is locked by another run ({self.path}); wait for it")
                else:
                    error = LockedError(
                        f"{self.folder} is in use by {owner.get('program', 'another run')} "
                        f"(pid {owner.get('pid')} on {owner.get('host')}); "
                        "wait for it or choose another output folder"
                    )
                error.owner = owner
                raise error from None
            held, now = os.fstat(fd), _lstat(self.path)
            if now is None or (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
                os.close(fd)  # the file was released (removed) or replaced meanwhile: try again
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(me).encode("utf-8"), 0)
            self._fd = fd
            return self
        raise LockedError(f"could not lock {self.folder}: its lock file keeps changing; try again")

    def release(self) -> None:
        if self._fd is not None:
            try:
                held, now = os.fstat(self._fd), _lstat(self.path)
                if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                    self.path.unlink(missing_ok=True)  # still holding the flock: nobody has it yet
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
