"""Compilation: JAX's persistent compilation cache, and a clock for the time spent compiling.

The command line turns the cache on (:func:`enable_cache`), so that a command run
again loads its programs instead of compiling them. The library never changes JAX's
configuration on import; a library user turns the cache on with::

    import jaxreg.compilation
    jaxreg.compilation.enable_cache()          # ~/.cache/jaxreg, or $JAXREG_CACHE_DIR

:class:`CompileClock` counts compilations and the seconds spent tracing, lowering and
compiling (or loading from the cache), from JAX's own monitoring events.
"""

from __future__ import annotations

import os
import tempfile
import threading
import warnings
from pathlib import Path

import jax

__all__ = ["CACHE_ENV", "default_cache_dir", "enable_cache", "CompileClock"]

CACHE_ENV = "JAXREG_CACHE_DIR"  # the cache's folder; set and empty: no cache
_COMPILE_EVENTS = (  # what a program costs before it runs, each reported with its duration
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",  # an XLA compilation, or a load from the cache
)


def default_cache_dir() -> Path | None:
    """``$JAXREG_CACHE_DIR`` (None when set and empty), else ``$XDG_CACHE_HOME/jaxreg``, else
    ``~/.cache/jaxreg``."""
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        return Path(env).expanduser() if env else None
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxreg"


def enable_cache(directory: str | os.PathLike | None = None) -> Path | None:
    """Turn JAX's persistent compilation cache on in ``directory`` (default
    :func:`default_cache_dir`), for every program however small or fast to compile.

    Returns the folder, or None when it is off (``$JAXREG_CACHE_DIR`` empty) or cannot be
    written (then with a warning: a command never fails for its cache)."""
    folder = Path(directory).expanduser() if directory is not None else default_cache_dir()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        warnings.warn(f"compilation cache off: {folder} cannot be written ({err.strerror or err})", stacklevel=2)
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return folder


class _Totals:
    """Process-wide sums of the compile events (listeners cannot be removed, so one is registered)."""

    lock = threading.Lock()
    registered = False
    seconds = 0.0
    programs: list[str] = []  # names of the programs compiled or loaded from the cache, in order
    cache_hits = 0

    @classmethod
    def register(cls) -> None:
        with cls.lock:
            if cls.registered:
                return
            jax.monitoring.register_event_duration_secs_listener(cls.on_duration)
            jax.monitoring.register_event_listener(cls.on_event)
            cls.registered = True

    @classmethod
    def on_duration(cls, event: str, seconds: float, fun_name: str = "?", **_) -> None:
        if event in _COMPILE_EVENTS:
            with cls.lock:
                cls.seconds += seconds
                if event == _COMPILE_EVENTS[-1]:
                    cls.programs.append(fun_name)

    @classmethod
    def on_event(cls, event: str, **_) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            with cls.lock:
                cls.cache_hits += 1


class CompileClock:
    """Compilations since the clock was made: ``seconds`` (tracing, lowering, compiling or
    loading from the cache), ``programs`` (their names, e.g. ``jit(_run_chunk)``),
    ``cache_hits`` (those loaded from the persistent cache) and ``compiled`` (the rest)."""

    def __init__(self):
        _Totals.register()
        self._start = self._now()

    @staticmethod
    def _now() -> tuple[float, int, int]:
        with _Totals.lock:
            return _Totals.seconds, len(_Totals.programs), _Totals.cache_hits

    @property
    def seconds(self) -> float:
        return self._now()[0] - self._start[0]

    @property
    def programs(self) -> list[str]:
        with _Totals.lock:
            return _Totals.programs[self._start[1]:]

    @property
    def cache_hits(self) -> int:
        return self._now()[2] - self._start[2]

    @property
    def compiled(self) -> int:
        return len(self.programs) - self.cache_hits
