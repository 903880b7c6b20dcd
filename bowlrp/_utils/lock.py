"""A lock on an output folder, so that two runs never write into one folder at once.

The lock is a file ``.bowlrp.lock`` holding the owner's host name and pid,
created with ``O_CREAT | O_EXCL``. A lock whose process no longer runs on this
host (a run killed with ``kill -9``) is taken over; a live one is refused with
one line naming the folder and the pid.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from ..exceptions import BowlrpError

LOCK_NAME = ".bowlrp.lock"


class LockedError(BowlrpError, RuntimeError):
    """Another live process holds the lock of an output folder."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FolderLock:
    """Exclusive lock on ``folder`` for the lifetime of a ``with`` block."""

    def __init__(self, folder: str | os.PathLike, program: str = "bowlrp"):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.program = program
        self._held = False

    def _owner(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def acquire(self) -> FolderLock:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "program": self.program}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                pid, host = owner.get("pid"), owner.get("host")
                if isinstance(pid, int) and host == me["host"] and not _alive(pid):
                    self.path.unlink(missing_ok=True)  # left by a killed run: take it over
                    continue
                if not owner:  # being written right now, or unreadable: treat as held
                    raise LockedError(
                        f"{self.folder} is locked by another run ({self.path}); "
                        "wait for it, or delete the lock file if no run is active"
                    ) from None
                raise LockedError(
                    f"{self.folder} is in use by {owner.get('program', 'another run')} "
                    f"(pid {pid} on {host}); wait for it or choose another output folder"
                ) from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self._held = True
            return self
        raise LockedError(f"could not lock {self.folder}")

    def release(self) -> None:
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
