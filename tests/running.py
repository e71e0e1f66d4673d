"""A command run as a user runs it, in a fresh process, that a test can wait on: for its signal
handlers, for JAX to load, for a line on stderr. Tests that signal a command wait for the state
they signal into this way, never for a length of time."""

import os
import re
import subprocess
import sys
import threading
import time

import pytest


def _handlers_installed(pid: int) -> bool:
    """True once the process catches SIGTERM (Linux: /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        caught = next(line for line in f if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (15 - 1)))


def _jax_loading(pid: int) -> bool:
    """True once jaxlib's extensions are mapped into the process: JAX is being imported."""
    with open(f"/proc/{pid}/maps") as f:
        return "/jaxlib/" in f.read()


class Running:
    """``jaxreg ARGV`` in a fresh process (the console script, ``python -m jaxreg.cli``, or a
    ``python -c`` script); a thread reads its stderr line by line, so the test can wait for a line."""

    def __init__(self, argv, cwd, entry="module", code=None):
        if code is not None:
            command = [sys.executable, "-c", code]
        elif entry == "script":
            command = [os.path.join(os.path.dirname(sys.executable), "jaxreg")]
        else:
            command = [sys.executable, "-m", "jaxreg.cli"]
        self.proc = subprocess.Popen(command + list(map(str, argv)), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, cwd=cwd)
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stderr:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.lines.append(None)  # end of stderr
            self.changed.notify_all()

    def wait_for_line(self, pattern: str, timeout=120) -> str:
        """The first stderr line that ``pattern`` matches (re.search), once the command has printed it."""
        def found():
            return next((line for line in self.lines if line is not None and re.search(pattern, line)), None)

        with self.changed:
            self.changed.wait_for(lambda: found() is not None or None in self.lines, timeout)
            line = found()
        assert line is not None, f"no line matching {pattern!r}: {''.join(filter(None, self.lines))}"
        return line

    def wait_until(self, state, timeout=60) -> None:
        """Poll ``state(pid)`` (every 2 ms) until it holds."""
        deadline = time.monotonic() + timeout
        while not state(self.proc.pid):
            assert self.proc.poll() is None, f"ended before {state.__name__}: {''.join(filter(None, self.lines))}"
            assert time.monotonic() < deadline, f"not {state.__name__} in {timeout} s"
            time.sleep(0.002)

    def wait(self, until) -> None:
        """``until``: "handlers", "jax", or a pattern of a stderr line."""
        if until in ("handlers", "jax"):
            if not os.path.exists(f"/proc/{self.proc.pid}/maps"):
                self.proc.kill()
                pytest.skip("no /proc: the process's state cannot be seen")
            self.wait_until(_handlers_installed if until == "handlers" else _jax_loading)
        else:
            self.wait_for_line(until)

    def send(self, sig) -> bool:
        """Send ``sig``; whether the process was still running."""
        running = self.proc.poll() is None
        self.proc.send_signal(sig)
        return running

    def finish(self, timeout=120) -> tuple[int, str]:
        """(exit status, the whole of stderr)."""
        try:
            self.proc.wait(timeout=timeout)
        finally:
            self.proc.kill()
        self.reader.join(timeout=10)
        return self.proc.returncode, "".join(filter(None, self.lines))


