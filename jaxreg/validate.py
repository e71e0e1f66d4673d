"""Checks of user input, run once at the boundary, before any tracing.

Each check raises :class:`~jaxreg.errors.ConfigError` (a ``ValueError``; a
:class:`~jaxreg.errors.ConfigTypeError` for a wrong kind of object) carrying the argument's
name, what it got and what was expected, and, where the input looks like scikit-learn's
layout (examples as rows), how to fix it (``Y.reshape(1, -1)``, ``Y.T``, ``X.T``). Value
checks (NaN, labels, keep_prob range) run only on concrete values: inside ``jit`` or
``vmap`` the arrays are tracers and only their shapes can be checked. This module imports
NumPy only: the command line checks its flags with it before JAX starts.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Mapping, Sequence

import numpy as np

from jaxreg.errors import ConfigError, ConfigTypeError

__all__ = [
    "scalar",
    "real",
    "integer",
    "choice",
    "seed",
    "fraction",
    "is_concrete",
    "layer_dims",
    "keep_prob",
    "lambd",
    "features",
    "tiny",
    "labels",
    "features_and_labels",
    "train_and_test",
    "params",
    "key",
]


def scalar(value):
    """A 0-d array (NumPy's, JAX's: anything with ``__array__`` and shape ``()``) as its NumPy
    scalar; anything else as it is."""
    if not isinstance(value, numbers.Number) and getattr(value, "shape", None) == () and hasattr(value, "__array__"):
        try:
            return np.asarray(value)[()]
        except Exception:  # e.g. a JAX tracer: not a concrete number, refused by the caller
            return value
    return value


def _is_bool(value) -> bool:
    return isinstance(value, bool | np.bool_)


def real(name: str, value, expected: str, ok=lambda v: True) -> float:
    """A Python float from a real number (Python, NumPy or JAX scalar, 0-d array; not bool) that
    is finite and ``ok``; else :class:`ConfigError` saying ``expected``."""
    value = scalar(value)
    if _is_bool(value) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) \
            or not ok(float(value)):
        raise ConfigError(name, value, expected)
    return float(value)


def integer(name: str, value, low: int, high: int) -> int:
    """A Python int from an integer (Python, NumPy or JAX scalar; not bool) in ``[low, high]``."""
    value = scalar(value)
    if _is_bool(value) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise ConfigError(name, value, f"an integer >= {low} and <= {high}")
    return int(value)


def choice(name: str, value, allowed: Sequence[str]) -> str:
    """One of ``allowed``."""
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(name, value, f"one of {', '.join(allowed)}")
    return value


def seed(value, name: str = "seed") -> int:
    """A seed: an integer with ``0 <= seed < 2**64`` (``jax.random.key(seed)``'s two words)."""
    value = scalar(value)
    if _is_bool(value) or not isinstance(value, numbers.Integral) or not 0 <= value < 2**64:
        raise ConfigError(name, value, "an integer >= 0 and < 2**64")
    return int(value)


def fraction(value, name: str = "validation_split") -> float:
    """A fraction in (0, 1), e.g. of the examples held out."""
    if _is_bool(value) or not isinstance(value, int | float | np.floating) or not 0 < value < 1:
        raise ConfigError(name, value, "a fraction in (0, 1)")
    return float(value)


def is_concrete(x) -> bool:
    """True unless ``x`` (or a leaf of it) is a JAX tracer."""
    jax = sys.modules.get("jax")
    if jax is None:  # no tracer exists before jax is imported (and this module does not import it)
        return True
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def layer_dims(dims) -> tuple[int, ...]:
    """``[n_x, n_1, ..., n_{L-1}, 1]``: at least one hidden layer, positive widths, one output."""
    if isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence | np.ndarray):
        raise ConfigTypeError("layer_dims", dims, "a sequence of ints", shown=type(dims).__name__)
    dims = tuple(dims)
    if len(dims) < 3:
        raise ConfigError("layer_dims", dims, "at least 3: [n_x, n_1, ..., 1] with at least one hidden layer",
                          shown=f"{list(dims)} ({len(dims)} entries)")
    if not all(isinstance(d, int | np.integer) and not isinstance(d, bool) for d in dims):
        raise ConfigTypeError("layer_dims", dims, "integers", shown=str(list(dims)))
    if any(d <= 0 for d in dims):
        raise ConfigError("layer_dims", dims, "every width to be positive", shown=str(list(dims)))
    if dims[-1] != 1:
        raise ConfigError("layer_dims", dims, "1 (one sigmoid unit)", shown=f"output width {dims[-1]}")
    return tuple(int(d) for d in dims)


