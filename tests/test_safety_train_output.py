"""bowlrp-train's output file (issue 24, findings 3 and 5).

An existing ``--out`` is replaced only with ``--overwrite``; a directory, a link
or a missing folder is refused; all before any data is read. A run holds a lock
on its output, so a second run with the same ``--out`` is refused at once.
SIGTERM stops a parallel run with all its worker processes and writes nothing.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bowlrp.cli import train as train_cli
from bowlrp.datasets.voc_like import make_voc_like
from bowlrp.model_files import load
from bowlrp.training import OutputError, locked_output, save_model

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT / "bowlrp" / "configs" / "voc_small.yaml"


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    return make_voc_like(tmp_path_factory.mktemp("voclike") / "VOC", 12, 1, seed=1, size=(96, 128))


@pytest.fixture
def no_training(monkeypatch):
    """Reading the data set or training fails the test with a message of its own."""

    def refuse(*args, **kwargs):
        raise AssertionError("the data set was read")

    monkeypatch.setattr(train_cli, "read_dataset", refuse)
    monkeypatch.setattr(train_cli, "train", refuse)


def _train(capsys, voc_root, out, *extra) -> tuple[int, list[str]]:
    argv = ["-c", str(SMALL), "-d", str(voc_root), "--classes", "disc", "-o", str(out), "-q", *extra]
    try:
        code = train_cli.main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    return code, capsys.readouterr().err.strip().splitlines()


def test_existing_output_refused_before_reading_data(voc_root, tmp_path, capsys, no_training):
    out = tmp_path / "m.pkl"
    out.write_bytes(b"an earlier model")
    code, err = _train(capsys, voc_root, out)
    assert code == 2 and len(err) == 1, err
    assert str(out) in err[0] and "--overwrite" in err[0] and "another name" in err[0]
    assert out.read_bytes() == b"an earlier model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pkl"]  # no lock left behind
    with pytest.raises(OutputError, match="already exists"):  # the library writes the same way
        save_model(object(), out)
    assert out.read_bytes() == b"an earlier model"


def test_overwrite_replaces_the_model(voc_root, tmp_path, capsys):
    out = tmp_path / "m.pkl"
    out.write_bytes(b"an earlier model")
    code, err = _train(capsys, voc_root, out, "--overwrite")
    assert code == 0, err
    assert list(load(out).classes_) == ["(not disc)", "disc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pkl"]  # no lock, no temporary


@pytest.mark.parametrize("kind", ["directory", "missing folder", "symlink", "dangling symlink"])
def test_unusable_output_refused_before_reading_data(voc_root, tmp_path, capsys, no_training, kind):
    out = tmp_path / "m.pkl"
    if kind == "directory":
        out.mkdir()
    elif kind == "missing folder":
        out = tmp_path / "nowhere" / "m.pkl"
    else:
        target = tmp_path / "target.pkl"
        if kind == "symlink":
            target.write_bytes(b"model")
        out.symlink_to(target)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, err = _train(capsys, voc_root, out, "--overwrite")
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("bowlrp-train: error:") and str(out) in err[0], err
    assert "data set was read" not in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing created, nothing replaced


def test_second_run_refused_while_the_first_holds_the_lock(voc_root, tmp_path, capsys, no_training):
    out = tmp_path / "m.pkl"
    with locked_output(out, program="bowlrp-train"):  # what a running bowlrp-train holds
        code, err = _train(capsys, voc_root, out)
        assert code == 2 and len(err) == 1, err
        assert str(out) in err[0] and f"pid {os.getpid()}" in err[0], err
    assert not out.exists() and list(tmp_path.iterdir()) == []  # released: no lock file

    # a lock left by a killed run is taken over (the run goes on to read the data)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = tmp_path / ".m.pkl.lock"
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "program": "bowlrp-train"}))
    code, err = _train(capsys, voc_root, out)
    assert code == 2 and "data set was read" in err[-1], err
    assert list(tmp_path.iterdir()) == []


def _processes() -> dict[int, tuple[int, int]]:
    """Live processes: pid -> (parent pid, process group), from /proc (zombies left out)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            found[int(entry)] = (int(fields[1]), int(fields[2]))
    return found


def _descendants(pid: int) -> set[int]:
    procs, found, todo = _processes(), set(), [pid]
    while todo:
        parent = todo.pop()
        children = {p for p, (ppid, _) in procs.items() if ppid == parent}
        todo.extend(children - found)
        found |= children
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_sigterm_stops_parallel_training_and_its_workers(voc_root, tmp_path):
    out_dir = tmp_path / "models"
    out_dir.mkdir()
    argv = ["-c", str(SMALL), "-d", str(voc_root), "--classes", "disc", "-o", str(out_dir / "m.pkl")]
    with open(tmp_path / "stderr.txt", "w+") as err:  # a file: orphaned workers would hold a pipe open
        run = subprocess.Popen(
            [sys.executable, "-m", "bowlrp.train", *argv, "-q", "--n-jobs", "2"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,  # its own process group: pgid == run.pid
        )
        try:
            deadline = time.monotonic() + 60
            while len(_descendants(run.pid)) < 2 and run.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)  # until the loky workers run
            workers = _descendants(run.pid)
            assert run.poll() is None and len(workers) >= 2, "training ended before the workers were seen"
            run.send_signal(signal.SIGTERM)
            code = run.wait(timeout=20)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                left = {p for p, (_, group) in _processes().items() if p in workers or group == run.pid}
                if not left:
                    break
                time.sleep(0.2)
        finally:
            for pid in _descendants(run.pid) | {p for p, (_, g) in _processes().items() if g == run.pid}:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            run.kill()
            run.wait()
        err.seek(0)
        lines = err.read().strip().splitlines()
    assert code == 143 and lines == ["bowlrp-train: terminated (nothing was written)"], (code, lines)
    assert not left, f"processes left running after SIGTERM: {sorted(left)}"
    assert list(out_dir.iterdir()) == []  # no model, no temporary, no lock
