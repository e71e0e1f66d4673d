"""Forward mode vs reverse mode vs finite differences along random directions, as
``jax.test_util.check_grads`` does, for any function of a pytree.

For ``f(params, *args, **kwargs)`` returning a pytree of float arrays, each of the
``directions`` checks draws a tangent ``v`` (shaped like ``params``) and a cotangent ``c``
(shaped like the output), both of norm 1, and computes one number three ways::

    forward   <c, jvp(f)(v)>                                (jax.jvp)
    reverse   <vjp(f)(c), v>                                (jax.vjp)
    finite    <c, (f(params + e v) - f(params - e v))> / (2 e)

Forward and reverse mode must agree to rounding (``AD_TOLERANCE``), and each of them with
the finite difference to ``FD_TOLERANCE`` (``check_grads``' defaults), both keyed by dtype,
as ``|a - b| <= tol (1 + |b|)`` (``check_grads``' ``atol = rtol``). ``order=2`` also checks
the derivatives of ``jvp(f)`` and of ``vjp(f)`` (along a fixed tangent and cotangent), as
``check_grads`` recurses. The check runs in the parameters' own dtype: that is what the
tolerances are keyed by.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg.gradcheck.core import DEFAULT_KEY
from jaxreg.gradcheck.flat import dtype_of

__all__ = ["EPS", "FD_TOLERANCE", "AD_TOLERANCE", "DirectionEntry", "DirectionsReport", "check_directions"]

EPS = 1e-4  # check_grads' finite-difference step
# Finite differences vs autodiff: jax's default_gradient_tolerance.
FD_TOLERANCE = {
    np.dtype(jnp.bfloat16): 1e-1,
    np.dtype(np.float16): 1e-2,
    np.dtype(np.float32): 2e-3,
    np.dtype(np.float64): 1e-5,
}
# Forward vs reverse mode: the same derivative summed in two orders, so rounding apart
# (a few hundred machine epsilons for unit directions).
AD_TOLERANCE = {
    np.dtype(jnp.bfloat16): 1e-1,
    np.dtype(np.float16): 1e-2,
    np.dtype(np.float32): 1e-4,
    np.dtype(np.float64): 1e-12,
}


class DirectionEntry(NamedTuple):
    """One direction's three values and the verdicts on them (True where a mode is not checked)."""

    function: str  # "f", "jvp of f" or "vjp of f"
    k: int  # the direction's number
    forward: float  # <c, jvp(f)(v)> (NaN where forward mode is not checked)
    reverse: float  # <vjp(f)(c), v> (NaN where reverse mode is not checked)
    finite: float  # <c, finite difference of f along v>
    modes_agree: bool  # forward vs reverse, within the AD tolerance
    forward_agrees: bool  # forward vs the finite difference, within the FD tolerance
    reverse_agrees: bool  # reverse vs the finite difference, within the FD tolerance

    @property
    def passed(self) -> bool:
        return self.modes_agree and self.forward_agrees and self.reverse_agrees


class DirectionsReport(NamedTuple):
    """The outcome of :func:`check_directions`: ``passed`` when every entry agrees."""

    passed: bool
    order: int
    modes: tuple[str, ...]
    dtype: str  # the least precise float dtype of the parameters and outputs
    eps: float
    fd_tolerance: float
    ad_tolerance: float
    entries: tuple[DirectionEntry, ...]

    def summary(self) -> str:
        """One line per direction, then the verdict."""
        lines = [
            f"{' vs '.join(MODES[m] for m in self.modes)} vs finite differences, order {self.order}, {self.dtype}, "
            f"eps {self.eps:g}; tolerances: modes {self.ad_tolerance:g}, finite differences {self.fd_tolerance:g}",
            f"{'function':<14}{'k':>3}{'forward':>20}{'reverse':>20}{'finite':>20}",
        ]
        for e in self.entries:
            marks = [word for ok, word in ((e.modes_agree, "modes disagree"), (e.forward_agrees, "forward != finite"),
                                           (e.reverse_agrees, "reverse != finite")) if not ok]
            lines.append(
                f"{e.function:<14}{e.k:>3}{e.forward:>20.10e}{e.reverse:>20.10e}{e.finite:>20.10e}"
                + (f"  <-- {', '.join(marks)}" if marks else "")
            )
        lines.append("PASSED" if self.passed else "FAILED")
        return "\n".join(lines)


MODES = {"fwd": "forward mode (jax.jvp)", "rev": "reverse mode (jax.vjp)"}


