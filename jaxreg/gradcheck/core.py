"""The finite-difference core: perturbed losses, their error model, the verdict, :func:`check`.

Each checked value (a coordinate ``e_i`` of the parameters, or a random unit direction
``v`` within one array) costs four losses, at ``theta + s v`` for ``s = -2e, -e, +e, +2e``
(``e`` = ``epsilon``); the loss at ``theta`` itself, ``J(0)``, is one more for the whole check::

    approx  = (J(+e) - J(-e)) / (2e)        the textbook's two-sided difference
    approx2 = (J(+2e) - J(-2e)) / (4e)

and the error that ``approx`` itself carries is bounded from the same numbers:

* truncation: ``approx = J' + e^2 J'''/6 + ...`` and ``approx2 = J' + 4 e^2 J'''/6 + ...``,
  so (Richardson) ``|approx2 - approx| / 3`` estimates it;
* rounding: each loss is rounded to about ``u |J|`` (``u``: the float64 machine epsilon), and
  the difference divides that by ``e``: ``ROUNDING u max|J| / e``; the coordinate step
  ``theta_i +- e`` is rounded too, which adds ``u |theta_i| |approx| / e``.

A value is wrong when ``|g - approx|`` exceeds ``safety`` times its bound (NaN is wrong).

Kinks. Where the step crosses a kink (ReLU, ``abs``, ``max``, a hinge) the two-sided
difference approximates no derivative. The same losses give each value's one-sided
differences ``right = (J(+e) - J(0)) / e`` and ``left = (J(0) - J(-e)) / e``, each with its
own bound (first order: truncation ``|right(2e) - right(e)|``, rounding twice the two-sided
difference's). On a smooth loss they differ by about ``e J''`` and each bound is about
``e |J''| / 2``; a kink inside one side's step moves that side's difference towards the
slope beyond it and inflates that side's bound. So where they differ by more than
``KINK_FACTOR`` times the smaller bound, a kink lies inside the step, and the value passes
when it lies in the interval they span, widened by ``safety`` times the smaller bound: the
derivative on either side of the kink, and any subgradient at it, lies there (``approx``,
the two-sided difference, is its midpoint). A kink closer to ``theta`` than about ``e``
is found this way; one between ``e`` and ``2e`` leaves the two-sided difference exact and
inflates its bound (``approx2`` crosses it). ``kink_pattern`` (e.g. which ReLUs are on: a
change between ``theta`` and one of the four points) names kinks explicitly; they are
judged by the same interval. The textbook's verdict, ``difference <= threshold``, is
reported beside it, on the two-sided differences.

Compilation: the perturbed losses run in one compiled program, kept per loss function,
kink pattern, parameter structure, shapes and static options (``directions``, the
non-array arguments of the loss such as ``lambd=0.7``): a second check of the same loss on
new values of the same shapes compiles nothing.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg.errors import ConfigError
from jaxreg.gradcheck.flat import Flat, dtype_of, flatten, vector_like
from jaxreg.gradcheck.report import Entry, Kink, Report

__all__ = [
    "EPSILON",
    "THRESHOLD",
    "SAFETY",
    "TOP_K",
    "STEPS",
    "relative_difference",
    "KINK_FACTOR",
    "fd_estimates",
    "one_sided",
    "Differences",
    "differences",
    "judge",
    "judge_exact",
    "gradient_rounding",
    "Bound",
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
# One-sided differences farther apart than KINK_FACTOR x the smaller of their bounds mark a kink inside the step.
# On a smooth loss they differ by about e J'', and each bound is about e |J''| / 2 (plus rounding): 2x that margin.
KINK_FACTOR = 4.0
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
    with np.errstate(over="ignore", invalid="ignore"):
        numerator = np.linalg.norm(g - approx)
        denominator = np.linalg.norm(g) + np.linalg.norm(approx)
        if denominator == 0:
            return 0.0  # both gradients are exactly zero: they agree
        difference = float(numerator / denominator)
    if not np.isfinite(difference) and np.isfinite(g).all() and np.isfinite(approx).all():  # squares beyond float64
        scale = max(np.max(np.abs(g)), np.max(np.abs(approx)))
        return relative_difference(g / scale, approx / scale)
    return difference


# ---------------------------------------------------------------------------------------------------
# The error model and the verdict


def fd_estimates(losses, epsilon: float, step_scale=0.0, *, scale=None) -> tuple[np.ndarray, np.ndarray]:
    """``losses (n, 4)``: J at ``-2e, -e, +e, +2e`` along each value's step. Returns the
    textbook's difference ``approx (n,)`` and the error bound of each ``(n,)``.
    ``step_scale``: ``|theta_i|`` where the step ``theta_i +- e`` is rounded, 0 where it is exact.
    ``scale``: each row's largest ``|J|``, where the caller has it."""
    losses = np.asarray(losses, np.float64)
    j_m2, j_m1, j_p1, j_p2 = losses.T
    scale = np.max(np.abs(losses), axis=1) if scale is None else scale
    approx = (j_p1 - j_m1) / (2 * epsilon)
    truncation = np.abs((j_p2 - j_m2) / (4 * epsilon) - approx) / 3
    rounding = _U * (ROUNDING * scale + step_scale * np.abs(approx)) / epsilon
    return approx, truncation + rounding


