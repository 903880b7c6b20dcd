"""Ctrl-C and SIGTERM held back at the Python level while a result is being published.

``pthread_sigmask`` masks the calling thread only: with Numba, BLAS or loky
threads alive, the kernel delivers SIGINT to one of them, CPython notes it, and
the main thread raises ``KeyboardInterrupt`` at its next bytecode, in the middle
of a multi-file rename. :func:`deferred_signals` instead replaces the Python
handlers of SIGINT and SIGTERM (Python runs every signal handler in the main
thread, whichever thread the kernel picked) with one that only records the
signal; when the block ends the previous handlers are restored and the first
recorded signal is delivered to them: ``KeyboardInterrupt`` for Ctrl-C, the
program's SIGTERM handler (or the default action) for SIGTERM.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

HELD = (signal.SIGINT, signal.SIGTERM)


def _deliver(signum: int, handler) -> None:
    """Act on a held signal as the handler in force before the block would have."""
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_IGN:
        return
    else:  # SIG_DFL, or a handler installed outside Python (None): the default action
        signal.raise_signal(signum)


def _restore(handlers: list[tuple[int, object]]) -> None:
    """Put every handler back even if a signal arriving in between raises (nested finally)."""
    if not handlers:
        return
    try:
        signal.signal(*handlers[0])
    finally:
        _restore(handlers[1:])


@contextlib.contextmanager
def deferred_signals() -> Iterator[list[int]]:
    """Hold SIGINT and SIGTERM until the block ends, then act on the first one received.

    Yields the list of signals received so far (for tests and progress messages).
    Outside the main thread nothing is changed: Python delivers signals to the
    main thread only, so a worker thread is never interrupted by one.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def hold(signum, frame):
        received.append(signum)

    previous = {}
    try:
        for signum in HELD:
            previous[signum] = signal.signal(signum, hold)
        yield received
    finally:
        _restore(list(previous.items()))
        if received:
            _deliver(received[0], previous.get(received[0], signal.SIG_DFL))


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so a program unwinds (locks, records) as on Ctrl-C."""


def interrupt_behind(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM an error was raised while handling, if any.

    A signal can land inside a library's start-up code (for example while joblib's
    worker pool starts a thread); its clean-up then fails in turn ("cannot join
    thread before it is started") and that second error hides the interrupt.
    Follows ``__context__`` and ``__cause__`` (each exception once).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _raise_terminated(signum, frame):
    raise Terminated(f"terminated by signal {signum}")


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``) in the main
    thread, so ``finally`` blocks run, locks are released and run records say "interrupted";
    the previous handler is restored afterwards. No effect outside the main thread, nor when
    SIGTERM is ignored (an inherited ``SIG_IGN`` stays in force)."""
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    ):
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
