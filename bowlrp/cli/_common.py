"""What the command-line programs share once they run: one-line errors, model loading, targets.

The parser's pieces (:func:`ArgumentParser`, argument types, :class:`CLIError`) live in
:mod:`bowlrp.cli._args`, which imports nothing heavy; they are re-exported here.
"""

from __future__ import annotations

import contextlib
import sys
import threading

import cv2
from tqdm.std import tqdm

from .._utils.parallel import bound_n_jobs
from .._utils.signals import Terminated, interrupt_behind, terminate_as_interrupt
from .._utils.validation import capturing_native_stderr, display_path, image_limits, opencv_message
from ..model_files import load
from ._args import ArgumentParser, CLIError, percentile_arg, positive_int

__all__ = [
    "ArgumentParser",
    "CLIError",
    "LineStartStderr",
    "error_line",
    "load_pipeline",
    "percentile_arg",
    "positive_int",
    "resolve_target",
    "run_command",
    "stderr_lines",
]


def load_pipeline(path, trusted: bool = False, trust: list[str] | None = None):
    """A fitted Pipeline from a model file (one-line errors for anything else).

    ``trust`` names extra types a skops file may contain; ``trusted`` allows a
    real pickle (it can run code).
    """
    model = load(path, trusted=True) if trusted else load(path, trusted=list(trust or []) or False)
    if not hasattr(model, "explain"):
        raise CLIError(f"{display_path(path)} holds a {type(model).__name__}, not a bowlrp Pipeline")
    bound_n_jobs(model)  # the n_jobs of the machine the model was trained on does not decide here
    return model


def resolve_target(model, text):
    """A class label from a name or index given on the command line (the library's rule:
    :meth:`bowlrp.Pipeline.resolve_target`, so ``--target 1`` and ``target=1`` agree)."""
    if text is None:
        return None
    try:
        return model.resolve_target(text)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _tqdm_class():
    return tqdm


class LineStartStderr:
    """``sys.stderr`` during a command: other text never lands on a progress bar's line.

    A tqdm bar leaves the cursor after ``\r 37%|███ | 3/8``; a warning, a log record or
    an error printed then was glued to the bar (``37%|███ | 3/8 error: ...``). Text that
    is not a bar's own redraw (those start with ``\r``, ``\n`` or an escape) is held
    until its line is complete and written the way ``tqdm.write`` does (the bars are
    cleared, the line written, the bars drawn again below it); with no bar left, a
    line that would start after a bar's text starts on a line of its own.
    """

    def __init__(self, stream):
        self._stream = stream
        self._lock = threading.Lock()
        self._pending = ""
        self._tail = ""  # what the current terminal line shows (after its last \r)
        self._local = threading.local()

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def _bars(self) -> bool:
        tqdm = _tqdm_class()
        instances = getattr(tqdm, "_instances", ()) if tqdm is not None else ()
        try:
            return any(not getattr(bar, "disable", True) and bar.fp == self for bar in list(instances))
        except Exception:  # noqa: BLE001 - a bar half set up or torn down: treat as none
            return False

    def _track(self, text: str) -> None:
        line = text.rsplit("\n", 1)
        tail = line[-1] if len(line) == 2 else self._tail + line[0]
        self._tail = tail.rsplit("\r", 1)[-1][-400:]

    def _dirty(self) -> bool:
        return bool(self._tail.replace("\x1b[A", "").strip())

    def _raw(self, text: str) -> int:
        with self._lock:
            self._track(text)
        return self._stream.write(text)

    def write(self, text):
        if not isinstance(text, str) or not text:
            return self._stream.write(text)
        if getattr(self._local, "raw", False):  # the bars' own clearing and redrawing in _emit
            return self._raw(text)
        with self._lock:
            foreign = bool(self._pending) or text[0] not in "\r\n\x1b"
            if foreign:
                self._pending += text
                if "\n" not in self._pending:
                    return len(text)
                lines, _, self._pending = self._pending.rpartition("\n")
            else:
                lines = None
        if lines is None:
            return self._raw(text)
        self._emit(lines + "\n")
        return len(text)

    def _emit(self, lines: str) -> None:
        self._local.raw = True
        try:
            tqdm = _tqdm_class()
            if tqdm is not None and self._bars():
                with tqdm.external_write_mode(file=self):  # clears the bars, redraws them after
                    if self._dirty():
                        self._raw("\n")
                    self._raw(lines)
            else:
                if self._dirty():
                    self._raw("\n")
                self._raw(lines)
        finally:
            self._local.raw = False

    def flush(self):
        return self._stream.flush()

    def finish(self) -> None:
        """Write out a last line without its newline, if one is held."""
        with self._lock:
            pending, self._pending = self._pending, ""
        if pending:
            self._emit(pending)
        with contextlib.suppress(Exception):
            self._stream.flush()


@contextlib.contextmanager
def stderr_lines():
    """``sys.stderr`` wrapped in :class:`LineStartStderr` for the block (restored after)."""
    original = sys.stderr
    if original is None or isinstance(original, LineStartStderr):
        yield original
        return
    wrapped = LineStartStderr(original)
    sys.stderr = wrapped
    try:
        yield wrapped
    finally:
        wrapped.finish()
        if sys.stderr is wrapped:
            sys.stderr = original


def error_line(exc: BaseException) -> str:
    """The one line an error is reported as (OpenCV's ``(-215:Assertion failed)`` made short)."""
    if isinstance(exc, cv2.error):
        return f"OpenCV could not process the data ({display_path(opencv_message(exc))})"
    message = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
    return display_path(message)


def run_command(prog: str, run, args, interrupted: str = "interrupted") -> int:
    """Run a command; any error becomes one line on stderr and exit code 2 (--debug: raise).

    Ctrl-C ends it with exit code 130, SIGTERM with 143; both unwind the program first
    (locks released, run records marked interrupted, temporaries removed). While it runs,
    lines written to stderr start on their own line, never after a progress bar
    (:class:`LineStartStderr`).
    """
    with stderr_lines(), capturing_native_stderr():
        try:
            with terminate_as_interrupt():
                image_limits()  # a bad BOWLRP_MAX_IMAGE_* refuses the run at once, not every image
                return run(args)
        except Terminated:
            print(f"{prog}: {interrupted} (SIGTERM)", file=sys.stderr)
            return 143
        except KeyboardInterrupt:
            print(f"{prog}: {interrupted}", file=sys.stderr)
            return 130
        except Exception as exc:  # one line for people; --debug for the traceback
            interrupt = interrupt_behind(exc)  # an error in the clean-up after a signal
            if interrupt is not None:
                terminated = isinstance(interrupt, Terminated)
                print(f"{prog}: {interrupted}{' (SIGTERM)' if terminated else ''}", file=sys.stderr)
                return 143 if terminated else 130
            if getattr(args, "debug", False):
                raise
            print(f"{prog}: error: {error_line(exc)}", file=sys.stderr)
            return 2
