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

from jaxreg.cli import flags, interrupt
from jaxreg.cli.flags import UsageError
from jaxreg.errors import TrainingDiverged

__all__ = ["build_parser", "main"]


def build_parser() -> flags.Parser:
    from jaxreg import __version__
    from jaxreg.cli import compare, gradcheck, sweep, train

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
    with interrupt.handled():
        status = _run(argv)
        if argv is None:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except BrokenPipeError:
                    status = _closed_pipe()
                except (OSError, ValueError):  # a closed stream
                    pass
            if interrupt.received():
                status = interrupt.report()
    if argv is None:
        os._exit(status)
    return status


def _run(argv: list[str] | None) -> int:
    from jaxreg.cli.session import Session

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
    first = text.splitlines()[0] if text else type(err).__name__
    return f"out of memory: {first}" if isinstance(err, MemoryError) or "RESOURCE_EXHAUSTED" in text else first
