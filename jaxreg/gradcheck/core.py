"""The finite-difference core: perturbed losses, their error model, the verdict, :func:`check`.

Each checked value (a coordinate ``e_i`` of the parameters, or a random unit direction
``v`` within one array) costs four losses, at ``theta + s v`` for ``s = -2e, -e, +e, +2e``
(``e`` = ``epsilon``)::

    approx  = (J(+e) - J(-e)) / (2e)        the textbook's two-sided difference
    approx2 = (J(+2e) - J(-2e)) / (4e)

and the error that ``approx`` itself carries is bounded from the same numbers:

* truncation: ``approx = J' + e^2 J'''/6 + ...`` and ``approx2 = J' + 4 e^2 J'''/6 + ...``,
  so (Richardson) ``|approx2 - approx| / 3`` estimates it;
* rounding: each loss is rounded to about ``u |J|`` (``u``: the float64 machine epsilon), and
  the difference divides that by ``e``: ``ROUNDING u max|J| / e``; the coordinate step
  ``theta_i +- e`` is rounded too, which adds ``u |theta_i| |approx| / e``.

A value is wrong when ``|g - approx|`` exceeds ``safety`` times its bound (NaN is wrong).
A perturbation that crosses a ReLU kink (``kink_pattern``, e.g. which units are on,
changes between ``theta`` and one of the four points) is excluded: the loss has no
derivative to approximate along that step. The textbook's verdict, ``difference <=
threshold``, is reported beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg.errors import ConfigError
from jaxreg.gradcheck.flat import Flat, dtype_of, flatten, vector_like
from jaxreg.gradcheck.report import Entry, Report

__all__ = [
    "EPSILON",
    "THRESHOLD",
    "SAFETY",
    "TOP_K",
    "STEPS",
    "relative_difference",
    "fd_estimates",
    "judge",
    "judge_exact",
    "gradient_rounding",
    "bind",
    "sweep",
    "check_options",
    "check",
]

EPSILON = 1e-7  # the textbook's step
THRESHOLD = 2e-7  # the textbook's verdict: a difference above this means a bug
SAFETY = 10.0  # a value fails when its error exceeds SAFETY x its own error bound
# A loss is taken to be rounded to ROUNDING u |J|: on 60 random networks (depth 1-4, width 1-64) the
# honest errors reached 1.2 u |J| / epsilon, 4.6 on a saturated one (J ~ 1e-6).
ROUNDING = 4.0
EXACT_ROUNDING = 256.0  # an exactly computed gradient entry rounds to EXACT_ROUNDING u x the size of its terms
TOP_K = 5  # how many of the worst values a report lists
STEPS = (-2.0, -1.0, 1.0, 2.0)  # the four points of each value, in units of epsilon
BATCH_ELEMENTS = 2**22  # perturbed array entries held at once (32 MiB of float64)
_U = float(np.finfo(np.float64).eps)
DEFAULT_KEY = np.zeros(2, np.uint32)  # jax.random.PRNGKey(0), made without running JAX
# What JAX raises when a loss cannot be traced (NumPy code, Python control flow on values).
UNTRACEABLE = (
    jax.errors.TracerArrayConversionError,
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
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
# The error model and the verdict


def fd_estimates(losses, epsilon: float, step_scale=0.0) -> tuple[np.ndarray, np.ndarray]:
    """``losses (n, 4)``: J at ``-2e, -e, +e, +2e`` along each value's step. Returns the
    textbook's difference ``approx (n,)`` and the error bound of each ``(n,)``.
    ``step_scale``: ``|theta_i|`` where the step ``theta_i +- e`` is rounded, 0 where it is exact."""
    losses = np.asarray(losses, np.float64)
    j_m2, j_m1, j_p1, j_p2 = losses.T
    approx = (j_p1 - j_m1) / (2 * epsilon)
    truncation = np.abs((j_p2 - j_m2) / (4 * epsilon) - approx) / 3
    rounding = _U * (ROUNDING * np.max(np.abs(losses), axis=1) + step_scale * np.abs(approx)) / epsilon
    return approx, truncation + rounding


def _positions(flat: Flat, directions: int | None, n: int):
    """``block (n,)`` (the array of each value) and ``index(j)`` (its index within the array)."""
    if directions is not None:
        return np.arange(n) // directions, lambda j: (int(j % directions),)
    block = np.repeat(np.arange(len(flat.names)), flat.sizes)
    local = np.arange(n) - flat.starts[block]
    return block, lambda j: tuple(int(i) for i in np.unravel_index(local[j], flat.shapes[block[j]]))


def judge(
    grad, approx, bound, flat: Flat, *, mode, compared, epsilon, threshold, safety, top_k,
    directions=None, kinks=None, losses=None, vectorised=True,
) -> Report:
    """Both verdicts on ``grad (n,)`` against ``approx (n,)`` with error bounds ``bound (n,)``."""
    grad, approx, bound = (np.asarray(x, np.float64) for x in (grad, approx, bound))
    n = grad.shape[0]
    block, index = _positions(flat, directions, n)
    kinks = np.zeros(n, bool) if kinks is None else np.asarray(kinks, bool)
    error = np.abs(grad - approx)
    failed = ~kinks & ~(error <= safety * bound)  # NaN fails
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(error == 0, 0.0, error / bound)
    rank = np.where(kinks, -1.0, np.where(np.isnan(ratio), np.inf, ratio))
    ranked = [j for j in np.argsort(-rank, kind="stable")[:top_k] if not kinks[j]]
    difference = relative_difference(grad, approx)
    return Report(
        passed=not failed.any(),
        textbook_passed=bool(difference <= threshold),
        difference=difference,
        per_param={
            name: relative_difference(grad[block == b], approx[block == b]) for b, name in enumerate(flat.names)
        },
        offenders=tuple(name for b, name in enumerate(flat.names) if failed[block == b].any()),
        n_failed=int(failed.sum()),
        n_kinks=int(kinks.sum()),
        worst=tuple(
            Entry(flat.names[block[j]], index(j), float(grad[j]), float(approx[j]), float(error[j]), float(bound[j]))
            for j in ranked
        ),
        kinks=tuple((flat.names[block[j]], index(j)) for j in np.flatnonzero(kinks)),
        threshold=float(threshold),
        safety=float(safety),
        epsilon=None if epsilon is None else float(epsilon),
        mode=mode,
        compared=compared,
        n_losses=0 if losses is None else int(losses.size),
        vectorised=vectorised,
        names=flat.names,
        grad=grad,
        approx=approx,
        bound=bound,
        losses=losses,
    )


def gradient_rounding(scale: float) -> float:
    """The rounding each entry of an exactly computed gradient may carry, where the terms it
    sums are of size ``scale``: ``EXACT_ROUNDING u scale``."""
    return EXACT_ROUNDING * _U * scale


def judge_fd(grad, losses, flat: Flat, *, epsilon, directions, grad_rounding: float = 0.0, **options) -> Report:
    """``grad (n,)`` against the finite differences of ``losses (n, 4)``. Each value's bound is
    its finite difference's plus ``grad_rounding``, the rounding of the gradient's entries
    (for a unit direction within an array of ``n_b`` entries: ``sqrt(n_b)`` times that)."""
    # A coordinate step theta_i +- e is rounded; a direction's projection uses the step taken.
    step_scale = np.abs(flat.theta) if directions is None else 0.0
    approx, bound = fd_estimates(losses, epsilon, step_scale)
    if directions is not None:
        grad_rounding = grad_rounding * np.sqrt(np.repeat(flat.sizes, directions))
    mode = "coordinates" if directions is None else "directions"
    return judge(
        grad, approx, bound + grad_rounding, flat, mode=mode, epsilon=epsilon, directions=directions, losses=losses,
        **options,
    )


def judge_exact(grad, other, flat: Flat, *, scale: float, **options) -> Report:
    """Two gradients that should agree to rounding: ``grad (P,)`` against ``other (P,)``, each
    value's bound the rounding of gradient entries whose terms are of size ``scale``."""
    bound = np.full(np.shape(grad), gradient_rounding(scale))
    return judge(grad, other, bound, flat, mode="exact", epsilon=None, **options)