def one_sided(losses, j0, epsilon: float, step_scale=0.0, *, scale=None) -> tuple[np.ndarray, ...]:
    """``losses (n, 4)`` as in :func:`fd_estimates`, ``j0``: J at the parameters themselves
    (a scalar: every value steps from the same point). Returns ``left, right (n,)``, the
    one-sided differences ``(J(0) - J(-e)) / e`` and ``(J(+e) - J(0)) / e``, and the error
    bound of each ``(n,)``: first-order truncation (Richardson: the difference at ``2e``
    minus the one at ``e``) plus rounding (two losses over ``e``)."""
    losses = np.asarray(losses, np.float64)
    j_m2, j_m1, j_p1, j_p2 = losses.T
    j0 = np.float64(j0)
    scale = np.max(np.abs(losses), axis=1) if scale is None else scale
    left, right = (j0 - j_m1) / epsilon, (j_p1 - j0) / epsilon
    left2, right2 = (j0 - j_m2) / (2 * epsilon), (j_p2 - j0) / (2 * epsilon)
    rounding = 2 * ROUNDING * np.maximum(scale, np.abs(j0))
    bound_left = np.abs(left2 - left) + _U * (rounding + step_scale * np.abs(left)) / epsilon
    bound_right = np.abs(right2 - right) + _U * (rounding + step_scale * np.abs(right)) / epsilon
    return left, right, bound_left, bound_right


class Differences(NamedTuple):
    """A check's finite differences, one per value ``(n,)``, each with its error bound (the
    gradient's own rounding included), and where the one-sided ones disagree."""

    approx: np.ndarray  # (J(+e) - J(-e)) / 2e, the textbook's
    bound: np.ndarray
    left: np.ndarray  # (J(0) - J(-e)) / e
    right: np.ndarray  # (J(+e) - J(0)) / e
    bound_left: np.ndarray
    bound_right: np.ndarray
    disagree: np.ndarray  # bool: |right - left| > KINK_FACTOR x the smaller bound, a kink inside the step


def differences(losses, loss, flat: Flat, *, epsilon, directions, grad_rounding: float = 0.0) -> Differences:
    """The finite differences of ``losses (n, 4)`` and ``loss`` (J at the parameters). Each
    value's bounds are its differences' plus ``grad_rounding``, the rounding of the gradient's
    entries (for a unit direction within an array of ``n_b`` entries: ``sqrt(n_b)`` times that)."""
    losses = np.asarray(losses, np.float64)
    # A coordinate step theta_i +- e is rounded; a direction's projection uses the step taken.
    step_scale = np.abs(flat.theta) if directions is None else 0.0
    scale = np.max(np.abs(losses), axis=1)
    approx, bound = fd_estimates(losses, epsilon, step_scale, scale=scale)
    left, right, bound_left, bound_right = one_sided(losses, loss, epsilon, step_scale, scale=scale)
    if directions is not None:
        grad_rounding = grad_rounding * np.sqrt(np.repeat(flat.sizes, directions))
    bound_left, bound_right = bound_left + grad_rounding, bound_right + grad_rounding
    with np.errstate(invalid="ignore"):
        disagree = np.abs(right - left) > KINK_FACTOR * np.minimum(bound_left, bound_right)  # NaN: no
    return Differences(approx, bound + grad_rounding, left, right, bound_left, bound_right, disagree)


