"""The ``jaxreg`` command line: ``train``, ``compare``, ``sweep``, ``gradcheck``.

Nothing imports this package. Bad input ends with one line on stderr and exit
status 2, never a traceback; results go to stdout. One module per command.
"""

from __future__ import annotations

import signal
import sys

from jaxreg.cli import common, compare, gradcheck, sweep, train
from jaxreg.cli.common import UsageError

__all__ = ["build_parser", "main"]


def build_parser() -> common.Parser:
    from jaxreg import __version__

    parser = common.Parser(prog="jaxreg", description="L2 and inverted dropout for small deep networks, "
                           "in pure JAX, checked against the textbook's NumPy backprop.")
    parser.add_argument("--version", action="version", version=f"jaxreg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=common.Parser)
    for command in (train, compare, sweep, gradcheck):
        command.add(sub)
    return parser


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)  # ends like Ctrl-C: exit 130, one line
    try:
        args = build_parser().parse_args(argv)
        status = args.func(args)
        hosts = sys.modules.get("jaxreg.hosts")
        if hosts is not None:
            hosts.sync("jaxreg: done")  # the other processes wait for the first's output
        return status
    except UsageError as err:
        print(err, file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError, ImportError) as err:
        print(f"jaxreg: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jaxreg: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as err:
        training = sys.modules.get("jaxreg.training")  # not imported: nothing trained, nothing diverged
        if training is None or not isinstance(err, training.TrainingDiverged):
            raise
        print(f"jaxreg: error: {err}", file=sys.stderr)
        return 1
