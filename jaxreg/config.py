"""What defines a training run: :class:`TrainConfig`, whose fields are jaxreg's settings table.

Each setting is declared once, as a field of :class:`TrainConfig` made by :func:`setting`: its
default, its check, its kind, its command-line flag and help, its scikit-learn name. Its kind
says what the compiled step makes of it:

* ``static``: it shapes the compiled program (the network's widths, the optimizer);
* ``traced``: a value the step takes as an argument, so a sweep varies it without
  recompiling (``lambd``, ``keep_prob``); a traced setting may ``switch`` a part of the step
  on (dropout only where some ``keep_prob < 1``), which is then static;
* ``loop``: the host's loop (how long, how often the cost is logged).

Everything else is derived from these declarations: the command line's flags and ``--help``
(:mod:`jaxreg.cli.flags`), the estimator's parameters (:mod:`jaxreg.sklearn`), the JSON and
checkpoint metadata (:meth:`TrainConfig.to_json`, whose keys are the fields' names), what a
resumed run may change, and what a compiled program depends on (:class:`Program`, :class:`Hyper`).
Adding a setting is one field here plus its use in the step. This module imports NumPy only:
the command line checks its flags before JAX starts.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from jaxreg import validate
from jaxreg.errors import ConfigError

__all__ = [
    "OPTIMIZERS", "MASK_SCHEDULES", "INITS", "DTYPES", "MAX_ITERATIONS", "MAX_LOGGED", "MIN_KEEP_PROB",
    "Setting", "setting", "settings", "TrainConfig", "Program", "Hyper", "hyper_of",
]

OPTIMIZERS = ("sgd", "momentum", "adam")
MASK_SCHEDULES = ("per-step", "fixed", "course")
INITS = ("he", "lecun", "zeros", "course")
DTYPES = ("float32", "float64")
MAX_ITERATIONS = 2**31 - 1  # the step counter is an int32
MAX_LOGGED = 10**6  # logged iterations (iterations / log_every) a run may record
MIN_KEEP_PROB = 2.0**-16  # masks compare 16 random bits per unit with keep_prob: below this no unit is kept


class Setting(NamedTuple):
    """What jaxreg knows of one setting besides its name, type and default (the dataclass field's)."""

    kind: str  # "static", "traced" or "loop" (see the module's docstring)
    check: Callable  # check(value, checked) -> the value normalised; ``checked``: the fields before it
    help: str  # one sentence or two, for --help and the estimator's docstring
    flag: str  # the command line's flag
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None  # the flag's text -> the value (None: the text itself)
    choices: tuple[str, ...] | None = None
    sklearn: str | None = None  # the estimator's parameter (None: the field's name)
    sklearn_default: Any = dataclasses.MISSING  # where the estimator's default differs
    outer: Callable | None = None  # outer(value the user gives, n_x) -> the field's value (layer_dims)
    outer_default: Any = dataclasses.MISSING  # the default of what the user gives, where there is an outer form
    switch: str | None = None  # traced: the Program flag, on(value) -> bool, naming the part it turns on
    on: Callable | None = None
    resume: str = "same"  # a resumed run must keep it ("same"), may change it with a warning ("warn"), or "free"


def setting(default=dataclasses.MISSING, **declared) -> dataclasses.Field:
    """A :class:`TrainConfig` field with its :class:`Setting`."""
    return dataclasses.field(default=default, metadata={"setting": Setting(**declared)})


def settings(config_class=None) -> dict[str, tuple[dataclasses.Field, Setting]]:
    """Every setting of ``config_class`` (default :class:`TrainConfig`), in declaration order."""
    return {f.name: (f, f.metadata["setting"]) for f in dataclasses.fields(config_class or TrainConfig)}


# ----------------------------------------------------------------------------- checks


def _floats(text: str) -> tuple[float, ...]:
    """``"0.9"`` or ``"0.9,0.6"`` (one value per hidden layer)."""
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"expected a number or comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> tuple[int, ...]:
    """``"20,3"``."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None


def _nonnegative(name):
    return lambda v, _: validate.real(name, v, "a finite number >= 0", lambda x: x >= 0)


def _positive(x: float) -> bool:
    return x > 0


def _iterations(v, _):
    return validate.integer("iterations", v, 0, MAX_ITERATIONS)


def _log_every(v, checked):
    v = validate.integer("log_every", v, 1, MAX_ITERATIONS)
    if checked["iterations"] // v > MAX_LOGGED:
        raise ConfigError("log_every", v, f"at most {MAX_LOGGED} logged iterations (log_every >= "
                          f"{-(-checked['iterations'] // MAX_LOGGED)})",
                          shown=f"{v} for {checked['iterations']} iterations")
    return v


def _early_stopping(v, _):
    return None if v is None else validate.integer("early_stopping", v, 1, MAX_LOGGED)


def _dtype(v, checked):
    """The dtype, and the values that it turns into infinity or 0 (``lambd 1e308`` in float32)
    refused here rather than found as a cost that is NaN from iteration 0."""
    v = validate.choice("dtype", v, DTYPES)
    info = np.finfo(v)
    largest, tiny = float(info.max), float(info.tiny)
    for name in ("lambd", "learning_rate", "weight_decay"):
        value = checked[name]
        if value > largest:
            raise ConfigError(name, value, f"at most {largest:.3g} ({v} overflows above)")
        if 0 < value < tiny:
            zero = "" if name == "learning_rate" else "0 or "
            raise ConfigError(name, value, f"{zero}at least {tiny:.3g} (the smallest normal {v})")
    small = [kp for kp in checked["keep_prob"] if kp < MIN_KEEP_PROB]
    if small:
        raise ConfigError("keep_prob", small[0], f"at least 2**-16 = {MIN_KEEP_PROB:.3g}: masks draw 16 random "
                          "bits per unit, so a smaller keep_prob would keep no unit")
    return v


def _one_of(name, allowed):
    return lambda v, _: validate.choice(name, v, allowed)


# ----------------------------------------------------------------------------- the table


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run, apart from the data and the key; validated on construction
    (every error a :class:`~jaxreg.errors.ConfigError` naming the field). ``keep_prob`` is stored
    as one value per hidden layer."""

    layer_dims: tuple[int, ...] = setting(
        kind="static", check=lambda v, _: validate.layer_dims(v), flag="--layers", metavar="N1,N2,...", parse=_ints,
        help="hidden widths: the network is [n_x, N1, N2, ..., 1]", sklearn="hidden_layer_sizes",
        outer=lambda hidden, n_x: (n_x, *hidden, 1), outer_default=(20, 3))
    lambd: float = setting(
        0.0, kind="traced", check=_nonnegative("lambd"), flag="--lambd", metavar="L", parse=float,
        help="L2 strength: the cost adds lambd/(2m) * sum of squared weights (m: the training examples), which "
        "is scikit-learn's alpha (full batch), Keras l2 = lambd/(2m), PyTorch weight_decay = lambd/m, and "
        "weight_decay = lambd/m under plain SGD only (see jaxreg.convert_l2)")
    keep_prob: tuple[float, ...] = setting(
        (1.0,), kind="traced", check=lambda v, c: validate.keep_prob(v, len(c["layer_dims"]) - 2),
        flag="--keep-prob", metavar="P[,P...]", parse=_floats, switch="dropout", on=lambda v: min(v) < 1,
        sklearn_default=1.0,
        help="probability of KEEPING a hidden unit (inverted dropout; 1: none), one value or one per hidden layer")
    learning_rate: float = setting(
        0.3, kind="traced", check=lambda v, _: validate.real("learning_rate", v, "a finite number > 0", _positive),
        flag="--learning-rate", metavar="LR", parse=float, resume="warn", help="the step size")
    iterations: int = setting(
        30000, kind="loop", check=_iterations, flag="--iterations", metavar="N", parse=int, sklearn_default=2000,
        resume="free", help="the run's total length (full-batch gradient steps)")
    optimizer: str = setting(
        "sgd", kind="static", check=_one_of("optimizer", OPTIMIZERS), flag="--optimizer", choices=OPTIMIZERS,
        help="sgd: plain gradient descent, as the textbook; momentum: heavy ball, 0.9; adam: Adam with optax's "
        "defaults")
    weight_decay: float = setting(
        0.0, kind="traced", check=_nonnegative("weight_decay"), flag="--weight-decay", metavar="D", parse=float,
        switch="decay", on=lambda v: v > 0, help="decoupled weight decay of the weights, apart from lambd")
    init: str = setting(
        "he", kind="static", check=_one_of("init", INITS), flag="--init", choices=INITS,
        help="initial weights: he, normal with variance 2/n_in (for ReLU); lecun, 1/n_in; zeros (every unit alike: "
        "the symmetry problem); course, the textbook's own draw (NumPy, seed 3), to reproduce its numbers")
    masks: str = setting(
        "per-step", kind="static", check=_one_of("masks", MASK_SCHEDULES), flag="--masks", choices=MASK_SCHEDULES,
        help="dropout masks: per-step, new masks every step from the seed (a run's result never depends on how it "
        "was chunked or resumed); fixed, one mask for every step; course, the textbook's masks (NumPy, seed 1), the "
        "same at every step, to reproduce its numbers")
    log_every: int = setting(
        1000, kind="loop", check=_log_every, flag="--log-every", metavar="N", parse=int, sklearn_default=100,
        help="record the cost (and check validation, and report progress) every N iterations")
    dtype: str = setting(
        "float32", kind="static", check=_dtype, flag="--precision", choices=DTYPES, sklearn="precision",
        help="float32 (fast) or float64 (exact; in Python it needs jax_enable_x64)")
    early_stopping: int | None = setting(
        None, kind="static", check=_early_stopping, flag="--early-stopping", metavar="N", parse=int,
        sklearn="n_iter_no_change", sklearn_default=5,
        help="stop after N validation checks (one every log_every iterations) without improvement, and keep the "
        "best check's parameters")

    def __post_init__(self):
        checked: dict = {}
        for name, (_, s) in settings(type(self)).items():
            checked[name] = s.check(getattr(self, name), checked)
            object.__setattr__(self, name, checked[name])  # the dataclass is frozen

    @property
    def dropout(self) -> bool:
        """True when some hidden layer drops units (a keep_prob below 1)."""
        return min(self.keep_prob) < 1

    def replace(self, **changes) -> TrainConfig:
        """A copy with ``changes``, validated again."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict:
        """The settings by name: the JSON report's and the checkpoint's ``config``."""
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- what a program depends on


class _ProgramMethods:
    @classmethod
    def of(cls, config: TrainConfig, split: bool = False):
        """The static part of ``config``: its static settings and the switches of its traced ones."""
        values = {name: getattr(config, name) for name, (_, s) in settings(type(config)).items()
                  if s.kind == "static"}
        switches = {s.switch: s.on(getattr(config, name)) for name, (_, s) in settings(type(config)).items()
                    if s.switch}
        return cls(**values, **switches, split=split)

    def for_init(self):
        """The part initialisation depends on: runs with and without dropout share one init program."""
        return dataclasses.replace(self, dropout=False, masks="per-step", split=False)


def _program_class(config_class) -> type:
    table = settings(config_class)
    fields = [(name, Any) for name, (_, s) in table.items() if s.kind == "static"]
    fields += [(s.switch, bool) for _, s in table.values() if s.switch]
    program = dataclasses.make_dataclass("Program", [*fields, ("split", bool, False)], bases=(_ProgramMethods,),
                                         frozen=True)
    program.__module__ = __name__
    return program


Program = _program_class(TrainConfig)
Program.__doc__ = """What changes the compiled program (hashable): the static settings (``layer_dims``,
``optimizer``, ``init``, ``masks``, ``dtype``, ``early_stopping``), the switches of the traced ones
(``dropout``: some keep_prob < 1; ``decay``: weight_decay > 0) and ``split`` (members train on
weighted examples and are validated on others)."""

Hyper = collections.namedtuple("Hyper", [name for name, (_, s) in settings().items() if s.kind == "traced"])
Hyper.__doc__ = """The traced settings (``lambd``, ``keep_prob (n_hidden,)``, ``learning_rate``,
``weight_decay``) as arrays in the run's dtype: arguments of the compiled step, vmapped over by sweeps."""


def hyper_of(config: TrainConfig) -> Hyper:
    """The traced settings of ``config`` as NumPy arrays in its dtype (no device work)."""
    dtype = np.dtype(config.dtype)
    return Hyper(*(np.asarray(getattr(config, name), dtype) for name in Hyper._fields))
