"""Interrupts and temporaries never cost a user's file or leave a half-written result (issue 24).

- Ctrl-C / SIGTERM delivered to *another* thread while a result is published (with
  Numba, BLAS or loky threads alive the kernel picks any thread) are held until the
  result is complete: 4269499 masked the main thread only and was interrupted mid-rename.
- SIGTERM unwinds a run like Ctrl-C: lock released, ``run.json`` "interrupted", exit 143.
- The sweep of leftovers removes only bowlrp's own temporaries of the run's own files:
  4269499 deleted every ``.*.tmp`` under ``--out`` (with ``--out .``: the user's tree).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from bowlrp import save
from bowlrp._utils.atomic import is_temporary, leftover_temporaries, temporary_prefix
from bowlrp._utils.signals import Terminated, deferred_signals, interrupt_behind, terminate_as_interrupt
from bowlrp.runs import folder
from bowlrp.runs.folder import publish
from tests.test_batch import _run, model, png  # noqa: F401 - fixtures


@pytest.fixture()
def busy_thread():
    """A live thread that is not the main thread, and a way to signal it alone."""
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    yield thread
    stop.set()
    thread.join(5)


def test_a_signal_to_another_thread_waits_until_the_result_is_published(busy_thread, tmp_path, monkeypatch):
    files = {tmp_path / f"f{i}.bin": bytes([i]) * 100 for i in range(4)}
    real_replace = os.replace
    sent = []

    def replace_and_interrupt(src, dst):
        if not sent:  # after the first rename: the kernel hands SIGINT to the other thread
            signal.pthread_kill(busy_thread.ident, signal.SIGINT)
            sent.append(time.perf_counter())
            time.sleep(0.2)  # the main thread runs bytecode meanwhile: 4269499 raised here
        return real_replace(src, dst)

    monkeypatch.setattr(folder.os, "replace", replace_and_interrupt)
    with pytest.raises(KeyboardInterrupt):
        publish(files)
    assert sent, "the signal was not sent"
    for path, data in files.items():  # the whole result, then the interrupt
        assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in files)


def test_deferred_signals_act_after_the_block_and_restore_the_handlers():
    before = signal.getsignal(signal.SIGINT)
    reached_end = False
    with pytest.raises(KeyboardInterrupt):
        with deferred_signals() as received:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            assert received == [signal.SIGINT]
            reached_end = True
    assert reached_end and signal.getsignal(signal.SIGINT) is before
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))
    try:
        with deferred_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            assert seen == []
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
    with pytest.raises(Terminated), terminate_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
    assert signal.getsignal(signal.SIGTERM) is previous


def test_only_bowlrps_temporaries_of_the_runs_own_files_are_swept(model, png, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    image = png(tmp_path / "in" / "a.png")
    theirs = [
        out / ".chapter3.tex.tmp",  # another program's temporary
        out / "thesis" / ".notes.md.tmp",
        out / ".a.json.k3j9x2qa.tmp",  # bowlrp 0.1's pattern: could be anyone's
        out / ".b.json.bowlrp-k3j9x2qa.tmp",  # bowlrp's, but not of a file this run writes
    ]
    ours = out / ".a.json.bowlrp-k3j9x2qa.tmp"
    for path in [*theirs, ours]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"keep me" if path in theirs else b"half a record")
    assert leftover_temporaries([out / "a.json", out / "run.json"]) == [ours]
    _run(model, [image], out)
    assert not ours.exists()
    for path in theirs:
        assert path.read_bytes() == b"keep me", path
    assert is_temporary(out / (temporary_prefix("a.json") + "abcdefgh.tmp"))
    assert not is_temporary(out / ".chapter3.tex.tmp")


def test_the_default_out_dot_leaves_the_users_tree_alone(model, png, tmp_path):  # noqa: F811
    work = tmp_path / "home"
    user_file = work / "projects" / "thesis" / ".chapter3.tex.tmp"
    user_file.parent.mkdir(parents=True)
    user_file.write_text("my chapter")
    image = png(tmp_path / "elsewhere" / "x.png")
    model_path = save(model, tmp_path / "m.pkl")
    r = subprocess.run(
        [sys.executable, "-m", "bowlrp.explain", "-i", str(image), "-m", str(model_path), "-q"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert (work / "x.json").is_file()
    assert user_file.read_text() == "my chapter"


def test_sigterm_unwinds_a_run_like_ctrl_c(model, png, tmp_path):  # noqa: F811
    for i in range(12):
        png(tmp_path / "in" / f"im{i:02d}.png", i)
    model_path = save(model, tmp_path / "m.pkl")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "bowlrp.explain", "-i", str(tmp_path / "in"), "-m", str(model_path)]
    proc = subprocess.Popen([*cmd, "-o", str(out), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and len(list(out.glob("im*.json"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.decode().strip().splitlines() == ["bowlrp-explain: interrupted (SIGTERM)"]
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    assert not list(out.glob(".*")), list(out.glob(".*"))  # no lock, no temporary


def _failing_clean_up(interrupt: BaseException):
    """Raise ``interrupt``, then fail while handling it, as joblib's pool did after a SIGTERM
    landed while it started a thread (CI at ecb74ab: exit 2, "cannot join thread before it is
    started", instead of 143)."""
    try:
        raise interrupt
    except KeyboardInterrupt:
        raise RuntimeError("cannot join thread before it is started")  # noqa: B904 - as joblib does


def test_an_error_raised_while_a_signal_unwinds_is_reported_as_that_signal(capsys, monkeypatch):
    from argparse import Namespace

    from bowlrp.cli import train
    from bowlrp.cli._common import run_command

    for interrupt, code, line in (
        (Terminated("t"), 143, "x: stopped (SIGTERM)"),
        (KeyboardInterrupt(), 130, "x: stopped"),
    ):
        assert interrupt_behind(_error_after(interrupt)) is interrupt
        assert (
            run_command("x", lambda args, i=interrupt: _failing_clean_up(i), Namespace(), "stopped") == code
        )
        assert capsys.readouterr().err.strip().splitlines() == [line]
    # bowlrp-train says whether its model was written, also in this case
    train.import_work(vars(train), train.WORK)
    monkeypatch.setattr(train, "run", lambda args: _failing_clean_up(Terminated("t")))
    assert train._train_and_report(Namespace(quiet=True)) == 143
    assert capsys.readouterr().err.strip() == "bowlrp-train: terminated (nothing was written)"
    # an error with no signal behind it stays an error (one line, exit 2)
    assert interrupt_behind(RuntimeError("plain")) is None
    assert run_command("x", lambda args: (_ for _ in ()).throw(RuntimeError("plain")), Namespace()) == 2
    assert capsys.readouterr().err.strip() == "x: error: plain"


def _error_after(interrupt: BaseException) -> BaseException:
    try:
        _failing_clean_up(interrupt)
    except RuntimeError as exc:
        return exc
    raise AssertionError("the clean-up did not fail")