def keep_prob(value, n_hidden: int):
    """One keep probability per hidden layer, each in (0, 1].

    Returns a tuple of ``n_hidden`` floats; a traced value (inside ``vmap``) is
    returned as a tuple of scalars without value checks."""
    if not is_concrete(value):
        value = sys.modules["jax"].numpy.asarray(value)
        if value.ndim == 0:
            return (value,) * n_hidden
        if value.shape != (n_hidden,):
            raise ConfigError("keep_prob", value, f"() or ({n_hidden},) (one per hidden layer)",
                              shown=f"shape {value.shape}")
        return tuple(value[i] for i in range(n_hidden))
    try:
        values = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ConfigTypeError("keep_prob", value, "a float or a sequence of floats") from None
    if values.size == 1:
        values = np.repeat(values, n_hidden)
    if values.size != n_hidden:
        raise ConfigError("keep_prob", value, f"1 or {n_hidden} (one per hidden layer)",
                          shown=f"{values.size} values")
    if not np.all((values > 0) & (values <= 1)):
        raise ConfigError("keep_prob", value, "values in (0, 1] (the probability of keeping a unit; 1 means no "
                          "dropout)", shown=str(values.tolist()))
    return tuple(float(v) for v in values)


def lambd(value):
    """The L2 strength: a finite number >= 0."""
    if not is_concrete(value):
        return value
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigTypeError("lambd", value, "a number >= 0") from None
    if not np.isfinite(v) or v < 0:
        raise ConfigError("lambd", value, "a finite number >= 0", shown=str(v))
    return value


def _shape(x, name: str) -> tuple[int, ...]:
    shape = getattr(x, "shape", None)
    if shape is None:
        raise ConfigTypeError(name, x, "an array", shown=type(x).__name__)
    return tuple(shape)


def _real_dtype(a, name: str) -> None:
    """Real numbers only: complex values would lose their imaginary part without a word."""
    dtype = np.dtype(getattr(a, "dtype", np.float64))
    if dtype.kind in "cOSU":
        raise ConfigTypeError(name, dtype, "real numbers (bool, integer or floating)", shown=f"dtype {dtype}")


def _computed(a) -> np.ndarray:
    """The host values of ``a`` as JAX will compute with them: float64 NumPy input becomes float32
    when jax_enable_x64 is off, and values beyond float32's range become infinite."""
    a = np.asarray(a)
    jax = sys.modules.get("jax")
    if jax is not None and a.dtype.kind == "f":
        with np.errstate(over="ignore"):
            a = a.astype(jax.dtypes.canonicalize_dtype(a.dtype))
    return a


def features(X, name: str = "X"):
    """``X`` of shape ``(n_x, m)``, real, finite in the precision JAX computes it in."""
    shape = _shape(X, name)
    if len(shape) != 2 or 0 in shape:
        raise ConfigError(name, shape, "(n_x, m) with n_x, m >= 1", shown=f"shape {shape}")
    _real_dtype(X, name)
    if is_concrete(X):
        values = _computed(X)
        bad = ~np.isfinite(values)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            given = np.asarray(X)[i, j]
            why = f": {given:.3g} overflows {values.dtype}, scale the features" if np.isfinite(given) else ""
            raise ConfigError(name, X, "finite numbers", shown=f"{int(bad.sum())} NaN or infinite values (first at "
                              f"feature {i}, example {j}{why})")
    return X


def tiny(X, dtype: str) -> int:
    """How many nonzero values of ``X`` lie below ``dtype``'s smallest normal number (they lose
    precision there, and below its smallest subnormal become 0)."""
    a = np.abs(np.asarray(X, np.float64))
    return int(np.sum((a > 0) & (a < np.finfo(dtype).tiny)))


def _label_vector_length(shape: tuple[int, ...]) -> int | None:
    """``m`` where ``shape`` is a label vector in another layout: ``(m,)`` or ``(m, 1)`` with m > 1."""
    if len(shape) == 1 and shape[0] >= 1:
        return shape[0]
    if len(shape) == 2 and shape[1] == 1 and shape[0] > 1:
        return shape[0]
    return None


def _label_shape_error(shape: tuple[int, ...], name: str, more: str = "") -> ConfigError:
    """The error for labels of a shape other than ``(1, m)``, with the fix where there is one."""
    expected = "(1, m)"
    if len(shape) == 1 and shape[0] >= 1:
        expected += f": reshape a label vector with {name}.reshape(1, -1)"
    elif _label_vector_length(shape) is not None:
        expected += f": examples are columns here, pass {name}.T"
    return ConfigError(name, shape, expected + more, shown=f"shape {shape}")


def labels(Y, name: str = "Y"):
    """``Y`` of shape ``(1, m)`` holding only 0 and 1."""
    shape = _shape(Y, name)
    if len(shape) != 2 or shape[0] != 1:
        raise _label_shape_error(shape, name)
    _real_dtype(Y, name)
    if is_concrete(Y):
        values = np.asarray(Y)
        bad = (values != 0) & (values != 1)
        if bad.any():
            found = np.unique(values[bad])[:5].tolist()
            raise ConfigError(name, found, "only 0 and 1", shown=f"labels {found}")
    return Y


