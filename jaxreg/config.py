"""What defines a training run, as one validated value: :class:`TrainConfig`.

A config is checked when it is made (every message names the field, what it got and
what was expected), so a run never starts from a config that cannot train. This
module imports NumPy only: the command line checks its flags before JAX starts.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from functools import partial

import numpy as np

from jaxreg import validate

__all__ = [
    "OPTIMIZERS", "MASK_SCHEDULES", "INITS", "DTYPES", "MAX_ITERATIONS", "MAX_LOGGED", "TrainConfig", "check_seed",
]

OPTIMIZERS = ("sgd", "momentum", "adam")
MASK_SCHEDULES = ("per-step", "fixed", "course")
INITS = ("he", "lecun", "zeros", "course")
DTYPES = ("float32", "float64")
MAX_ITERATIONS = 2**31 - 1  # the step counter is an int32
MAX_LOGGED = 10**6  # logged iterations (iterations / log_every) a run may record
MIN_KEEP_PROB = 2.0**-16  # masks compare 16 random bits per unit with keep_prob: below this no unit is kept


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run, apart from the data and the key. Validated on
    construction; ``keep_prob`` is stored as one value per hidden layer."""

    layer_dims: tuple[int, ...]  # [n_x, n_1, ..., 1]
    lambd: float = 0.0  # L2 strength: lambd/(2m) * sum ||W_l||^2 in the loss
    keep_prob: tuple[float, ...] = (1.0,)  # probability of keeping a unit: one value, or one per hidden layer
    learning_rate: float = 0.3  # the textbook's
    iterations: int = 30000  # the run's total length, also when resumed
    optimizer: str = "sgd"  # one of OPTIMIZERS; "sgd" is plain gradient descent
    weight_decay: float = 0.0  # decoupled decay of the weights (not biases), apart from lambd
    init: str = "he"  # one of INITS; "course" is reference.init_params (seed 3)
    masks: str = "per-step"  # one of MASK_SCHEDULES
    log_every: int = 1000  # record the cost every log_every iterations, from 0
    dtype: str = "float32"  # "float64" needs jax_enable_x64
    early_stopping: int | None = None  # patience, in validation checks (one every log_every iterations)

    def __post_init__(self):
        set_field = partial(object.__setattr__, self)  # the dataclass is frozen
        dims = validate.layer_dims(self.layer_dims)
        set_field("layer_dims", dims)
        set_field("keep_prob", validate.keep_prob(self.keep_prob, len(dims) - 2))
        set_field("lambd", _real("lambd", self.lambd, "a finite number >= 0", lambda v: v >= 0))
        set_field("learning_rate", _real("learning_rate", self.learning_rate, "a finite number > 0",
                                         lambda v: v > 0))
        set_field("weight_decay", _real("weight_decay", self.weight_decay, "a finite number >= 0",
                                        lambda v: v >= 0))
        set_field("iterations", _integer("iterations", self.iterations, 0, MAX_ITERATIONS))
        set_field("log_every", _integer("log_every", self.log_every, 1, MAX_ITERATIONS))
        for name, allowed in (("optimizer", OPTIMIZERS), ("masks", MASK_SCHEDULES), ("init", INITS),
                              ("dtype", DTYPES)):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name}: got {value!r}, expected one of {', '.join(allowed)}")
        if self.early_stopping is not None:
            set_field("early_stopping", _integer("early_stopping", self.early_stopping, 1, MAX_LOGGED))
        self._check_representable()
        if self.iterations // self.log_every > MAX_LOGGED:
            raise ValueError(
                f"log_every: got {self.log_every} for {self.iterations} iterations, expected at most "
                f"{MAX_LOGGED} logged iterations (log_every >= {-(-self.iterations // MAX_LOGGED)})"
            )

    def _check_representable(self) -> None:
        """Values the run's dtype turns into infinity or 0 (``lambd 1e308`` in float32) are refused
        here, rather than found as a cost that is NaN from iteration 0."""
        info = np.finfo(self.dtype)
        largest, tiny = float(info.max), float(info.tiny)
        for name in ("lambd", "learning_rate", "weight_decay"):
            v = getattr(self, name)
            if v > largest:
                raise ValueError(f"{name}: got {v!r}, expected at most {largest:.3g} ({self.dtype} overflows above)")
            if 0 < v < tiny:
                zero = "" if name == "learning_rate" else "0 or "
                raise ValueError(f"{name}: got {v!r}, expected {zero}at least {tiny:.3g} (the smallest normal "
                                 f"{self.dtype})")
        small = [kp for kp in self.keep_prob if kp < MIN_KEEP_PROB]
        if small:
            raise ValueError(f"keep_prob: got {small[0]!r}, expected at least 2**-16 = {MIN_KEEP_PROB:.3g}: masks "
                             "draw 16 random bits per unit, so a smaller keep_prob would keep no unit")

    @property
    def dropout(self) -> bool:
        """True when some hidden layer drops units (a keep_prob below 1)."""
        return any(kp < 1 for kp in self.keep_prob)

    def replace(self, **changes) -> TrainConfig:
        """A copy with ``changes``, validated again."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def scalar(value):
    """A 0-d array (NumPy's, JAX's: anything with ``__array__`` and shape ``()``) as its NumPy
    scalar; anything else as it is."""
    if not isinstance(value, numbers.Number) and getattr(value, "shape", None) == () and hasattr(value, "__array__"):
        try:
            return np.asarray(value)[()]
        except Exception:  # e.g. a JAX tracer: not a concrete number, refused by the caller
            return value
    return value


def _real(name: str, value, expected: str, ok) -> float:
    """A Python float from a real number (Python, NumPy or JAX scalar, 0-d array; not bool) that is finite and ok."""
    value = scalar(value)
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}: got {value!r}, expected {expected}")
    v = float(value)
    if not math.isfinite(v) or not ok(v):
        raise ValueError(f"{name}: got {value!r}, expected {expected}")
    return v


def _integer(name: str, value, low: int, high: int) -> int:
    """A Python int from an integer (Python, NumPy or JAX scalar; not bool) in [low, high]."""
    value = scalar(value)
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise ValueError(f"{name}: got {value!r}, expected an integer >= {low} and <= {high}")
    return int(value)


def check_seed(seed, name: str = "seed") -> int:
    """A seed: an integer with ``0 <= seed < 2**64`` (``jax.random.key(seed)``'s two words)."""
    seed = scalar(seed)
    if isinstance(seed, bool | np.bool_) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**64:
        raise ValueError(f"{name}: got {seed!r}, expected an integer >= 0 and < 2**64")
    return int(seed)
