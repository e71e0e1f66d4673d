"""The ``jaxreg`` command line: ``train``, ``compare``, ``sweep``, ``gradcheck``.

Nothing imports this module. Bad input ends with one line on stderr and exit
status 2, never a traceback; results go to stdout.
"""

from __future__ import annotations

import argparse
import sys


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as for every other bad input
        raise UsageError(f"{self.prog}: {message}")


def _floats(text: str) -> tuple[float, ...]:
    """``"0.9"`` or ``"0.9,0.6"`` (one value per hidden layer)."""
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number or comma-separated numbers, got {text!r}"
        ) from None


def _ints(text: str) -> tuple[int, ...]:
    """``"20,3"``: hidden widths."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxreg", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for register in COMMANDS:
        register(sub)
    return parser


# Each command module adds itself here: a function taking the subparsers object,
# adding its parser and setting ``func`` (args -> exit status) as a default.
COMMANDS: list = []


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UsageError as err:
        print(err, file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as err:
        print(f"jaxreg: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jaxreg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