def _kink_rule(grad, left, right, bound_left, bound_right):
    """The interval test: ``nearest``, the end of ``[min(left, right), max(left, right)]``
    nearest to ``grad`` (``grad`` itself inside), ``error = |grad - nearest|`` and ``bound``,
    the smaller of the two bounds: a value passes when ``error <= safety x bound``. The
    smaller, not each side's own: on a smooth loss both truncation estimates are
    ``e |J''| / 2`` to first order, while a kink inside one side's step (or within ``2e`` of
    it) inflates that side's estimate by the kink itself, and the honest gradient is the
    other side's derivative (or, at the kink itself, between the two)."""
    bottom, top = np.minimum(left, right), np.maximum(left, right)
    nearest = np.clip(grad, bottom, top)  # NaN stays NaN
    return nearest, np.abs(grad - nearest), np.minimum(bound_left, bound_right)


def _positions(flat: Flat, directions: int | None, n: int):
    """``block (n,)`` (the array of each value) and ``index(j)`` (its index within the array)."""
    if directions is not None:
        return np.arange(n) // directions, lambda j: (int(j % directions),)
    block = np.repeat(np.arange(len(flat.names)), flat.sizes)
    local = np.arange(n) - flat.starts[block]
    return block, lambda j: tuple(int(i) for i in np.unravel_index(local[j], flat.shapes[block[j]]))


def judge(
    grad, approx, bound, flat: Flat, *, mode, compared, epsilon, threshold, safety, top_k,
    directions=None, kinks=None, sides: Differences | None = None, losses=None, loss=None, vectorised=True,
) -> Report:
    """Both verdicts on ``grad (n,)`` against ``approx (n,)`` with error bounds ``bound (n,)``.
    ``sides``: the one-sided differences (:func:`differences`); a value where they disagree,
    or that ``kinks (n,)`` names, is a kink, judged by the interval they span."""
    grad, approx, bound = (np.asarray(x, np.float64) for x in (grad, approx, bound))
    n = grad.shape[0]
    block, index = _positions(flat, directions, n)
    named = np.zeros(n, bool) if kinks is None else np.asarray(kinks, bool)
    error = np.abs(grad - approx)
    failed = ~(error <= safety * bound)  # NaN fails
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(error == 0, 0.0, error / bound)
    kink = named if sides is None else named | sides.disagree
    at = np.flatnonzero(kink)  # usually none: the interval is worked out where needed
    if at.size and sides is None:
        raise ValueError("kinks: got kinks without sides, expected the one-sided differences to judge them by")
    if at.size:
        left, right = sides.left[at], sides.right[at]
        nearest, k_error, k_bound = _kink_rule(grad[at], left, right, sides.bound_left[at], sides.bound_right[at])
        failed[at] = ~(k_error <= safety * k_bound)  # NaN fails
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio[at] = np.where(k_error == 0, 0.0, k_error / k_bound)
    # What an Entry shows: for a kink, the nearer end of its interval, the distance, the smaller bound.
    shown = {j: (nearest[i], k_error[i], k_bound[i]) for i, j in enumerate(at)} if at.size else {}
    rank = np.where(np.isnan(ratio), np.inf, ratio)
    ranked = np.argsort(-rank, kind="stable")[:top_k]
    difference = relative_difference(grad, approx)
    meaningless = _meaningless(grad, approx)
    return Report(
        passed=not failed.any() and meaningless is None,
        textbook_passed=bool(difference <= threshold) and meaningless is None,
        difference=difference,
        per_param={
            name: relative_difference(grad[block == b], approx[block == b]) for b, name in enumerate(flat.names)
        },
        offenders=tuple(name for b, name in enumerate(flat.names) if failed[block == b].any()),
        n_failed=int(failed.sum()),
        n_kinks=int(at.size),
        worst=tuple(
            Entry(flat.names[block[j]], index(j), float(grad[j]),
                  *map(float, shown.get(j, (approx[j], error[j], bound[j]))), kink=bool(kink[j]))  # fmt: skip
            for j in ranked
        ),
        kinks=tuple(
            Kink(flat.names[block[j]], index(j), float(grad[j]), float(left[i]), float(right[i]), float(k_bound[i]),
                 passed=not failed[j], named=bool(named[j]))  # fmt: skip
            for i, j in enumerate(at)
        ),
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
        loss=None if loss is None else float(loss),
        meaningless=meaningless,
    )


