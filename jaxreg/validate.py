"""Checks of user input, run once at the boundary, before any tracing.

Each check raises ``ValueError`` (``TypeError`` for a wrong kind of object) whose
message names the argument, what it got and what was expected, and, where the input
looks like scikit-learn's layout (examples as rows), how to fix it (``Y.reshape(1, -1)``,
``Y.T``, ``X.T``). Value checks
(NaN, labels, keep_prob range) run only on concrete values: inside ``jit`` or
``vmap`` the arrays are tracers and only their shapes can be checked.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "is_concrete",
    "layer_dims",
    "keep_prob",
    "lambd",
    "features",
    "labels",
    "features_and_labels",
    "train_and_test",
    "params",
    "key",
]


def is_concrete(x) -> bool:
    """True unless ``x`` (or a leaf of it) is a JAX tracer."""
    jax = sys.modules.get("jax")
    if jax is None:  # no tracer exists before jax is imported (and this module does not import it)
        return True
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def layer_dims(dims) -> tuple[int, ...]:
    """``[n_x, n_1, ..., n_{L-1}, 1]``: at least one hidden layer, positive widths, one output."""
    if isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence | np.ndarray):
        raise TypeError(f"layer_dims: got {type(dims).__name__}, expected a sequence of ints")
    dims = tuple(dims)
    if len(dims) < 3:
        raise ValueError(
            f"layer_dims: got {list(dims)} ({len(dims)} entries), expected at least 3: "
            "[n_x, n_1, ..., 1] with at least one hidden layer"
        )
    if not all(isinstance(d, int | np.integer) and not isinstance(d, bool) for d in dims):
        raise TypeError(f"layer_dims: got {list(dims)}, expected integers")
    if any(d <= 0 for d in dims):
        raise ValueError(f"layer_dims: got {list(dims)}, expected every width to be positive")
    if dims[-1] != 1:
        raise ValueError(
            f"layer_dims: got output width {dims[-1]}, expected 1 (one sigmoid unit)"
        )
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
            raise ValueError(
                f"keep_prob: got shape {value.shape}, expected () or ({n_hidden},) "
                "(one per hidden layer)"
            )
        return tuple(value[i] for i in range(n_hidden))
    try:
        values = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(f"keep_prob: got {value!r}, expected a float or a sequence of floats") from None
    if values.size == 1:
        values = np.repeat(values, n_hidden)
    if values.size != n_hidden:
        raise ValueError(
            f"keep_prob: got {values.size} values, expected 1 or {n_hidden} "
            f"(one per hidden layer)"
        )
    if not np.all((values > 0) & (values <= 1)):
        raise ValueError(
            f"keep_prob: got {values.tolist()}, expected values in (0, 1] "
            "(the probability of keeping a unit; 1 means no dropout)"
        )
    return tuple(float(v) for v in values)


def lambd(value):
    """The L2 strength: a finite number >= 0."""
    if not is_concrete(value):
        return value
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"lambd: got {value!r}, expected a number >= 0") from None
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"lambd: got {v}, expected a finite number >= 0")
    return value


def _shape(x, name: str) -> tuple[int, ...]:
    shape = getattr(x, "shape", None)
    if shape is None:
        raise TypeError(f"{name}: got {type(x).__name__}, expected an array")
    return tuple(shape)


def _real_dtype(a, name: str) -> None:
    """Real numbers only: complex values would lose their imaginary part without a word."""
    dtype = np.dtype(getattr(a, "dtype", np.float64))
    if dtype.kind in "cOSU":
        raise TypeError(f"{name}: got dtype {dtype}, expected real numbers (bool, integer or floating)")


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
        raise ValueError(f"{name}: got shape {shape}, expected (n_x, m) with n_x, m >= 1")
    _real_dtype(X, name)
    if is_concrete(X):
        values = _computed(X)
        bad = ~np.isfinite(values)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            given = np.asarray(X)[i, j]
            why = f": {given:.3g} overflows {values.dtype}, scale the features" if np.isfinite(given) else ""
            raise ValueError(
                f"{name}: got {int(bad.sum())} NaN or infinite values (first at feature {i}, "
                f"example {j}{why}), expected finite numbers"
            )
    return X


def _label_vector_length(shape: tuple[int, ...]) -> int | None:
    """``m`` where ``shape`` is a label vector in another layout: ``(m,)`` or ``(m, 1)`` with m > 1."""
    if len(shape) == 1 and shape[0] >= 1:
        return shape[0]
    if len(shape) == 2 and shape[1] == 1 and shape[0] > 1:
        return shape[0]
    return None


def _label_shape_error(shape: tuple[int, ...], name: str) -> str:
    """The message for labels of a shape other than ``(1, m)``, with the fix where there is one."""
    message = f"{name}: got shape {shape}, expected (1, m)"
    if len(shape) == 1 and shape[0] >= 1:
        return f"{message}: reshape a label vector with {name}.reshape(1, -1)"
    if _label_vector_length(shape) is not None:
        return f"{message}: examples are columns here, pass {name}.T"
    return message


def labels(Y, name: str = "Y"):
    """``Y`` of shape ``(1, m)`` holding only 0 and 1."""
    shape = _shape(Y, name)
    if len(shape) != 2 or shape[0] != 1:
        raise ValueError(_label_shape_error(shape, name))
    _real_dtype(Y, name)
    if is_concrete(Y):
        values = np.asarray(Y)
        bad = (values != 0) & (values != 1)
        if bad.any():
            found = np.unique(values[bad])[:5].tolist()
            raise ValueError(f"{name}: got labels {found}, expected only 0 and 1")
    return Y


def features_and_labels(X, Y, xname: str = "X", yname: str = "Y"):
    """Both of the above, with the same number of examples ``m``.

    Where ``X`` has ``m`` rows but not ``m`` columns (examples as rows, scikit-learn's layout),
    the message says to pass ``X.T``."""
    features(X, xname)
    m = _label_vector_length(_shape(Y, yname))
    if m is not None and _rows_are_examples(X.shape, m):
        raise ValueError(f"{_label_shape_error(tuple(Y.shape), yname)}; and {xname} (shape {tuple(X.shape)}) "
                         f"has its {m} examples as rows: pass {xname}.T too")
    labels(Y, yname)
    if X.shape[1] != Y.shape[1]:
        message = (f"{xname}, {yname}: got {X.shape[1]} and {Y.shape[1]} examples, expected the same m "
                   f"({xname} is (n_x, m), {yname} is (1, m))")
        if _rows_are_examples(X.shape, Y.shape[1]):
            message += f"; {xname} has {Y.shape[1]} rows: examples are columns here: pass {xname}.T"
        raise ValueError(message)
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
            raise ValueError(f"X_test: got {X_test.shape[0]} features, expected {X.shape[0]} as in X")


def params(p, X=None, xname: str = "X") -> tuple[int, ...]:
    """A parameter dict ``{"W1": (n1, n0), "b1": (n1, 1), ...}``, for ``X (n_x, m)`` where given
    (``W1`` then has ``n_x`` columns); returns its layer_dims."""
    if not isinstance(p, Mapping):
        raise TypeError(f"params: got {type(p).__name__}, expected a dict of W1, b1, ...")
    n_layers = sum(1 for k in p if isinstance(k, str) and k.startswith("W"))
    expected = [f"{c}{l}" for l in range(1, n_layers + 1) for c in "Wb"]
    missing = [k for k in expected if k not in p]
    extra = sorted(str(k) for k in p if k not in expected)
    if n_layers < 2:
        raise ValueError(
            f"params: got keys {sorted(map(str, p))}, expected W1, b1, W2, b2, ...: at least one hidden layer"
        )
    if missing or extra:
        raise ValueError(
            f"params: got keys {sorted(map(str, p))}, expected {expected}"
            + (f" (missing {missing})" if missing else "")
            + (f" (unexpected {extra})" if extra else "")
        )
    dims = [_shape(p["W1"], "params['W1']")[-1]]
    for l in range(1, n_layers + 1):
        W = _shape(p[f"W{l}"], f"params['W{l}']")
        b = _shape(p[f"b{l}"], f"params['b{l}']")
        if len(W) != 2 or W[1] != dims[-1]:
            raise ValueError(f"params['W{l}']: got shape {W}, expected ({W[0] if W else 'n'}, {dims[-1]})")
        if b != (W[0], 1):
            raise ValueError(f"params['b{l}']: got shape {b}, expected ({W[0]}, 1)")
        dims.append(W[0])
    if dims[-1] != 1:
        raise ValueError(f"params['W{n_layers}']: got {dims[-1]} output units, expected 1")
    n_x = None if X is None else X.shape[0]
    if n_x is not None and dims[0] != n_x:
        message = (f"params['W1']: got shape {_shape(p['W1'], 'W1')}, expected ({dims[1]}, {n_x}) "
                   f"to match X with n_x = {n_x} features")
        if X.shape[1] == dims[0]:  # X is (m, n_x): transposed
            message += (f"; {xname} (shape {tuple(X.shape)}) has W1's {dims[0]} features as columns: "
                        f"examples are columns here: pass {xname}.T")
        raise ValueError(message)
    for k in expected:
        _real_dtype(p[k], f"params[{k!r}]")
        if is_concrete(p[k]) and hasattr(p[k], "__array__"):
            values = np.asarray(p[k])
            bad = int(np.sum(~np.isfinite(values)))
            if bad:
                raise ValueError(f"params[{k!r}]: got NaN or infinite values ({bad} of {values.size}), expected "
                                 "finite numbers")
    return tuple(dims)


def key(value, name: str = "key"):
    """One PRNG key: a typed ``jax.random.key`` of shape ``()`` or a legacy ``uint32[2]`` PRNGKey."""
    jax = sys.modules.get("jax")
    dtype, shape = getattr(value, "dtype", None), getattr(value, "shape", None)
    typed = jax is not None and dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    if (typed and shape == ()) or (not typed and shape == (2,) and dtype == np.uint32):
        return value
    got = f"a batch of keys of shape {shape}" if typed or (dtype == np.uint32 and shape) else type(value).__name__
    raise TypeError(f"{name}: got {got}, expected one jax.random.key or PRNGKey (uint32[2])")