def _unit_like(key, tree):
    """A Gaussian pytree like ``tree`` (each leaf its dtype) of global norm 1."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(key, len(leaves))
    drawn = [jax.random.normal(k, jnp.shape(x), dtype_of(x)) for k, x in zip(keys, leaves, strict=True)]
    # The norm in at least float32: a float16 sum of squares loses too much.
    norm = jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.promote_types(x.dtype, jnp.float32)))) for x in drawn))
    return jax.tree_util.tree_unflatten(treedef, [x / norm.astype(x.dtype) for x in drawn])


def _inner(a, b):
    """``<a, b>`` over two pytrees of the same structure."""
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True))


def _three_ways(fn, params, key, eps, modes):
    """``(forward, reverse, finite)`` along one random tangent/cotangent pair (NaN: mode not checked)."""
    key_v, key_c = jax.random.split(key)
    v = _unit_like(key_v, params)
    c = _unit_like(key_c, jax.eval_shape(fn, params))
    nan = jnp.full((), jnp.nan, jnp.float32)
    forward = _inner(c, jax.jvp(fn, (params,), (v,))[1]) if "fwd" in modes else nan
    reverse = _inner(jax.vjp(fn, params)[1](c)[0], v) if "rev" in modes else nan
    plus = fn(jax.tree_util.tree_map(lambda p, t: p + eps * t, params, v))
    minus = fn(jax.tree_util.tree_map(lambda p, t: p - eps * t, params, v))
    finite = _inner(c, jax.tree_util.tree_map(lambda a, b: (a - b) / (2 * eps), plus, minus))
    return forward, reverse, finite


_DERIVATIVES = (("fwd", "jvp"), ("rev", "vjp"))  # order 2: the derivative each mode checks, as named


def _labels(order: int, modes, label: str = "f") -> list[str]:
    """What :func:`_functions` returns, in words."""
    out = [label]
    if order > 1:
        for mode, word in _DERIVATIVES:
            out += _labels(order - 1, modes, f"{word} of {label}") if mode in modes else []
    return out


def _functions(fn, params, order: int, key, modes) -> list[Callable]:
    """``[fn]`` and, for ``order`` 2, the jvp and vjp of ``fn`` (as functions of the parameters,
    along a fixed tangent and cotangent) for each mode checked."""
    out = [fn]
    if order > 1:
        key_v, key_c = jax.random.split(jax.random.fold_in(key, 2**20))
        v0 = _unit_like(key_v, params)
        c0 = _unit_like(key_c, jax.eval_shape(fn, params))
        derivatives = {
            "fwd": lambda p: jax.jvp(fn, (p,), (v0,))[1],
            "rev": lambda p: jax.vjp(fn, p)[1](c0)[0],
        }
        for i, (mode, _) in enumerate(_DERIVATIVES, start=1):
            if mode in modes:
                out += _functions(derivatives[mode], params, order - 1, jax.random.fold_in(key, i), modes)
    return out


def check_directions(
    f: Callable,
    params,
    *args,
    order: int = 1,
    modes: tuple[str, ...] = ("fwd", "rev"),
    directions: int = 4,
    key=None,
    eps: float = EPS,
    fd_tolerance: float | None = None,
    ad_tolerance: float | None = None,
    **kwargs,
) -> DirectionsReport:
    """Check ``jax.jvp`` vs ``jax.vjp`` vs finite differences of ``f(params, *args, **kwargs)``
    along ``directions`` random directions (``key``, default ``PRNGKey(0)``), derivatives of
    order 1 or 2. ``params``: a pytree of float arrays; ``f`` returns a pytree of float
    arrays. ``modes``: ``"fwd"`` and/or ``"rev"`` (a ``jax.custom_vjp`` function has no
    forward mode). Tolerances default by dtype (``FD_TOLERANCE``, ``AD_TOLERANCE``)."""
    if order not in (1, 2):
        raise ValueError(f"order: got {order!r}, expected 1 or 2")
    if not modes or not set(modes) <= set(MODES):
        raise ValueError(f"modes: got {modes!r}, expected one or both of {tuple(MODES)}")
    if isinstance(directions, bool) or not isinstance(directions, int) or directions < 1:
        raise ValueError(f"directions: got {directions!r}, expected an integer >= 1")
    if not (isinstance(eps, int | float) and np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps: got {eps!r}, expected a finite number > 0")

    def fn(p):
        return f(p, *args, **kwargs)

    leaves = jax.tree_util.tree_leaves(params) + jax.tree_util.tree_leaves(jax.eval_shape(fn, params))
    dtypes = [dtype_of(x) for x in leaves]
    bad = sorted({str(d) for d in dtypes if d not in FD_TOLERANCE})
    if bad:
        raise TypeError(f"f, params: got dtypes {bad}, expected {', '.join(map(str, FD_TOLERANCE))}")
    dtype = max(dtypes, key=lambda d: float(jnp.finfo(d).eps))
    fd_tol = FD_TOLERANCE[dtype] if fd_tolerance is None else float(fd_tolerance)
    ad_tol = AD_TOLERANCE[dtype] if ad_tolerance is None else float(ad_tolerance)

    @jax.jit
    def run(params, key):
        def along(g, i):
            return jax.vmap(lambda k: _three_ways(g, params, jax.random.fold_in(key, i * directions + k), eps, modes))

        return [along(g, i)(jnp.arange(directions)) for i, g in enumerate(_functions(fn, params, order, key, modes))]

    entries = []
    for label, values in zip(_labels(order, modes), run(params, DEFAULT_KEY if key is None else key), strict=True):
        for k, (fwd, rev, finite) in enumerate(zip(*(np.asarray(v, np.float64) for v in values), strict=True)):
            entries.append(DirectionEntry(
                label, k, float(fwd), float(rev), float(finite),
                modes_agree=_close(fwd, rev, ad_tol, "fwd" in modes and "rev" in modes),
                forward_agrees=_close(fwd, finite, fd_tol, "fwd" in modes),
                reverse_agrees=_close(rev, finite, fd_tol, "rev" in modes),
            ))  # fmt: skip
    return DirectionsReport(
        passed=all(e.passed for e in entries), order=order, modes=tuple(modes), dtype=str(dtype), eps=float(eps),
        fd_tolerance=fd_tol, ad_tolerance=ad_tol, entries=tuple(entries),
    )  # fmt: skip


def _close(a: float, b: float, tol: float, checked: bool = True) -> bool:
    """``check_grads``' test, ``|a - b| <= atol + rtol |b|`` with ``atol = rtol = tol``; NaN is
    never close. True where the comparison is not ``checked``."""
    return not checked or bool(abs(a - b) <= tol * (1 + abs(b)))