def gradient_rounding(scale: float) -> float:
    """The rounding each entry of an exactly computed gradient may carry, where the terms it
    sums are of size ``scale``: ``EXACT_ROUNDING u scale``."""
    return EXACT_ROUNDING * _U * scale


def _meaningless(grad, approx) -> str | None:
    """Why a comparison measured nothing, so that it cannot pass: values that are not finite (a loss
    that overflows near the parameters), or nothing but zeros (every unit dropped or dead)."""
    bad = int(np.sum(~np.isfinite(grad) | ~np.isfinite(approx)))
    if bad:
        return f"{bad} of {grad.size} values are not finite (the loss overflows near the parameters)"
    if not np.any(grad) and not np.any(approx):
        return "every value and its counterpart is 0: nothing was measured (every unit dropped or dead?)"
    return None


def check_step(theta: np.ndarray, epsilon: float) -> None:
    """Refuse a step the parameters cannot resolve: ``x + epsilon == x`` at the largest ``|x|``
    measures nothing (every difference would be 0, and any gradient would pass)."""
    largest = float(np.max(np.abs(theta), initial=0.0))
    if epsilon < np.spacing(largest):
        raise ConfigError("epsilon", epsilon, f"at least {np.spacing(largest):.3g}: float64 cannot tell the largest "
                          f"parameter ({largest:.3g}) from itself plus a smaller step")


def check_loss(loss) -> None:
    """Refuse parameters and data whose loss is not finite: no difference of it means anything."""
    if loss is not None and not np.isfinite(loss):
        raise ConfigError("loss", float(loss), "a finite loss at the parameters (scale the features, or a smaller "
                          "lambd)", shown=f"{float(loss)} at the parameters")