def check_options(epsilon, threshold, safety, directions, top_k) -> None:
    """Refuse bad options with a message naming them."""
    for name, value in (("epsilon", epsilon), ("threshold", threshold), ("safety", safety)):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float | np.floating | np.integer)
            or not (np.isfinite(value) and value > 0)
        ):
            raise ConfigError(name, value, "a finite number > 0")
    if directions is not None and (
        isinstance(directions, bool) or not isinstance(directions, int | np.integer) or directions < 1
    ):
        raise ConfigError("directions", directions, "None (every coordinate) or an integer >= 1")
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 0:
        raise ConfigError("top_k", top_k, "an integer >= 0")


# ---------------------------------------------------------------------------------------------------
# The perturbed losses of any loss function: each value perturbs only the array it belongs to


def bind(fn: Callable, args: tuple, kwargs: dict):
    """``(call, arrays)`` with ``call(params, arrays) == fn(params, *args, **kwargs)``: the array
    leaves of ``args``/``kwargs`` become inputs of the compiled program (not constants baked
    into it); every other leaf (floats such as ``lambd``, strings, None) stays fixed."""
    leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
    dynamic = [isinstance(x, jax.Array | np.ndarray) for x in leaves]
    arrays = [x for x, d in zip(leaves, dynamic, strict=True) if d]

    def call(params, arrays):
        it = iter(arrays)
        filled = [next(it) if d else x for x, d in zip(leaves, dynamic, strict=True)]
        a, k = jax.tree_util.tree_unflatten(treedef, filled)
        return fn(params, *a, **k)

    return call, arrays


