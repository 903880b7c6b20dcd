"""The output lock: one holder at a time, even when several runs take over a stale lock at once;
a link or a FIFO in the lock file's place is refused, never followed or read (issue 24).

4269499 took a stale lock over by checking the dead pid, then ``unlink`` and
``O_EXCL`` create: two runs that found the same stale lock could both unlink
and one remove the other's fresh lock, so both held it; a FIFO named
``.bowlrp.lock`` made every run hang on reading it. The lock is now an
``flock`` on the file (the kernel drops it when the holder dies), with a check
that the locked file is still the one at the path.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bowlrp._utils.lock import LOCK_NAME, FolderLock, LockedError

ROOT = Path(__file__).resolve().parents[1]

# Each contender waits for the start file, then for every folder in turn (each with a stale
# lock) takes the lock a few times, proving it is alone by creating a marker with O_EXCL (two
# holders at once: FileExistsError), holding briefly, removing it and releasing.
CONTENDER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from bowlrp._utils.lock import FolderLock, LockedError
    start, rounds, folders = Path(sys.argv[1]), int(sys.argv[2]), [Path(a) for a in sys.argv[3:]]
    print("ready", flush=True)
    while not start.exists():
        time.sleep(0.0005)
    held = 0
    for folder in folders:
        for _ in range(rounds):
            try:
                with FolderLock(folder, "contender"):
                    fd = os.open(folder / "inside", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                    time.sleep(0.002)
                    os.close(fd)
                    os.unlink(folder / "inside")
                    held += 1
            except LockedError:
                pass
    print(held)
    """
)


def _dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def _stale_lock(folder: Path, pid: int | None = None) -> None:
    pid = _dead_pid() if pid is None else pid
    (folder / LOCK_NAME).write_text(
        json.dumps({"pid": pid, "host": socket.gethostname(), "program": "killed"})
    )


def test_contenders_for_a_stale_lock_never_hold_it_together(tmp_path):
    """Six runs take over each of 40 stale locks at once (4269499: two holders, FileExistsError)."""
    start, folders, dead = tmp_path / "start", [tmp_path / f"out{k}" for k in range(40)], _dead_pid()
    for folder in folders:
        folder.mkdir()
        _stale_lock(folder, dead)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONTENDER, str(start), "2", *map(str, folders)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(6)
    ]
    for p in procs:  # every contender imported and waiting
        assert p.stdout.readline().strip() == "ready"
    start.touch()
    total = 0
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        total += int(out.split()[-1])
    assert total >= len(folders)  # every lock was taken at least once
    for folder in folders:
        assert not (folder / LOCK_NAME).exists() and not (folder / "inside").exists()


def test_a_lock_of_a_killed_run_is_free_at_once(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from bowlrp._utils.lock import FolderLock\n"
            "l = FolderLock(sys.argv[1], 'victim').acquire(); print('held', flush=True); time.sleep(600)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(LockedError, match=rf"in use by victim \(pid {holder.pid} on "):
        FolderLock(tmp_path, "second").acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with FolderLock(tmp_path, "third"):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["program"] == "third"
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.parametrize("kind", ["fifo", "symlink", "dangling symlink", "folder"])
def test_a_lock_file_that_is_not_a_file_is_refused_without_reading_it(tmp_path, kind):
    """Run in a subprocess with a timeout: 4269499 hung reading a FIFO lock."""
    folder, user_file = tmp_path / "out", tmp_path / "notes.txt"
    folder.mkdir()
    user_file.write_text("mine")
    lock = folder / LOCK_NAME
    if kind == "fifo":
        os.mkfifo(lock)
    elif kind == "symlink":
        lock.symlink_to(user_file)
    elif kind == "dangling symlink":
        lock.symlink_to(tmp_path / "nothing")
    else:
        lock.mkdir()
    code = (
        "import sys; from bowlrp._utils.lock import FolderLock, LockedError\n"
        "try:\n    FolderLock(sys.argv[1]).acquire()\nexcept LockedError as e:\n    print(e); sys.exit(3)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert str(lock) in r.stdout and "\n" not in r.stdout.strip()
    assert user_file.read_text() == "mine" and not (tmp_path / "nothing").exists()
