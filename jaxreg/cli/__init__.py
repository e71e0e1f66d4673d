"""The ``jaxreg`` command line: ``train``, ``compare``, ``sweep``, ``gradcheck``.

Nothing imports this package. Bad input ends with one line on stderr and exit
status 2, never a traceback; results go to stdout. One module per command, imported
by :func:`main` once its signal handlers are in place (:mod:`jaxreg.cli.interrupt`). The
commands are written from three plain parts: :mod:`~jaxreg.cli.flags` (derived from the
settings table), :mod:`~jaxreg.cli.session` (inputs, outputs, resources, JAX's start) and
:mod:`~jaxreg.cli.output` (progress, tables, JSON, figures).
"""

from __future__ import annotations

import contextlib
import os
import sys

from jaxreg.cli import interrupt  # the signal handlers: nothing heavier is imported before they are in place

__all__ = ["build_parser", "main"]


def build_parser():
    from jaxreg import __version__
    from jaxreg.cli import compare, flags, gradcheck, sweep, train

    parser = flags.Parser(prog="jaxreg", description="L2 and inverted dropout for small deep networks, "
                           "in pure JAX, checked against the textbook's NumPy backprop.",
                           epilog="Each command's flags and defaults: jaxreg COMMAND --help. Exit status: 0 done, "
                           "1 training diverged (or, for gradcheck, the check failed), 2 bad input (one line on "
                           "stderr), 130 interrupted, 141 the output's reader went away (| head).")
    parser.add_argument("--version", action="version", version=f"jaxreg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=flags.Parser)
    for command in (train, compare, sweep, gradcheck):
        command.add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``jaxreg ARGV``; returns the exit status: 0 done, 1 training diverged, 2 bad input, 130
    interrupted (SIGINT or SIGTERM at any moment: one line, see :mod:`jaxreg.cli.interrupt`), 141
    (quietly) when the output's reader has gone (``| head``).

    Without ``argv`` (the command itself, ``sys.argv[1:]``) the output is flushed while signals are
    still handled, and the process ends here with that status (``os._exit``): the interpreter's
    finalization would bring the default handlers back (a signal then kills it silently, or prints
    a traceback) and wait for JAX's teardown."""
    if argv is None:
        _streams()  # first: the handlers' pipe must not take a closed stream's descriptor
    with interrupt.handled():
        status = _run(argv)
        if argv is None:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except BrokenPipeError:  # the output's reader went away; a gone stderr changes nothing
                    status = _closed_pipe() if stream is sys.stdout and status == 0 else status
                except OSError as err:  # the results could not be written (a full disk): not done
                    if stream is sys.stdout and status == 0:
                        status = interrupt.end(f"jaxreg: error: the output could not be written "
                                               f"({err.strerror or err})", 2)
                except ValueError:  # a closed stream
                    pass
            if interrupt.received():
                status = interrupt.report()
    if argv is None:
        os._exit(status)
    return status


def _streams() -> None:
    """Standard streams the command was started without (``>&-``, ``2>&-``) become ``/dev/null``:
    their descriptors are taken, so no file the command opens can take one and receive its output,
    and what would go there goes nowhere without changing the exit status. A standard error whose
    reader goes away (a closed pipe) takes what is written and drops it: diagnostics never change
    the status. Warnings, from any library, are one ``jaxreg: warning:`` line each."""
    import warnings

    for fd, name in ((1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
            if getattr(sys, name) is None:
                raise OSError
        except OSError:
            null = os.open(os.devnull, os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            setattr(sys, name, open(fd, "w", buffering=1, closefd=False))
    sys.stderr = _Forgiving(sys.stderr)
    warnings.showwarning = lambda message, *_, **__: print(f"jaxreg: warning: {message}", file=sys.stderr)


class _Forgiving:
    """A stream whose writes and flushes are dropped once its reader has gone (OSError)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        with contextlib.suppress(OSError, ValueError):
            return self._stream.write(text)
        return len(text)

    def flush(self):
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _run(argv: list[str] | None) -> int:
    from jaxreg.cli import flags
    from jaxreg.cli.flags import UsageError
    from jaxreg.cli.session import Session
    from jaxreg.errors import TrainingDiverged

    args = None
    try:
        parser = build_parser()
        if not (sys.argv[1:] if argv is None else argv):  # bare `jaxreg`: what it can do, and how
            parser.print_help(sys.stderr)
            return 2
        args = parser.parse_args(argv)
        session = Session(args)
        status = args.func(args, session)
        session.finish()  # the other processes wait for the first's output
        interrupt.check()
        return status
    except KeyboardInterrupt:
        return interrupt.report()
    except UsageError as err:
        return interrupt.end(str(err), 2)
    except BrokenPipeError:
        return _closed_pipe()
    except (ValueError, TypeError) as err:  # named by the flag the user typed, not the library's argument
        return interrupt.end(f"jaxreg: error: {_message(flags.named(err, args))}", 2)
    except (OSError, ImportError, MemoryError) as err:
        return interrupt.end(f"jaxreg: error: {_message(err)}", 2)
    except TrainingDiverged as err:
        return interrupt.end(f"jaxreg: error: {err}", 1)
    except RuntimeError as err:
        if "RESOURCE_EXHAUSTED" not in str(err):
            raise
        return interrupt.end(f"jaxreg: error: {_message(err)}", 2)


def _closed_pipe() -> int:
    """The reader of the output went away (``jaxreg ... | head``): end quietly, as Unix tools do, with
    the status a shell reports for them (128 + SIGPIPE); what is still buffered goes nowhere."""
    import signal

    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 128 + signal.SIGPIPE


def _message(err: BaseException) -> str:
    """One line: the first line of the error's message (its type where it has none)."""
    text = str(err).strip()
    if "RESOURCE_EXHAUSTED" in text:  # XLA's: its first line says it
        return f"out of memory: {text.splitlines()[0]}"
    # One line, whole: a newline inside a message (a path with one) is shown, not cut at.
    one = text.replace("\r", "\\r").replace("\n", "\\n") if text else type(err).__name__
    return f"out of memory: {one}" if isinstance(err, MemoryError) else one
