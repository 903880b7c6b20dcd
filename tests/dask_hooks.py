"""Test-only helpers that Dask worker processes import (they must live in an importable module)."""

import os
from pathlib import Path


def count_and_die_once(folder, after: int) -> None:
    """Count a call in ``<folder>/calls``; the process making call number ``after`` (over all
    processes) creates ``<folder>/died`` exclusively and exits at once with ``os._exit``."""
    folder = Path(folder)
    with open(folder / "calls", "ab") as fh:
        fh.write(b".")
    if (folder / "calls").stat().st_size >= after:
        try:
            fd = os.open(folder / "died", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os._exit(1)


class DieOnce:
    """Wraps a Pipeline; the ``after``-th ``explain`` call over all processes kills its process once.

    Calls are counted in ``<folder>/calls`` (one byte appended per call); the
    process that makes call number ``after`` creates ``<folder>/died``
    (exclusively) and exits at once with ``os._exit``, like a worker killed
    by the OOM killer. Later calls, on the restarted worker too, go through.
    """

    def __init__(self, model, folder, after: int = 3):
        self.model, self.folder, self.after = model, str(folder), after

    def explain(self, images, **kwargs):
        count_and_die_once(self.folder, self.after)
        return self.model.explain(images, **kwargs)
