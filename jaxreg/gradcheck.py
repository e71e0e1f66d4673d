"""Gradient checking: two-sided finite differences against any gradient.

The textbook's check, generalised. The parameters are flattened into one vector
``theta`` (``jax.flatten_util.ravel_pytree``; parameter dicts keyed ``W<l>``/``b<l>``
in the textbook's order W1, b1, W2, b2, ..., other pytrees in their own order),
each coordinate is moved by ``+-epsilon`` and

    approx_i = (J(theta + epsilon e_i) - J(theta - epsilon e_i)) / (2 epsilon),
    difference = ||g - approx||_2 / (||g||_2 + ||approx||_2),

overall and per parameter array. All ``2P`` perturbed losses are evaluated in one
compiled call (``jax.lax.map`` over ``vmap``-ed batches), not in a Python loop.
With ``directions=K`` the check runs along ``K`` random unit directions ``v`` per
parameter array instead (``(J(theta + epsilon v) - J(theta - epsilon v)) / (2 epsilon)``
against ``<g, v>``), which costs ``2 K`` losses per array rather than ``2P``.

* :func:`check` takes any scalar loss of a pytree of parameters and checks
  ``jax.grad(loss_fn)`` or gradients you pass (keyed like ``params`` or like the
  textbook's ``dW1``).
* :func:`check_network` is the three-way check of jaxreg's network: finite
  differences vs ``jax.grad(jaxreg.loss)`` vs a NumPy backprop
  (:func:`jaxreg.reference.backward` by default), with L2 and with dropout on: the
  masks come from ``key`` (or ``masks``) and stay fixed, so the masked loss is a
  deterministic function of ``theta``. It also flags perturbations that straddle a
  ReLU kink.

Precision: with ``epsilon = 1e-7`` finite differences are meaningless in float32
(float32 rounds the loss to about 6e-8 of its value; that error divided by
``2 epsilon`` is as large as the gradient itself). Every check therefore runs with
float64 enabled (``jax.enable_x64(True)``, whatever the global setting) on the
parameters cast to float64; a loss that still returns less than float64, or
gradients given in float32, are refused with a message that says why.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxreg import model, reference, validate

__all__ = ["Entry", "Report", "NetworkReport", "relative_difference", "check", "check_network"]

EPSILON = 1e-7  # the textbook's step
THRESHOLD = 2e-7  # the textbook's verdict: a difference above this means a bug
TOP_K = 5  # how many of the largest differences a report lists
_BATCH_ELEMENTS = 2**22  # perturbed parameter vectors held at once: batch * P <= this (32 MiB of float64)
_LAYER_KEY = re.compile(r"[Wb]([1-9][0-9]*)")
# What JAX raises when a loss cannot be traced (NumPy code, Python control flow on values).
_UNTRACEABLE = (
    jax.errors.TracerArrayConversionError,
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
)


class Entry(NamedTuple):
    """One compared value: ``name[index]`` (a coordinate of that array; in directional
    mode ``index`` is ``(k,)``, the k-th random direction within the array)."""

    name: str
    index: tuple[int, ...]
    grad: float  # the checked gradient (directional mode: <g, v>)
    approx: float  # the finite difference (or, in "exact" mode, the other gradient)
    error: float  # |grad - approx|
    kink: bool  # the +-epsilon perturbation straddles a ReLU kink (network checks only)


class Report(NamedTuple):
    """The outcome of comparing a gradient with finite differences (or with another gradient).

    ``difference`` and ``per_param`` use the textbook's ratio
    ``||g - approx|| / (||g|| + ||approx||)`` (0 where both are zero). ``passed`` is the
    textbook's verdict: the overall difference is at most ``threshold``. ``offenders`` are
    the arrays whose own difference exceeds ``threshold`` (or is NaN): on a failed check
    they say where the bug is. On a passed check an array may still exceed the threshold
    on its own when its gradient is small next to the finite-difference noise (the verdict
    stays the textbook's, which such noise does not fail)."""

    difference: float
    passed: bool
    per_param: dict[str, float]  # array name -> difference over that array, parameter order
    offenders: tuple[str, ...]  # names with per_param > threshold, parameter order
    worst: tuple[Entry, ...]  # the top_k values by |grad - approx|, largest first
    kinks: tuple[tuple[str, tuple[int, ...]], ...]  # (name, index) of perturbations across a ReLU kink
    threshold: float
    epsilon: float | None  # None in "exact" mode
    mode: str  # "coordinates", "directions" or "exact" (two gradients compared directly)
    compared: str  # what was compared with what, in words
    n_losses: int  # perturbed losses evaluated
    vectorised: bool  # False when the loss was not traceable and ran in a Python loop
    names: tuple[str, ...]  # the arrays, parameter order
    grad: np.ndarray  # (n,) the checked values, parameter order
    approx: np.ndarray  # (n,) the values they were checked against

    def to_dict(self) -> dict:
        """JSON-ready summary (NaN becomes None)."""
        return {
            "compared": self.compared,
            "mode": self.mode,
            "passed": self.passed,
            "difference": _json_float(self.difference),
            "threshold": self.threshold,
            "epsilon": self.epsilon,
            "per_param": {k: _json_float(v) for k, v in self.per_param.items()},
            "offenders": list(self.offenders),
            "worst": [
                {
                    "name": e.name,
                    "index": list(e.index),
                    "grad": _json_float(e.grad),
                    "approx": _json_float(e.approx),
                    "error": _json_float(e.error),
                    "kink": e.kink,
                }
                for e in self.worst
            ],
            "kinks": [[name, list(index)] for name, index in self.kinks],
            "n_losses": self.n_losses,
        }

    def summary(self) -> str:
        """A readable multi-line report."""
        eps = "" if self.epsilon is None else f", epsilon {self.epsilon:g}, {self.n_losses} losses"
        lines = [
            f"{self.compared} ({self.mode}{eps}): difference {self.difference:.3e} "
            f"(threshold {self.threshold:g}): {'passed' if self.passed else 'FAILED'}"
        ]
        lines += [
            f"  {name:<12} {value:.3e}{_MARK if name in self.offenders else ''}"
            for name, value in self.per_param.items()
        ]
        if not self.passed:
            lines.append("  largest differences:")
            lines += [f"    {_entry_text(e, self.mode)}" for e in self.worst]
        lines += _offender_note(self.passed, self.offenders)
        if self.kinks:
            lines.append(_kinks_text(self.kinks))
        return "\n".join(lines)


class NetworkReport(NamedTuple):
    """The three-way check of the network. ``difference``, ``per_param`` and
    ``offenders`` are the worst over the three comparisons; ``passed`` needs all three."""

    difference: float
    passed: bool
    per_param: dict[str, float]
    offenders: tuple[str, ...]
    fd_vs_autodiff: Report  # finite differences vs jax.grad(jaxreg.loss)
    fd_vs_backward: Report  # finite differences vs the NumPy backprop
    autodiff_vs_backward: Report  # jax.grad vs the NumPy backprop, coordinate by coordinate
    kinks: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def reports(self) -> dict[str, Report]:
        return {
            "fd_vs_autodiff": self.fd_vs_autodiff,
            "fd_vs_backward": self.fd_vs_backward,
            "autodiff_vs_backward": self.autodiff_vs_backward,
        }

    def to_dict(self) -> dict:
        """JSON-ready summary: the verdict, the worst differences and each comparison."""
        return {
            "passed": self.passed,
            "difference": _json_float(self.difference),
            "per_param": {k: _json_float(v) for k, v in self.per_param.items()},
            "offenders": list(self.offenders),
            "kinks": [[name, list(index)] for name, index in self.kinks],
            "comparisons": {k: r.to_dict() for k, r in self.reports.items()},
        }

    def summary(self) -> str:
        """A readable table: one row per parameter array, one column per comparison."""
        fd = self.fd_vs_backward
        head = f"mode {fd.mode}, epsilon {fd.epsilon:g}, threshold {fd.threshold:g}, {fd.n_losses} losses"
        cols = ("finite diff", "finite diff", "jax.grad")
        sub = ("vs jax.grad", "vs backward", "vs backward")
        lines = [
            head,
            f"{'':<10}" + "".join(f"{c:>14}" for c in cols),
            f"{'':<10}" + "".join(f"{c:>14}" for c in sub),
        ]
        for name in self.per_param:
            row = "".join(f"{r.per_param[name]:>14.3e}" for r in self.reports.values())
            lines.append(f"{name:<10}{row}{_MARK if name in self.offenders else ''}")
        lines.append(f"{'overall':<10}" + "".join(f"{r.difference:>14.3e}" for r in self.reports.values()))
        for label, r in self.reports.items():
            if not r.passed:
                lines.append(f"largest differences, {label.replace('_', ' ')}:")
                lines += [f"  {_entry_text(e, r.mode)}" for e in r.worst]
        lines += _offender_note(self.passed, self.offenders)
        if self.kinks:
            lines.append(_kinks_text(self.kinks))
        if self.passed:
            lines.append(f"PASSED: difference {self.difference:.3e} <= {fd.threshold:g}")
        else:
            lines.append(f"FAILED: difference {self.difference:.3e}; offenders: {', '.join(self.offenders)}")
        return "\n".join(lines)


_MARK = "  <-- above threshold"


def _offender_note(report_passed: bool, offenders) -> list[str]:
    if not (report_passed and offenders):
        return []
    return [
        f"  note: {', '.join(offenders)} above the threshold on their own: small gradients next to "
        "finite-difference noise (the overall difference passes)"
    ]


def _json_float(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _entry_text(e: Entry, mode: str) -> str:
    if mode == "directions":
        where, labels = f"{e.name} direction {e.index[0]}", ("<g, v>", "approx")
    else:
        where, labels = (
            f"{e.name}[{', '.join(map(str, e.index))}]",
            ("grad", "approx" if mode != "exact" else "other"),
        )
    return f"{where:<18} {labels[0]} {e.grad: .10e}  {labels[1]} {e.approx: .10e}  |error| {e.error:.3e}" + (
        "  (across a ReLU kink)" if e.kink else ""
    )


def _kinks_text(kinks) -> str:
    shown = ", ".join(f"{n}[{', '.join(map(str, i))}]" for n, i in kinks[:8])
    more = f" and {len(kinks) - 8} more" if len(kinks) > 8 else ""
    return (
        f"  note: {len(kinks)} perturbation(s) straddle a ReLU kink, where finite differences "
        f"can disagree with an honest gradient: {shown}{more}"
    )


def relative_difference(g, approx) -> float:
    """The textbook's ``||g - approx||_2 / (||g||_2 + ||approx||_2)``; 0 when both are zero."""
    g, approx = np.asarray(g, np.float64).ravel(), np.asarray(approx, np.float64).ravel()
    numerator = np.linalg.norm(g - approx)
    denominator = np.linalg.norm(g) + np.linalg.norm(approx)
    if denominator == 0:
        return 0.0  # both gradients are exactly zero: they agree
    return float(numerator / denominator)


# ---------------------------------------------------------------------------------------------------
# Flattening in the textbook's order


class _Unravel(NamedTuple):
    """``(P,) -> `` a pytree like params. Hashable (a static argument of the compiled sweep),
    so checks of parameters of the same shapes reuse one compilation."""

    treedef: Any
    order: tuple[int, ...]  # check position -> pytree leaf position
    shapes: tuple[tuple[int, ...], ...]  # check order

    def __call__(self, flat):
        arrays, start = [], 0
        for shape in self.shapes:
            size = math.prod(shape)
            arrays.append(jnp.reshape(flat[start : start + size], shape))
            start += size
        back = [None] * len(arrays)
        for position, i in enumerate(self.order):
            back[i] = arrays[position]
        return jax.tree_util.tree_unflatten(self.treedef, back)


class _Flat(NamedTuple):
    theta: jax.Array  # (P,) float64, the arrays concatenated in check order
    unravel: _Unravel  # (P,) -> a pytree like params, float64 leaves
    names: tuple[str, ...]  # one per array, check order
    shapes: tuple[tuple[int, ...], ...]
    starts: np.ndarray  # (n_arrays,) offset of each array in theta
    sizes: np.ndarray  # (n_arrays,)
    paths: tuple  # key paths of the arrays, check order
    order: tuple[int, ...]  # check position -> pytree leaf position


def _flatten(params) -> _Flat:
    """Flatten ``params`` (float64) in check order. Must run with x64 enabled."""
    path_leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    if not path_leaves:
        raise ValueError("params: got an empty pytree, expected at least one array")
    names = [jax.tree_util.keystr(path, simple=True, separator=".") or "params" for path, _ in path_leaves]
    leaves = []
    for name, (_, leaf) in zip(names, path_leaves, strict=True):
        dtype = _dtype(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"params[{name!r}]: got dtype {dtype}, "
                "expected floating-point arrays (only they can be perturbed)"
            )
        leaves.append(jnp.asarray(leaf, jnp.float64))
    order = list(range(len(leaves)))
    # A dict pytree flattens with sorted keys (W1, W10, W2, ..., b1, ...): put W<l>/b<l> dicts in
    # the textbook's order, layer by layer, W before b.
    if (
        isinstance(params, Mapping)
        and len(params) == len(leaves)
        and all(isinstance(k, str) and _LAYER_KEY.fullmatch(k) for k in params)
    ):
        order.sort(key=lambda i: (int(names[i][1:]), names[i][0] != "W"))
    theta, _ = ravel_pytree([leaves[i] for i in order])  # a list ravels in list order
    shapes = tuple(tuple(leaves[i].shape) for i in order)
    sizes = np.array([leaves[i].size for i in order], dtype=np.int64)
    return _Flat(
        theta=theta,
        unravel=_Unravel(treedef, tuple(order), shapes),
        names=tuple(names[i] for i in order),
        shapes=shapes,
        starts=np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64),
        sizes=sizes,
        paths=tuple(path_leaves[i][0] for i in order),
        order=tuple(order),
    )


def _dtype(x) -> np.dtype:
    dtype = getattr(x, "dtype", None)  # not `or`: a plain np.dtype has len 0, so it is falsy
    return np.asarray(x).dtype if dtype is None else np.dtype(dtype)


class _UnsupportedPath(Exception):
    """A key path entry of a custom pytree node, which cannot be looked up by key."""


def _leaf_at(tree, path):
    """The node of ``tree`` at a params key path; a top-level key ``W1`` also matches ``dW1``."""
    node = tree
    for depth, entry in enumerate(path):
        if isinstance(entry, jax.tree_util.DictKey):
            key = entry.key
            if (
                depth == 0
                and isinstance(node, Mapping)
                and key not in node
                and isinstance(key, str)
                and "d" + key in node
            ):
                key = "d" + key
            node = node[key]
        elif isinstance(entry, jax.tree_util.SequenceKey):
            node = node[entry.idx]
        elif isinstance(entry, jax.tree_util.GetAttrKey):
            node = getattr(node, entry.name)
        else:
            raise _UnsupportedPath(entry)
    return node


def _flat_like(grads, params, flat: _Flat, what: str = "grads") -> np.ndarray:
    """``grads`` (keyed like ``params`` or ``dW1``-style) as a float64 vector in check order.

    Entries of ``grads`` with no parameter (the textbook's backprop also returns dA1,
    dZ1, ...) are ignored."""
    try:
        leaves = [_leaf_at(grads, path) for path in flat.paths]
    except _UnsupportedPath:  # custom pytree nodes: fall back to the same structure
        if jax.tree_util.tree_structure(grads) != jax.tree_util.tree_structure(params):
            raise ValueError(
                f"{what}: got structure {jax.tree_util.tree_structure(grads)}, expected the structure of "
                f"params, {jax.tree_util.tree_structure(params)}"
            ) from None
        all_leaves = jax.tree_util.tree_leaves(grads)
        leaves = [all_leaves[i] for i in flat.order]
    except (KeyError, IndexError, AttributeError, TypeError):
        found = sorted(map(str, grads)) if isinstance(grads, Mapping) else type(grads).__name__
        missing = [n for n, p in zip(flat.names, flat.paths, strict=True) if not _has(grads, p)]
        raise ValueError(
            f"{what}: got {found}, expected one gradient per parameter, keyed like params "
            f"({', '.join(flat.names)}) or like the textbook (d{flat.names[0]}, ...); missing {missing}"
        ) from None
    out = []
    for name, shape, leaf in zip(flat.names, flat.shapes, leaves, strict=True):
        dtype = _dtype(leaf)
        if jnp.issubdtype(dtype, jnp.complexfloating) or not jnp.issubdtype(dtype, jnp.number):
            raise TypeError(f"{what}[{name!r}]: got dtype {dtype}, expected real floating-point values")
        if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 64:
            raise ValueError(
                f"{what}[{name!r}]: got {dtype}, expected float64: "
                f"a {dtype} gradient carries rounding errors of about {float(jnp.finfo(dtype).eps):.1e} "
                "of its size, comparable to the threshold, so an honest backprop could fail the check; "
                "compute the gradients in float64 "
                "(NumPy's default; jax.enable_x64 in JAX)"
            )
        value = np.asarray(leaf, np.float64)
        if value.shape != shape:
            raise ValueError(
                f"{what}[{name!r}]: got shape {value.shape}, expected {shape} like params[{name!r}]"
            )
        out.append(value.ravel())
    return np.concatenate(out)


def _has(tree, path) -> bool:
    try:
        _leaf_at(tree, path)
    except (KeyError, IndexError, AttributeError, TypeError, _UnsupportedPath):
        return False
    return True


# ---------------------------------------------------------------------------------------------------
# The perturbed losses


class _Bound(NamedTuple):
    """``loss_fn`` as ``call(params, arrays)``: the array leaves of its ``args``/``kwargs``
    are (traced) inputs, everything else (floats, strings, None) stays fixed, so the
    compiled sweep neither bakes the data in as constants nor traces options like
    ``lambd``. Hashable when those fixed values are."""

    loss_fn: Callable
    treedef: Any
    fixed: tuple  # the non-array leaves, None where an array goes
    dynamic: tuple[bool, ...]

    def __call__(self, params, arrays):
        it = iter(arrays)
        leaves = [next(it) if d else x for x, d in zip(self.fixed, self.dynamic, strict=True)]
        a, k = jax.tree_util.tree_unflatten(self.treedef, leaves)
        return jnp.reshape(self.loss_fn(params, *a, **k), ())


def _bind(loss_fn, args, kwargs):
    """``(_Bound, arrays)`` for ``loss_fn(params, *args, **kwargs)``."""
    leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
    dynamic = tuple(isinstance(x, jax.Array | np.ndarray) for x in leaves)
    arrays = [x for x, d in zip(leaves, dynamic, strict=True) if d]
    fixed = tuple(None if d else x for x, d in zip(leaves, dynamic, strict=True))
    return _Bound(loss_fn, treedef, fixed, dynamic), arrays


class _ById:
    """A callable compared by identity: for static arguments that cannot be hashed."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args):
        return self.fn(*args)


def _static(fn):
    try:
        hash(fn)
    except TypeError:
        return _ById(fn)
    return fn


def _direction(key, j, directions: int, starts, sizes, P: int):
    """The ``j``-th random unit direction (P,): Gaussian, supported on array ``j // directions``."""
    block = j // directions
    idx = jnp.arange(P)
    inside = (idx >= starts[block]) & (idx < starts[block] + sizes[block])
    v = jnp.where(inside, jax.random.normal(jax.random.fold_in(key, j), (P,), jnp.float64), 0.0)
    return v / jnp.linalg.norm(v)


def _one(theta, G, arrays, key, epsilon, j, *, call, unravel, pattern, directions):
    """Perturbation ``j``: ``J(theta + epsilon v)``, ``J(theta - epsilon v)``, whether it
    straddles a kink, and ``G v`` (``v = e_j`` for coordinates)."""
    if directions is None:
        plus, minus, proj = theta.at[j].add(epsilon), theta.at[j].add(-epsilon), G[:, j]
    else:
        P = theta.shape[0]
        sizes = np.array([math.prod(shape) for shape in unravel.shapes])
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        v = _direction(key, j, directions, jnp.asarray(starts), jnp.asarray(sizes), P)
        plus, minus, proj = theta + epsilon * v, theta - epsilon * v, G @ v
    p_plus, p_minus = unravel(plus), unravel(minus)
    if pattern is None:
        kink = jnp.zeros((), bool)
    else:
        kink = jnp.any(pattern(p_plus, arrays) != pattern(p_minus, arrays))
    return call(p_plus, arrays), call(p_minus, arrays), kink, proj


@functools.partial(jax.jit, static_argnames=("call",))
def _grad_compiled(params, arrays, *, call):
    return jax.grad(call)(params, arrays)


@functools.partial(jax.jit, static_argnames=("n", "batch", "call", "unravel", "pattern", "directions"))
def _sweep_compiled(theta, G, arrays, key, epsilon, *, n, batch, **static):
    # One compiled call: lax.map runs vmap-ed batches of perturbations inside a loop, so at
    # most batch * P perturbed parameters exist at once.
    return jax.lax.map(
        lambda j: _one(theta, G, arrays, key, epsilon, j, **static), jnp.arange(n), batch_size=batch
    )


def _sweep(call, arrays, flat: _Flat, G, *, epsilon, directions, key, pattern=None, traced=True):
    """All perturbed losses. Returns ``approx (n,)``, ``G`` projected on the directions
    ``(n_g, n)``, kink flags ``(n,)``; ``n = P`` for coordinates, ``directions * n_arrays``
    otherwise. ``pattern(params, arrays)`` gives the ReLU on/off pattern (kink flags)."""
    P = int(flat.theta.shape[0])
    n = P if directions is None else directions * len(flat.names)
    G = jnp.asarray(G)
    static = dict(call=_static(call), unravel=flat.unravel, pattern=pattern, directions=directions)
    if traced:
        batch = max(1, min(n, _BATCH_ELEMENTS // max(P, 1)))
        out = _sweep_compiled(flat.theta, G, arrays, key, epsilon, n=n, batch=batch, **static)
    else:  # a loss JAX cannot trace (NumPy code): one call per perturbation
        outs = [_one(flat.theta, G, arrays, key, epsilon, j, **static) for j in range(n)]
        out = [np.stack([np.asarray(o[i]) for o in outs]) for i in range(4)]
    j_plus, j_minus, kinks, proj = (np.asarray(x) for x in out)
    approx = (j_plus - j_minus) / (2 * epsilon)
    return approx, proj.T, kinks.astype(bool)


def _numpy_call(loss_fn, args, kwargs):
    def call(params, _arrays):
        return np.asarray(loss_fn(jax.tree_util.tree_map(np.asarray, params), *args, **kwargs)).reshape(())

    return call


# ---------------------------------------------------------------------------------------------------
# Reports


def _compare(
    grad,
    approx,
    flat: _Flat,
    *,
    directions,
    threshold,
    epsilon,
    mode,
    compared,
    kinks=None,
    top_k=TOP_K,
    n_losses=0,
    vectorised=True,
) -> Report:
    grad, approx = np.asarray(grad, np.float64), np.asarray(approx, np.float64)
    n = grad.shape[0]
    if directions is None:
        block = np.repeat(np.arange(len(flat.names)), flat.sizes)
        local = np.arange(n) - flat.starts[block]

        def index(j):
            return tuple(int(i) for i in np.unravel_index(local[j], flat.shapes[block[j]]))
    else:
        block, local = np.arange(n) // directions, np.arange(n) % directions

        def index(j):
            return (int(local[j]),)

    kinks = np.zeros(n, bool) if kinks is None else kinks
    per_param = {
        name: relative_difference(grad[block == b], approx[block == b]) for b, name in enumerate(flat.names)
    }
    offenders = tuple(name for name, d in per_param.items() if not d <= threshold)  # NaN offends
    difference = relative_difference(grad, approx)
    error = np.abs(grad - approx)
    ranked = np.argsort(-np.where(np.isnan(error), np.inf, error), kind="stable")[:top_k]
    worst = tuple(
        Entry(
            flat.names[block[j]], index(j), float(grad[j]), float(approx[j]), float(error[j]), bool(kinks[j])
        )
        for j in ranked
    )
    return Report(
        difference=difference,
        passed=bool(difference <= threshold),
        per_param=per_param,
        offenders=offenders,
        worst=worst,
        kinks=tuple((flat.names[block[j]], index(j)) for j in np.flatnonzero(kinks)),
        threshold=float(threshold),
        epsilon=None if epsilon is None else float(epsilon),
        mode=mode,
        compared=compared,
        n_losses=n_losses,
        vectorised=vectorised,
        names=flat.names,
        grad=grad,
        approx=approx,
    )


def _check_options(epsilon, threshold, directions, top_k) -> None:
    for name, value in (("epsilon", epsilon), ("threshold", threshold)):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float | np.floating | np.integer)
            or not (np.isfinite(value) and value > 0)
        ):
            raise ValueError(f"{name}: got {value!r}, expected a finite number > 0")
    if directions is not None and (
        isinstance(directions, bool) or not isinstance(directions, int | np.integer) or directions < 1
    ):
        raise ValueError(
            f"directions: got {directions!r}, expected None (every coordinate) or an integer >= 1"
        )
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 0:
        raise ValueError(f"top_k: got {top_k!r}, expected an integer >= 0")


def _check_loss_value(J, epsilon) -> None:
    value = np.asarray(J)
    if value.shape != ():
        raise ValueError(f"loss_fn: returned shape {value.shape}, expected a scalar (shape ())")
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise TypeError(f"loss_fn: returned dtype {value.dtype}, expected a floating-point scalar")
    if jnp.finfo(value.dtype).bits < 64:
        raise ValueError(
            f"loss_fn: returned {value.dtype} for float64 parameters; finite differences with "
            f"epsilon={epsilon:g} need float64 throughout: {value.dtype} rounds the loss to about "
            f"{float(jnp.finfo(value.dtype).eps):.0e} of its value, and that error divided by 2*epsilon "
            "is as large as the gradient itself. "
            "Compute the loss in the parameters' dtype (the check enables float64 for itself)"
        )


def _key(direction_key):
    return jax.random.PRNGKey(0) if direction_key is None else direction_key


def check(
    loss_fn: Callable[..., Any],
    params,
    *args,
    grads=None,
    epsilon: float = EPSILON,
    threshold: float = THRESHOLD,
    directions: int | None = None,
    direction_key=None,
    top_k: int = TOP_K,
    **kwargs,
) -> Report:
    """Check ``grads`` (default ``jax.grad(loss_fn)``) of ``loss_fn(params, *args, **kwargs)``.

    ``loss_fn`` returns a scalar; ``params`` is a pytree of float arrays (a dict at
    least). ``grads`` may be keyed like ``params`` or like the textbook (``dW1`` for
    ``W1``; extra entries such as ``dZ1`` are ignored) and must be float64. Every
    coordinate is checked unless ``directions=K``: then ``K`` random unit directions per
    array (drawn from ``direction_key``, default ``PRNGKey(0)``). The names ``grads``,
    ``epsilon``, ``threshold``, ``directions``, ``direction_key`` and ``top_k`` are taken
    by the check; every other keyword goes to ``loss_fn``.

    A loss JAX cannot trace (plain NumPy) still works when ``grads`` are given: the
    perturbed losses then run in a Python loop (``report.vectorised`` is False)."""
    _check_options(epsilon, threshold, directions, top_k)
    with jax.enable_x64(True):
        flat = _flatten(params)
        params64 = flat.unravel(flat.theta)
        _check_loss_value(loss_fn(params64, *args, **kwargs), epsilon)
        call, arrays = _bind(loss_fn, args, kwargs)
        if grads is None:
            try:
                grads = _grad_compiled(params64, arrays, call=_static(call))
            except _UNTRACEABLE as err:
                raise TypeError(
                    f"loss_fn: jax.grad cannot trace it ({type(err).__name__}); "
                    "pass grads= (your own gradients) to check them against finite differences"
                ) from None
            compared = "finite differences vs jax.grad(loss_fn)"
        else:
            compared = "finite differences vs grads"
        g = _flat_like(grads, params, flat)
        options = dict(epsilon=epsilon, directions=directions, key=_key(direction_key))
        try:
            approx, proj, kinks = _sweep(call, arrays, flat, g[None, :], **options)
            vectorised = True
        except _UNTRACEABLE:
            approx, proj, kinks = _sweep(
                _numpy_call(loss_fn, args, kwargs), arrays, flat, g[None, :], traced=False, **options
            )
            vectorised = False
    return _compare(
        proj[0],
        approx,
        flat,
        directions=directions,
        threshold=threshold,
        epsilon=epsilon,
        mode="coordinates" if directions is None else "directions",
        compared=compared,
        kinks=kinks,
        top_k=top_k,
        n_losses=2 * approx.shape[0],
        vectorised=vectorised,
    )


# ---------------------------------------------------------------------------------------------------
# The network: finite differences vs jax.grad(jaxreg.loss) vs the NumPy backprop


class _NetworkLoss(NamedTuple):
    """``jaxreg.loss`` as ``call(params, (X, Y, masks, lambd))``. ``lambd`` is an input, not
    a constant, so checks that differ only in it share one compilation (``lambd = 0`` then
    adds an exact ``0 * penalty``)."""

    keep_prob: Any  # 1.0, or one float per hidden layer

    def __call__(self, params, arrays):
        X, Y, masks, lambd = arrays
        return model.loss(params, X, Y, lambd=lambd, masks=masks, keep_prob=self.keep_prob)


class _ReluPattern(NamedTuple):
    """Which hidden units are on (``Z > 0``) and kept by the mask, for every example: a
    flat boolean vector. Two parameter vectors with the same pattern lie on the same
    linear piece of every ReLU that matters to the loss."""

    keep_prob: tuple[float, ...]  # one per hidden layer

    def __call__(self, params, arrays):
        A, _, masks, _ = arrays
        on = []
        for l in range(1, model.n_layers(params)):
            Z = params[f"W{l}"] @ A + params[f"b{l}"]
            on.append((Z > 0 if masks is None else (Z > 0) & masks[l - 1]).ravel())
            A = jax.nn.relu(Z)
            if masks is not None:
                A = jnp.where(masks[l - 1], A, 0) / self.keep_prob[l - 1]
        return jnp.concatenate(on)


def check_network(
    params: dict,
    X,
    Y,
    *,
    lambd=0.0,
    keep_prob=1.0,
    key=None,
    masks=None,
    backward: Callable = reference.backward,
    epsilon: float = EPSILON,
    threshold: float = THRESHOLD,
    directions: int | None = None,
    direction_key=None,
    top_k: int = TOP_K,
) -> NetworkReport:
    """Three-way check of the network ``params`` (``{"W1": (n1, n0), "b1": (n1, 1), ...}``)
    on ``X`` ``(n_x, m)``, ``Y`` ``(1, m)``: finite differences of ``jaxreg.loss`` vs
    ``jax.grad(jaxreg.loss)`` vs ``backward(params, X, Y, lambd=, masks=, keep_prob=)``
    (NumPy, returning ``dW1, db1, ...``; the reference backprop by default).

    Dropout (any ``keep_prob < 1``) needs ``key`` (masks from
    :func:`jaxreg.model.dropout_masks`) or ``masks``; the masks stay fixed, so the loss
    is a deterministic function of the parameters and all three see the same masks.

    Kinks: a perturbation ``theta +- epsilon v`` is flagged when some hidden unit kept
    by the mask is on (``Z > 0``) for one sign and off for the other on some example,
    i.e. the two-sided difference straddles a ReLU kink and may disagree with an
    honest gradient. Flags are reported (``kinks``); they do not change the verdict."""
    _check_options(epsilon, threshold, directions, top_k)
    dims = validate.params(params, n_x=validate.features(X).shape[0])
    validate.features_and_labels(X, Y)
    validate.lambd(lambd)
    kps = validate.keep_prob(keep_prob, len(dims) - 2)
    m = X.shape[1]
    if all(kp == 1.0 for kp in kps):
        if masks is not None and not all(np.all(np.asarray(mask)) for mask in masks):
            raise ValueError(
                "masks: got masks that drop units with keep_prob 1, expected keep_prob < 1 for dropout"
            )
        masks = None
    elif masks is None:
        if key is None:
            raise ValueError(
                f"key: got None with keep_prob {list(kps)}, expected a key (or masks=) for the "
                "dropout masks, which stay fixed during the check"
            )
        masks = model.dropout_masks(key, dims, m, kps)
    elif key is not None:
        raise ValueError("key, masks: got both, expected one (the masks are either drawn from key or given)")
    if masks is not None:
        if len(masks) != len(kps):
            raise ValueError(f"masks: got {len(masks)} masks, expected {len(kps)} (one per hidden layer)")
        for l, (mask, kp) in enumerate(zip(masks, kps, strict=True), start=1):
            if kp == 1.0 and not np.all(np.asarray(mask)):
                raise ValueError(
                    f"masks[{l - 1}]: drops units in a layer with keep_prob 1, expected all True"
                )
        masks = tuple(np.asarray(mask, bool) for mask in masks)
    keep = tuple(kps) if masks is not None else 1.0

    with jax.enable_x64(True):
        flat = _flatten(params)
        params64 = flat.unravel(flat.theta)
        X64, Y64 = jnp.asarray(X, jnp.float64), jnp.asarray(Y, jnp.float64)
        jmasks = None if masks is None else tuple(jnp.asarray(mask) for mask in masks)

        loss = _NetworkLoss(keep)
        arrays = (X64, Y64, jmasks, jnp.asarray(float(lambd)))
        g_auto = _flat_like(_grad_compiled(params64, arrays, call=loss), params, flat, "jax.grad")
        g_back = _flat_like(
            backward(
                {k: np.asarray(v) for k, v in params64.items()},
                np.asarray(X64),
                np.asarray(Y64),
                lambd=float(lambd),
                masks=masks,
                keep_prob=keep,
            ),
            params,
            flat,
            "backward",
        )
        approx, proj, kinks = _sweep(
            loss,
            arrays,
            flat,
            np.stack([g_auto, g_back]),
            epsilon=epsilon,
            directions=directions,
            key=_key(direction_key),
            pattern=_ReluPattern(tuple(kps)),
        )
    common = dict(
        directions=directions,
        threshold=threshold,
        epsilon=epsilon,
        kinks=kinks,
        top_k=top_k,
        mode="coordinates" if directions is None else "directions",
        n_losses=2 * approx.shape[0],
    )
    fd_auto = _compare(
        proj[0], approx, flat, compared="finite differences vs jax.grad(jaxreg.loss)", **common
    )
    fd_back = _compare(proj[1], approx, flat, compared="finite differences vs backward", **common)
    auto_back = _compare(
        g_back,
        g_auto,
        flat,
        directions=None,
        threshold=threshold,
        epsilon=None,
        mode="exact",
        compared="backward vs jax.grad(jaxreg.loss)",
        top_k=top_k,
    )
    reports = (fd_auto, fd_back, auto_back)
    per_param = {name: max(r.per_param[name] for r in reports) for name in flat.names}
    per_param = {
        name: float("nan") if any(np.isnan(r.per_param[name]) for r in reports) else v
        for name, v in per_param.items()
    }
    return NetworkReport(
        difference=max(r.difference for r in reports)
        if not any(np.isnan(r.difference) for r in reports)
        else float("nan"),
        passed=all(r.passed for r in reports),
        per_param=per_param,
        offenders=tuple(name for name in flat.names if any(name in r.offenders for r in reports)),
        fd_vs_autodiff=fd_auto,
        fd_vs_backward=fd_back,
        autodiff_vs_backward=auto_back,
        kinks=fd_auto.kinks,
    )