def judge_fd(
    grad, losses, loss, flat: Flat, *, epsilon, directions, grad_rounding: float = 0.0, fd: Differences | None = None,
    **options,
) -> Report:
    """``grad (n,)`` against the finite differences of ``losses (n, 4)`` and ``loss`` (J at the
    parameters), bounds as :func:`differences` gives them (``fd``: already computed, e.g. for
    two gradients checked against the same losses)."""
    if fd is None:
        fd = differences(losses, loss, flat, epsilon=epsilon, directions=directions, grad_rounding=grad_rounding)
    mode = "coordinates" if directions is None else "directions"
    return judge(
        grad, fd.approx, fd.bound, flat, mode=mode, epsilon=epsilon, directions=directions, sides=fd, losses=losses,
        loss=loss, **options,
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
    if threshold >= 1:  # ||g - a|| / (||g|| + ||a||) is at most 1: every gradient would pass
        raise ConfigError("threshold", threshold, "a number in (0, 1): the textbook's difference is at most 1")
    if directions is not None and (
        isinstance(directions, bool) or not isinstance(directions, int | np.integer) or directions < 1
    ):
        raise ConfigError("directions", directions, "None (every coordinate) or an integer >= 1")
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 0:
        raise ConfigError("top_k", top_k, "an integer >= 0")


# ---------------------------------------------------------------------------------------------------
# The perturbed losses of any loss function: each value perturbs only the array it belongs to


@dataclasses.dataclass(frozen=True)
class Bound:
    """``fn(params, *args, **kwargs)`` as ``call(params, arrays)``, the array leaves of
    ``args``/``kwargs`` taken out as ``arrays``. Equal (and of equal hash) for the same ``fn``
    and the same non-array arguments, so that a compiled program can be keyed by it."""

    fn: Callable
    treedef: Any  # of (args, kwargs)
    fixed: tuple  # per leaf of (args, kwargs): None for an array (an input), else (type, value)

    def __call__(self, params, arrays):
        it = iter(arrays)
        filled = [next(it) if f is None else f[1] for f in self.fixed]
        a, k = jax.tree_util.tree_unflatten(self.treedef, filled)
        return self.fn(params, *a, **k)


def bind(fn: Callable, args: tuple, kwargs: dict) -> tuple[Bound, list]:
    """``(call, arrays)`` with ``call(params, arrays) == fn(params, *args, **kwargs)``: the array
    leaves of ``args``/``kwargs`` become inputs of the compiled program (not constants baked
    into it); every other leaf (floats such as ``lambd``, strings, None) stays fixed, and is
    part of the program's key (with its type: ``1`` and ``1.0`` compile apart)."""
    leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
    dynamic = [isinstance(x, jax.Array | np.ndarray) for x in leaves]
    fixed = tuple(None if d else (type(x), x) for x, d in zip(leaves, dynamic, strict=True))
    return Bound(fn, treedef, fixed), [x for x, d in zip(leaves, dynamic, strict=True) if d]


def _hashable(*xs) -> bool:
    try:
        hash(xs)
    except TypeError:
        return False
    return True


def _unit_direction(key, j, shape):
    """The ``j``-th random direction: Gaussian, of norm 1, shaped like one array."""
    v = jax.random.normal(jax.random.fold_in(key, j), shape, jnp.float64)
    return v / jnp.linalg.norm(v)


def _array_sweep(b, leaves, arrays, G, key, steps, *, loss, structure, directions, pattern, base, batch):
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
            kink = jnp.any(jax.vmap(lambda xb: jnp.any(pattern(structure.tree(at(xb)), arrays) != base))(xs))
        if directions is None:
            return J, kink, jnp.zeros(())
        start = sum(leaf.size for leaf in leaves[:b])
        return J, kink, G[:, start : start + size] @ ((xs[2] - xs[1]).ravel() / (steps[2] - steps[1]))

    return jax.lax.map(one, jnp.arange(n_b), batch_size=batch)


def _sweep_program(leaves, arrays, G, key, epsilon, *, call, pattern, structure, directions, with_grad, batches):
    """:func:`sweep`'s program: ``grad (P,) or None``, ``losses (n, 4)``, ``kinks (n,)``,
    ``proj (n, n_g)`` (zeros for coordinates) and the loss at ``leaves``."""

    def loss(leaves, arrays):
        return jnp.reshape(call(structure.tree(leaves), arrays), ())

    leaves, grad = list(leaves), None
    if with_grad:
        j0, grad = jax.value_and_grad(loss)(leaves, arrays)
        grad = jnp.concatenate([g.ravel() for g in grad])
        G = grad[None] if G is None else jnp.concatenate([grad[None], G])
    else:
        j0 = loss(leaves, arrays)  # one loss more for the one-sided differences, beside the 4n
    steps = epsilon * jnp.asarray(STEPS, jnp.float64)
    base = None if pattern is None else pattern(structure.tree(leaves), arrays)
    options = dict(loss=loss, structure=structure, directions=directions, pattern=pattern, base=base)
    parts = [_array_sweep(b, leaves, arrays, G, key, steps, batch=batches[b], **options) for b in range(len(leaves))]
    losses, kinks, proj = (jnp.concatenate(p) for p in zip(*parts, strict=True))
    return grad, losses, kinks, proj, j0


_STATIC = ("call", "pattern", "structure", "directions", "with_grad", "batches")
# One program per loss, pattern, structure, shapes and static options; jit keeps them (and the
# functions they were made from) in its cache.
_compiled_sweep = jax.jit(_sweep_program, static_argnames=_STATIC)


def sweep(call, flat: Flat, arrays, G=None, *, epsilon, directions, key, pattern=None, with_grad=False):
    """Every value's four losses in one compiled program. ``G (n_g, P)``: gradients to project
    on the directions; with ``with_grad``, ``jax.grad`` of ``call`` is computed there too and
    comes first. Returns ``grad (P,) or None``, ``losses (n, 4)``, ``kinks (n,)``, for
    directions ``proj (n, n_g)`` (else None), and the loss at ``flat.leaves`` itself, as NumPy.

    ``call(params, arrays)`` and ``pattern`` (the same form) key the compiled program with
    the shapes: equal ones (a :class:`Bound` of the same function and non-array arguments,
    or the same function) on arrays of the same shapes reuse it. Unhashable ones compile
    anew each time."""
    batches = tuple(  # values per batch, each array: about BATCH_ELEMENTS perturbed entries at once
        max(1, min(leaf.size if directions is None else directions, BATCH_ELEMENTS // (4 * max(leaf.size, 1))))
        for leaf in flat.leaves
    )
    static = dict(call=call, pattern=pattern, structure=flat.structure, directions=directions, with_grad=with_grad,
                  batches=batches)  # fmt: skip
    if _hashable(call, pattern):
        program = functools.partial(_compiled_sweep, **static)
    else:
        program = jax.jit(functools.partial(_sweep_program, **static))
    grad, losses, kinks, proj, j0 = program(flat.leaves, arrays, G, key, np.float64(epsilon))
    return (
        None if grad is None else np.asarray(grad),
        np.asarray(losses),
        np.asarray(kinks),
        None if directions is None else np.asarray(proj),
        float(j0),
    )


@functools.partial(jax.jit, static_argnums=2)
def _draw_directions(key, js, shape):
    return jax.vmap(lambda j: _unit_direction(key, j, shape))(js)


def _numpy_sweep(loss_fn, args, kwargs, flat: Flat, G, *, epsilon, directions, key, kink_pattern):
    """What :func:`sweep` computes, for a loss JAX cannot trace: one call per perturbation."""
    def pattern(leaves):
        return np.asarray(kink_pattern(flat.tree(leaves), *args, **kwargs))

    base = None if kink_pattern is None else pattern(flat.leaves)
    losses, kinks, proj = [], [], []
    for b, x in enumerate(flat.leaves):
        start, n_b = int(flat.starts[b]), x.size if directions is None else directions
        if directions is not None:
            V = np.asarray(_draw_directions(key, b * directions + np.arange(directions), x.shape))
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
    j0 = float(np.asarray(loss_fn(flat.tree(flat.leaves), *args, **kwargs)))
    return np.asarray(losses), np.asarray(kinks, bool), None if directions is None else np.asarray(proj), j0


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
    default ``PRNGKey(0)``). A value whose step crosses a kink (its one-sided differences
    disagree by more than ``KINK_FACTOR`` times the smaller of their bounds) passes when it
    lies between them, widened by ``safety`` times that bound (``report.kinks``);
    ``kink_pattern(params, *args, **kwargs)``, if given, returns an array (e.g. which ReLUs
    are on) whose change names a step as crossing a kink, judged the same way.
    The names ``grads``, ``epsilon``, ``threshold``, ``safety``, ``directions``,
    ``direction_key``, ``kink_pattern`` and ``top_k`` are the check's; every other keyword
    goes to ``loss_fn``.

    Only the array a value belongs to is perturbed; all ``4n`` losses (and the loss at
    ``params``) run in one compiled call. A loss JAX cannot trace (plain NumPy) still works
    when ``grads`` are given: the losses then run in a Python loop (``report.vectorised`` is
    False)."""
    check_options(epsilon, threshold, safety, directions, top_k)
    key = DEFAULT_KEY if direction_key is None else direction_key
    with jax.enable_x64(True):
        flat = flatten(params)
        check_step(flat.theta, epsilon)
        call, arrays = bind(loss_fn, args, kwargs)
        traceable = _check_loss(call, arrays, flat, loss_fn, args, kwargs, epsilon)
        G = None if grads is None else vector_like(grads, params, flat)[None]
        options, grad = dict(epsilon=epsilon, directions=directions, key=key), None
        if traceable:
            pattern = None if kink_pattern is None else bind(kink_pattern, args, kwargs)[0]
            grad, losses, kinks, proj, j0 = sweep(
                call, flat, arrays, G, pattern=pattern, with_grad=G is None, **options
            )
        elif G is None:
            raise TypeError(
                "loss_fn: jax.grad cannot trace it; pass grads= (your own gradients) to check them "
                "against finite differences"
            )
        else:
            losses, kinks, proj, j0 = _numpy_sweep(
                loss_fn, args, kwargs, flat, G, kink_pattern=kink_pattern, **options
            )
    check_loss(j0)
    values = (G[0] if grad is None else grad) if directions is None else proj[:, 0]
    compared = "finite differences vs " + ("grads" if grads is not None else "jax.grad(loss_fn)")
    return judge_fd(
        values, losses, j0, flat, epsilon=epsilon, directions=directions, kinks=kinks, compared=compared,
        threshold=threshold, safety=safety, top_k=top_k, vectorised=traceable,
    )
