"""The command line's flags: derived from the settings table (:mod:`jaxreg.config`), with help
that shows every default, and the errors of the library named by the flag the user typed.

Nothing here imports JAX: the flags are parsed and checked before JAX starts.
"""

from __future__ import annotations

import argparse

from jaxreg import config as table_module
from jaxreg.config import settings
from jaxreg.errors import ConfigError

__all__ = [
    "UsageError", "Parser", "typed", "path", "floats", "ints", "add_settings", "add_data_flags", "add_validation_flags",
    "add_hosts_flags", "add_run_flags", "config", "flag_of", "named",
]


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


class HelpFormatter(argparse.HelpFormatter):
    """Help that shows each option's default where it has one (and does not say it already)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if "(default" in text or default is None or default is False or default is argparse.SUPPRESS \
                or not action.option_strings:
            return text
        return f"{text} (default {typed(default).replace('%', '%%')})".lstrip()


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):  # one line, exit 2, as for every other bad input
        raise UsageError(f"{self.prog}: {message}")


def typed(value) -> str:
    """A value as the user would have typed it: 0 rather than 0.0, 1e-320 rather than 9.99989e-321,
    20,3 for a tuple (a flag of comma-separated values)."""
    if isinstance(value, tuple):
        return ",".join(map(typed, value))
    if isinstance(value, float):
        short, exact = f"{value:g}", repr(value)
        return short if float(short) == value and len(short) <= len(exact) else exact
    return str(value)


def _argument_type(parse):
    """``parse`` as argparse's ``type``: its ValueError in argparse's words (``int``, ``float`` as they are)."""
    if parse in (None, int, float):
        return parse

    def convert(text: str):
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = parse.__name__
    return convert


def path(text: str) -> str:
    """A file's path: never empty (an empty path would mean the built-in data, or no file, silently)."""
    if not text:
        raise argparse.ArgumentTypeError("expected a path, got ''")
    return text


floats = _argument_type(settings()["keep_prob"][1].parse)  # "0.9" or "0.9,0.6"
ints = _argument_type(settings()["layer_dims"][1].parse)  # "20,3"


def _dest(flag: str) -> str:
    return flag[2:].replace("-", "_")


def add_settings(p, names=None, exclude=(), table=None, **overrides) -> None:
    """The flags of the settings ``names`` (default: all of ``table``'s but ``exclude``; ``table``:
    :class:`~jaxreg.config.TrainConfig`), as the table declares them; ``overrides[name]`` changes a
    flag's argparse keywords (a command's own default, help, nargs)."""
    for name, (field, s) in settings(table).items():
        if (names is not None and name not in names) or name in exclude:
            continue
        default = s.outer_default if s.outer is not None else field.default
        keywords = {"default": default, "help": s.help, "metavar": s.metavar, "type": _argument_type(s.parse),
                    "choices": s.choices, **overrides.get(name, {})}
        p.add_argument(s.flag, **{k: v for k, v in keywords.items() if v is not None or k == "default"})


def config(args, n_x: int, table=None, **given):
    """The :class:`~jaxreg.config.TrainConfig` the flags give for data of ``n_x`` features
    (``given``: values that replace the flags', e.g. one value of a sweep's grid). Its errors
    name the flag and the value as typed (:func:`named`)."""
    values = {}
    for name, (_, s) in settings(table).items():
        if name in given:
            value = given[name]
        elif hasattr(args, _dest(s.flag)):
            value = getattr(args, _dest(s.flag))
        else:
            continue
        values[name] = s.outer(value, n_x) if s.outer is not None else value
    try:
        return (table or table_module.TrainConfig)(**values)
    except ConfigError as err:
        raise named(err, args, given, table) from None


def flag_of(field: str, table=None) -> str:
    """The flag of a library argument: the table's, else ``--`` and its name with dashes."""
    declared = settings(table).get(field)
    return declared[1].flag if declared else "--" + field.replace("_", "-")