def features_and_labels(X, Y, xname: str = "X", yname: str = "Y"):
    """Both of the above, with the same number of examples ``m``.

    Where ``X`` has ``m`` rows but not ``m`` columns (examples as rows, scikit-learn's layout),
    the message says to pass ``X.T``."""
    features(X, xname)
    m = _label_vector_length(_shape(Y, yname))
    if m is not None and _rows_are_examples(X.shape, m):
        raise _label_shape_error(tuple(Y.shape), yname, f"; and {xname} (shape {tuple(X.shape)}) has its {m} "
                                 f"examples as rows: pass {xname}.T too")
    labels(Y, yname)
    if X.shape[1] != Y.shape[1]:
        expected = f"the same m ({xname} is (n_x, m), {yname} is (1, m))"
        if _rows_are_examples(X.shape, Y.shape[1]):
            expected += f"; {xname} has {Y.shape[1]} rows: examples are columns here: pass {xname}.T"
        raise ConfigError(f"{xname}, {yname}", (X.shape[1], Y.shape[1]), expected,
                          shown=f"{X.shape[1]} and {Y.shape[1]} examples")
    return X, Y


def _rows_are_examples(x_shape: tuple[int, ...], m: int) -> bool:
    """True where X of ``x_shape`` looks like ``(m, n_x)``: ``m`` rows, and not ``m`` columns."""
    return x_shape[0] == m and x_shape[1] != m


def train_and_test(X, Y, X_test=None, Y_test=None):
    """A training set and an optional test set with the same number of features."""
    features_and_labels(X, Y)
    if X_test is not None or Y_test is not None:
        features_and_labels(X_test, Y_test, "X_test", "Y_test")
        if X_test.shape[0] != X.shape[0]:
            raise ConfigError("X_test", X_test.shape[0], f"{X.shape[0]} as in X", shown=f"{X_test.shape[0]} features")


def params(p, X=None, xname: str = "X") -> tuple[int, ...]:
    """A parameter dict ``{"W1": (n1, n0), "b1": (n1, 1), ...}``, for ``X (n_x, m)`` where given
    (``W1`` then has ``n_x`` columns); returns its layer_dims."""
    if not isinstance(p, Mapping):
        raise ConfigTypeError("params", p, "a dict of W1, b1, ...", shown=type(p).__name__)
    n_layers = sum(1 for k in p if isinstance(k, str) and k.startswith("W"))
    expected = [f"{c}{l}" for l in range(1, n_layers + 1) for c in "Wb"]
    missing = [k for k in expected if k not in p]
    extra = sorted(str(k) for k in p if k not in expected)
    if n_layers < 2:
        raise ConfigError("params", p, "W1, b1, W2, b2, ...: at least one hidden layer",
                          shown=f"keys {sorted(map(str, p))}")
    if missing or extra:
        raise ConfigError("params", p, f"{expected}" + (f" (missing {missing})" if missing else "")
                          + (f" (unexpected {extra})" if extra else ""), shown=f"keys {sorted(map(str, p))}")
    dims = [_shape(p["W1"], "params['W1']")[-1]]
    for l in range(1, n_layers + 1):
        W = _shape(p[f"W{l}"], f"params['W{l}']")
        b = _shape(p[f"b{l}"], f"params['b{l}']")
        if len(W) != 2 or W[1] != dims[-1]:
            raise ConfigError(f"params['W{l}']", W, f"({W[0] if W else 'n'}, {dims[-1]})", shown=f"shape {W}")
        if b != (W[0], 1):
            raise ConfigError(f"params['b{l}']", b, f"({W[0]}, 1)", shown=f"shape {b}")
        dims.append(W[0])
    if dims[-1] != 1:
        raise ConfigError(f"params['W{n_layers}']", dims[-1], "1", shown=f"{dims[-1]} output units")
    n_x = None if X is None else X.shape[0]
    if n_x is not None and dims[0] != n_x:
        expected = f"({dims[1]}, {n_x}) to match X with n_x = {n_x} features"
        if X.shape[1] == dims[0]:  # X is (m, n_x): transposed
            expected += (f"; {xname} (shape {tuple(X.shape)}) has W1's {dims[0]} features as columns: "
                         f"examples are columns here: pass {xname}.T")
        raise ConfigError("params['W1']", _shape(p["W1"], "W1"), expected, shown=f"shape {_shape(p['W1'], 'W1')}")
    for k in expected:
        _real_dtype(p[k], f"params[{k!r}]")
        if is_concrete(p[k]) and hasattr(p[k], "__array__"):
            values = np.asarray(p[k])
            bad = int(np.sum(~np.isfinite(values)))
            if bad:
                raise ConfigError(f"params[{k!r}]", bad, "finite numbers",
                                  shown=f"NaN or infinite values ({bad} of {values.size})")
    return tuple(dims)


def key(value, name: str = "key"):
    """One PRNG key: a typed ``jax.random.key`` of shape ``()`` or a legacy ``uint32[2]`` PRNGKey."""
    jax = sys.modules.get("jax")
    dtype, shape = getattr(value, "dtype", None), getattr(value, "shape", None)
    typed = jax is not None and dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    if (typed and shape == ()) or (not typed and shape == (2,) and dtype == np.uint32):
        return value
    got = f"a batch of keys of shape {shape}" if typed or (dtype == np.uint32 and shape) else type(value).__name__
    raise ConfigTypeError(name, value, "one jax.random.key or PRNGKey (uint32[2])", shown=got)