def _unit_direction(key, j, shape):
    """The ``j``-th random direction: Gaussian, of norm 1, shaped like one array."""
    v = jax.random.normal(jax.random.fold_in(key, j), shape, jnp.float64)
    return v / jnp.linalg.norm(v)


def _array_sweep(b, leaves, arrays, G, key, steps, *, loss, flat, directions, pattern, base):
    """Array ``b``'s values: losses ``(n_b, 4)``, kink flags ``(n_b,)`` and, for directions,
    the gradients' projections on the step taken ``(n_b, n_g)``."""
    x = leaves[b]
    size, n_b = x.size, x.size if directions is None else directions

    def points(k):  # array b at the four steps, (4, *shape)
        if directions is None:
            return jnp.broadcast_to(x.ravel(), (4, size)).at[:, k].add(steps).reshape(4, *x.shape)
        v = _unit_direction(key, b * directions + k, x.shape)
        return x[None] + steps.reshape((4,) + (1,) * x.ndim) * v[None]

    def at(xb):
        return [xb if i == b else leaf for i, leaf in enumerate(leaves)]

    def one(k):
        xs = points(k)
        J = jax.vmap(lambda xb: loss(at(xb), arrays))(xs)
        kink = jnp.zeros((), bool)
        if pattern is not None:
            kink = jnp.any(jax.vmap(lambda xb: jnp.any(pattern(flat.tree(at(xb)), arrays) != base))(xs))
        if directions is None:
            return J, kink, jnp.zeros(())
        start = int(flat.starts[b])
        return J, kink, G[:, start : start + size] @ ((xs[2] - xs[1]).ravel() / (steps[2] - steps[1]))

    batch = max(1, min(n_b, BATCH_ELEMENTS // (4 * max(size, 1))))
    return jax.lax.map(one, jnp.arange(n_b), batch_size=batch)


def sweep(call, flat: Flat, arrays, G=None, *, epsilon, directions, key, pattern=None, with_grad=False):
    """Every value's four losses in one compiled program. ``G (n_g, P)``: gradients to project
    on the directions; with ``with_grad``, ``jax.grad`` of ``call`` is computed there too and
    comes first. Returns ``grad (P,) or None``, ``losses (n, 4)``, ``kinks (n,)`` and, for
    directions, ``proj (n, n_g)`` (else None), as NumPy."""

    def loss(leaves, arrays):
        return jnp.reshape(call(flat.tree(leaves), arrays), ())

    def program(leaves, arrays, G, key, epsilon):
        leaves, grad = list(leaves), None
        if with_grad:
            grad = jnp.concatenate([g.ravel() for g in jax.grad(loss)(leaves, arrays)])
            G = grad[None] if G is None else jnp.concatenate([grad[None], G])
        steps = epsilon * jnp.asarray(STEPS, jnp.float64)
        base = None if pattern is None else pattern(flat.tree(leaves), arrays)
        options = dict(loss=loss, flat=flat, directions=directions, pattern=pattern, base=base)
        parts = [_array_sweep(b, leaves, arrays, G, key, steps, **options) for b in range(len(leaves))]
        losses, kinks, proj = (jnp.concatenate(p) for p in zip(*parts, strict=True))
        return grad, losses, kinks, proj

    grad, losses, kinks, proj = jax.jit(program)(flat.leaves, arrays, G, key, epsilon)
    return (
        None if grad is None else np.asarray(grad),
        np.asarray(losses),
        np.asarray(kinks),
        None if directions is None else np.asarray(proj),
    )


def _numpy_sweep(loss_fn, args, kwargs, flat: Flat, G, *, epsilon, directions, key, kink_pattern):
    """What :func:`sweep` computes, for a loss JAX cannot trace: one call per perturbation."""
    def pattern(leaves):
        return np.asarray(kink_pattern(flat.tree(leaves), *args, **kwargs))

    base = None if kink_pattern is None else pattern(flat.leaves)
    losses, kinks, proj = [], [], []
    for b, x in enumerate(flat.leaves):
        start, n_b = int(flat.starts[b]), x.size if directions is None else directions
        if directions is not None:
            draw = jax.jit(lambda key, js, shape=x.shape: jax.vmap(lambda j: _unit_direction(key, j, shape))(js))
            V = np.asarray(draw(key, b * directions + np.arange(directions)))
        for k in range(n_b):
            points = []
            for s in STEPS:
                xb = x.copy()
                if directions is None:
                    xb.flat[k] += s * epsilon
                else:
                    xb = x + s * epsilon * V[k]
                points.append([xb if i == b else leaf for i, leaf in enumerate(flat.leaves)])
            losses.append([float(np.asarray(loss_fn(flat.tree(p), *args, **kwargs))) for p in points])
            kinks.append(base is not None and any(np.any(pattern(p) != base) for p in points))
            if directions is not None:
                step = (points[2][b] - points[1][b]).ravel() / (2 * epsilon)
                proj.append(G[:, start : start + x.size] @ step)
    return np.asarray(losses), np.asarray(kinks, bool), None if directions is None else np.asarray(proj)


def _check_loss(call, arrays, flat: Flat, loss_fn, args, kwargs, epsilon) -> bool:
    """Refuse a loss that is not a float64 scalar; True when JAX can trace it."""
    try:
        value, traceable = jax.eval_shape(call, flat.tree(flat.leaves), arrays), True
    except UNTRACEABLE:
        value, traceable = np.asarray(loss_fn(flat.tree(flat.leaves), *args, **kwargs)), False
    dtype = dtype_of(value)
    if tuple(value.shape) != ():
        raise ValueError(f"loss_fn: returned shape {tuple(value.shape)}, expected a scalar (shape ())")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"loss_fn: returned dtype {dtype}, expected a floating-point scalar")
    if jnp.finfo(dtype).bits < 64:
        raise ValueError(
            f"loss_fn: returned {dtype} for float64 parameters; finite differences with "
            f"epsilon={epsilon:g} need float64 throughout: {dtype} rounds the loss to about "
            f"{float(jnp.finfo(dtype).eps):.0e} of its value, and that error divided by 2*epsilon "
            "is as large as the gradient itself. "
            "Compute the loss in the parameters' dtype (the check enables float64 for itself)"
        )
    return traceable


def check(
    loss_fn: Callable[..., Any],
    params,
    *args,
    grads=None,
    epsilon: float = EPSILON,
    threshold: float = THRESHOLD,
    safety: float = SAFETY,
    directions: int | None = None,
    direction_key=None,
    kink_pattern: Callable[..., Any] | None = None,
    top_k: int = TOP_K,
    **kwargs,
) -> Report:
    """Check ``grads`` (default ``jax.grad(loss_fn)``) of ``loss_fn(params, *args, **kwargs)``.

    ``loss_fn`` returns a scalar; ``params`` is a pytree of float arrays. ``grads`` may be
    keyed like ``params`` or like the textbook (``dW1`` for ``W1``; extra entries such as
    ``dZ1`` are ignored) and must be float64. Every coordinate is checked unless
    ``directions=K``: then ``K`` random unit directions per array (from ``direction_key``,
    default ``PRNGKey(0)``). ``kink_pattern(params, *args, **kwargs)``, if given, returns
    an array (e.g. which ReLUs are on) whose change marks a perturbation as crossing a kink.
    The names ``grads``, ``epsilon``, ``threshold``, ``safety``, ``directions``,
    ``direction_key``, ``kink_pattern`` and ``top_k`` are the check's; every other keyword
    goes to ``loss_fn``.

    Only the array a value belongs to is perturbed; all ``4n`` losses run in one compiled
    call. A loss JAX cannot trace (plain NumPy) still works when ``grads`` are given: the
    losses then run in a Python loop (``report.vectorised`` is False)."""
    check_options(epsilon, threshold, safety, directions, top_k)
    key = DEFAULT_KEY if direction_key is None else direction_key
    with jax.enable_x64(True):
        flat = flatten(params)
        call, arrays = bind(loss_fn, args, kwargs)
        traceable = _check_loss(call, arrays, flat, loss_fn, args, kwargs, epsilon)
        G = None if grads is None else vector_like(grads, params, flat)[None]
        options, grad = dict(epsilon=epsilon, directions=directions, key=key), None
        if traceable:
            pattern = None if kink_pattern is None else bind(kink_pattern, args, kwargs)[0]
            grad, losses, kinks, proj = sweep(call, flat, arrays, G, pattern=pattern, with_grad=G is None, **options)
        elif G is None:
            raise TypeError(
                "loss_fn: jax.grad cannot trace it; pass grads= (your own gradients) to check them "
                "against finite differences"
            )
        else:
            losses, kinks, proj = _numpy_sweep(loss_fn, args, kwargs, flat, G, kink_pattern=kink_pattern, **options)
    values = (G[0] if grad is None else grad) if directions is None else proj[:, 0]
    compared = "finite differences vs " + ("grads" if grads is not None else "jax.grad(loss_fn)")
    return judge_fd(
        values, losses, flat, epsilon=epsilon, directions=directions, kinks=kinks, compared=compared,
        threshold=threshold, safety=safety, top_k=top_k, vectorised=traceable,
    )