def named(err: Exception, args, given: dict | None = None, table=None) -> Exception:
    """A library error for the command line: ``keep_prob: got [0.0, 0.0], ...`` becomes ``--keep-prob:
    got 0, ...``, the flag the user typed and the value as typed (``given``, else the flag's). An
    error of an argument the command has no flag for (``X``, ``params['W1']``) keeps its name."""
    if not isinstance(err, ConfigError):
        return err
    flag = flag_of(err.field, table)
    if args is None or not hasattr(args, _dest(flag)):
        return err
    value = (given or {}).get(err.field, getattr(args, _dest(flag)))
    return err.renamed(flag, None if value is None else typed(value))


# ----------------------------------------------------------------------------- flag groups


def add_data_flags(p) -> None:
    from jaxreg.data import DATASETS

    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="PATH", type=path,
                        help="a data file, one example per row: .npz or .mat with arrays X (m, n_x) and y (m, 1) "
                        "of 0/1, and optionally a test set Xval, yval; or .csv with the label in the last column "
                        "(a header row is allowed)")
    source.add_argument("--dataset", choices=DATASETS, default="default",
                        help="a built-in 2-D dataset, made from --data-seed: default (200 training and 1000 test "
                        "points split by a curved line, 14%% of each class strays near it), moons, circles, spiral")
    p.add_argument("--test-data", metavar="PATH", type=path, help="a second .csv as test set (with --data FILE.csv)")
    p.add_argument("--data-seed", type=int, default=None, metavar="S",
                   help="seed of the built-in dataset and of --test-split (default 0)")
    p.add_argument("--test-split", type=float, default=None, metavar="F",
                   help="hold out a stratified fraction F of the training examples as the test set (for data "
                   "without one; seeded by --data-seed)")


def add_validation_flags(p, *, folds: bool = False) -> None:
    """What a run is judged on while it trains (and early stopping, which watches it)."""
    group = p.add_argument_group("validation (never the test set)")
    held = group.add_mutually_exclusive_group()
    if folds:
        held.add_argument("--folds", type=int, default=None, metavar="K",
                          help="stratified K-fold cross-validation of the training set (default 5 when no other "
                          "validation is given; 0: none, and nothing is chosen)")
    held.add_argument("--validation-data", metavar="PATH", type=path,
                      help="a validation set: a .npz, .mat or .csv file (its training arrays)")
    held.add_argument("--validation-split", type=float, metavar="F",
                      help="hold out a stratified fraction F of the training set for validation")
    group.add_argument("--split-seed", type=int, default=0, metavar="S",
                       help="seed of the folds or the held-out fraction (default 0)")
    add_settings(group, ["early_stopping"])


def add_hosts_flags(p) -> None:
    """Several processes or hosts on JAX's runtime: every process runs the same command."""
    group = p.add_argument_group("several processes or hosts (every one runs this same command)")
    group.add_argument("--coordinator", metavar="HOST:PORT",
                       help="process 0's address (or $JAX_COORDINATOR_ADDRESS)")
    group.add_argument("--num-processes", type=int, metavar="N", help="how many processes (or $JAXREG_NUM_PROCESSES)")
    group.add_argument("--process-id", type=int, metavar="I", help="this process's index (or $JAXREG_PROCESS_ID)")
    group.add_argument("--distributed", action="store_true",
                       help="find the processes from SLURM, Open MPI or Kubernetes (jax.distributed.initialize())")


def add_run_flags(p) -> None:
    """Flags of every command that computes."""
    p.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
    p.add_argument("--no-cache", action="store_true",
                   help="do not use the compilation cache (default: on, in $JAXREG_CACHE_DIR or ~/.cache/jaxreg; "
                   "JAXREG_CACHE_DIR= turns it off)")
    p.add_argument("--device", choices=("cpu", "gpu"), default=None,
                   help="the backend to run on (default: JAX's choice, a GPU where one is installed and present; "
                   "or $JAX_PLATFORMS, e.g. cpu or cuda)")
