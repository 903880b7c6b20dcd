"""What the command-line programs share: one-line errors, model loading, targets."""

from __future__ import annotations

import argparse
import sys

from .._utils.parallel import bound_n_jobs
from .._utils.signals import Terminated, terminate_as_interrupt
from .._utils.validation import display_path, image_limits
from ..model_files import load


class CLIError(Exception):
    """An error reported as one line with exit code 2."""


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
    """A class label from a name or index given on the command line."""
    if text is None:
        return None
    classes = list(model.classes_)
    for c in classes:
        if str(c) == text:
            return c
    try:
        index = int(text)
    except ValueError:
        raise CLIError(f"unknown target {text!r}; classes are {[str(c) for c in classes]}") from None
    if not 0 <= index < len(classes):
        raise CLIError(f"target index {index} out of range; the model has {len(classes)} classes")
    return classes[index]


def run_command(prog: str, run, args, interrupted: str = "interrupted") -> int:
    """Run a command; any error becomes one line on stderr and exit code 2 (--debug: raise).

    Ctrl-C ends it with exit code 130, SIGTERM with 143; both unwind the program first
    (locks released, run records marked interrupted, temporaries removed).
    """
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
        if getattr(args, "debug", False):
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"{prog}: error: {display_path(message)}", file=sys.stderr)
        return 2


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def percentile_arg(text: str) -> float | None:
    """argparse type: a percentile in (0, 100], or 'max' (= 100)."""
    if text.lower() in ("max", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 100] or 'max', got {text!r}") from None
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 100] or 'max', got {text!r}")
    return None if value == 100 else value


def _one_line_error(self, message: str):
    """argparse's error as one line (no usage block): ``prog: error: message (see --help)``."""
    self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def ArgumentParser(**kwargs):  # noqa: N802 - a drop-in for argparse.ArgumentParser
    """``argparse.ArgumentParser`` whose usage errors are one line on stderr, exit code 2."""
    parser = argparse.ArgumentParser(**kwargs)
    parser.error = _one_line_error.__get__(parser)
    return parser
