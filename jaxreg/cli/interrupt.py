"""SIGINT and SIGTERM: a command ends with exit status 130 and one line on stderr, whatever it is doing.

A handler that raises ``KeyboardInterrupt`` (Python's default for SIGINT) can fire anywhere:
inside a garbage-collector callback, where the exception is printed and dropped (the command
goes on and exits 0), or in code that C++ called, which can crash the process. So the handler
only records the signal, and the command stops at its next safe point (:func:`check`: between
phases, after each compiled chunk, before it returns). Where no safe point comes within GRACE
seconds (importing JAX, compiling, a long chunk, an allocation that never returns), a watchdog
thread, woken through ``signal.set_wakeup_fd``, removes the temporary files of writes in
progress, prints the same line and ends the process (``os._exit(130)``). Either way every file
is complete (old or new) or absent.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

__all__ = ["GRACE", "check", "end", "handled", "received", "report", "set_note"]

GRACE = 1.0  # seconds from a signal to the forced exit when no safe point comes
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_STOP = b"\0"  # written to the wakeup pipe when the command is done (no signal has the number 0)


class _State:
    def __init__(self):
        self.signum = None  # the first signal received
        self.note = None  # () -> str: what the interrupted command leaves behind, appended to the line
        self.done = threading.Event()
        self.reported = threading.Lock()


_state: _State | None = None


def received() -> bool:
    """True once SIGINT or SIGTERM came during the command."""
    return _state is not None and _state.signum is not None


def check() -> None:
    """A safe point: raise KeyboardInterrupt if SIGINT or SIGTERM came."""
    if received():
        raise KeyboardInterrupt


def end(message: str, status: int) -> int:
    """A command's last line and exit status; the interrupt's line and 130 if a signal came first."""
    if received():
        return report()
    with contextlib.suppress(OSError, ValueError):  # stderr gone (a closed pipe): the status stands
        print(message, file=sys.stderr, flush=True)
    return status


def set_note(note) -> None:
    """``note() -> str`` completes the line an interrupted command prints (e.g. its checkpoint)."""
    if _state is not None:
        _state.note = note


def report() -> int:
    """Print the one line (once, whichever of the command and the watchdog comes first); 130."""
    state = _state or _State()
    if state.reported.acquire(blocking=False):
        note = ""
        if state.note is not None:
            with contextlib.suppress(Exception):
                note = state.note()
        with contextlib.suppress(OSError):
            os.write(2, f"jaxreg: interrupted{note}\n".encode())  # no Python lock: the main thread may hold one
    return 130


def _on_signal(signum, frame) -> None:
    if _state is not None and _state.signum is None:
        _state.signum = signum


def _watch(state: _State, read_fd: int) -> None:
    while not any(os.read(read_fd, 64).strip(_STOP)):  # a signal's number, or _STOP alone
        if state.done.is_set():
            return
    if state.done.wait(GRACE):
        return
    from jaxreg import files

    for tmp in list(files.PENDING):
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    report()
    os._exit(130)


@contextlib.contextmanager
def handled():
    """Install the handlers and the watchdog for a command's run (in the main thread; elsewhere
    a no-op); on leaving, the previous handlers come back."""
    global _state
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    state = _state = _State()
    previous = {sig: signal.signal(sig, _on_signal) for sig in _SIGNALS}
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    old_wakeup = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    watchdog = threading.Thread(target=_watch, args=(state, read_fd), name="jaxreg-interrupt", daemon=True)
    watchdog.start()
    try:
        yield
    finally:
        state.done.set()
        with contextlib.suppress(OSError):
            os.write(write_fd, _STOP)
        watchdog.join()
        signal.set_wakeup_fd(old_wakeup)
        os.close(read_fd)
        os.close(write_fd)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _state = None
