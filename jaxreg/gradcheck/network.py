"""The three-way check of jaxreg's network, with finite differences at a cost linear in the parameters.

:func:`check_network` compares finite differences of :func:`jaxreg.loss`, ``jax.grad`` of it
and a NumPy backprop (:func:`jaxreg.reference.backward` by default), with L2 and with
dropout on: the masks come from ``key`` (or ``masks``) and stay fixed, so the masked loss
is a deterministic function of the parameters.

The fast path (every coordinate). Moving ``W_l[i, j]`` by ``s`` changes only row ``i`` of
``Z_l``, by ``s A_{l-1}[j, :]`` (moving ``b_l[i]``: by ``s``). From the cached forward pass,
a perturbed loss costs that row through its ReLU and dropout, a rank-one update of
``Z_{l+1}`` (``W_{l+1}[:, i]`` times the row's change) and the layers after it
(:func:`jaxreg.model.preactivations` from layer ``l + 2``), batched over coordinates and
steps in one compiled program; the L2 term changes by ``lambd/(2m) s (2 w + s)``; the loss
at the parameters themselves comes from the cached pass the same way. Kinks are read off the
same numbers: the ReLU pattern (unit on, and kept by its mask) of every layer the step
reaches, against the cached one; they, and any value whose one-sided differences disagree,
are judged by the interval those span (:mod:`jaxreg.gradcheck.core`). With
``directions=K`` the generic path of :mod:`jaxreg.gradcheck.core` runs instead (``4 K``
losses per array), with the same pattern.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg import model, reference, validate
from jaxreg.config import MIN_KEEP_PROB
from jaxreg.errors import ConfigError
from jaxreg.gradcheck import core
from jaxreg.gradcheck.core import EPSILON, SAFETY, STEPS, THRESHOLD, TOP_K
from jaxreg.gradcheck.flat import Flat, flatten, vector_like
from jaxreg.gradcheck.report import NetworkReport

__all__ = ["check_network"]

# One compiled program draws all of a check's masks (op by op, it would compile dozens).
_draw_masks = jax.jit(model.dropout_masks, static_argnums=(1, 2, 3))


class _Problem(NamedTuple):
    dims: tuple[int, ...]  # layer_dims
    masks: tuple[np.ndarray, ...] | None  # (n_l, m) bool per hidden layer, None without dropout
    keep: Any  # keep_prob per hidden layer with masks, else 1.0


def _problem(params, X, Y, lambd, keep_prob, key, masks) -> _Problem:
    """Validate the network check's inputs; draw the masks from ``key`` where needed."""
    dims = validate.params(params, validate.features(X))
    validate.features_and_labels(X, Y)
    validate.lambd(lambd)
    kps = validate.keep_prob(keep_prob, len(dims) - 2)
    if min(kps) < MIN_KEEP_PROB:  # as in training: masks draw 16 bits per unit, so no unit would be kept
        raise ConfigError("keep_prob", min(kps), f"at least 2**-16 = {MIN_KEEP_PROB:.3g}: a smaller keep_prob keeps no "
                          "unit, and the check would measure nothing")
    if all(kp == 1.0 for kp in kps):
        if masks is not None and not all(np.all(np.asarray(mask)) for mask in masks):
            raise ValueError("masks: got masks that drop units with keep_prob 1, expected keep_prob < 1 for dropout")
        return _Problem(dims, None, 1.0)
    if masks is None:
        if key is None:
            raise ValueError(
                f"key: got None with keep_prob {list(kps)}, expected a key (or masks=) for the "
                "dropout masks, which stay fixed during the check"
            )
        masks = _draw_masks(key, dims, X.shape[1], kps)
    elif key is not None:
        raise ValueError("key, masks: got both, expected one (the masks are either drawn from key or given)")
    if len(masks) != len(kps):
        raise ValueError(f"masks: got {len(masks)} masks, expected {len(kps)} (one per hidden layer)")
    for l, (mask, kp) in enumerate(zip(masks, kps, strict=True), start=1):
        if kp == 1.0 and not np.all(np.asarray(mask)):
            raise ValueError(f"masks[{l - 1}]: drops units in a layer with keep_prob 1, expected all True")
    return _Problem(dims, tuple(np.asarray(mask, bool) for mask in masks), tuple(kps))


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
    safety: float = SAFETY,
    directions: int | None = None,
    direction_key=None,
    top_k: int = TOP_K,
) -> NetworkReport:
    """Three-way check of the network ``params`` (``{"W1": (n1, n0), "b1": (n1, 1), ...}``)
    on ``X`` ``(n_x, m)``, ``Y`` ``(1, m)``: finite differences of ``jaxreg.loss`` vs
    ``jax.grad(jaxreg.loss)`` vs ``backward(params, X, Y, lambd=, masks=, keep_prob=)``
    (NumPy, returning ``dW1, db1, ...``; the reference backprop by default).

    Dropout (any ``keep_prob < 1``) needs ``key`` (masks from
    :func:`jaxreg.model.dropout_masks`) or ``masks``; the masks stay fixed, so all three
    see the same masks. Every coordinate is checked on the fast path (cost linear in the
    parameters), or ``directions=K`` random directions per array. A perturbation whose
    ReLU pattern (a unit kept by its mask turning on or off, on some example) differs
    from the unperturbed one crosses a kink, as does one whose one-sided differences
    disagree beyond their bounds: it is listed in ``kinks`` and passes the error model
    (``passed``) when the gradient lies between its one-sided differences, each widened by
    ``safety`` times its bound; the textbook's verdict takes its two-sided difference."""
    core.check_options(epsilon, threshold, safety, directions, top_k)
    problem = _problem(params, X, Y, lambd, keep_prob, key, masks)
    with jax.enable_x64(True):
        flat = flatten(params)
        core.check_step(flat.theta, epsilon)
        p64 = flat.tree(flat.leaves)
        X64, Y64 = np.asarray(X, np.float64), np.asarray(Y, np.float64)
        with np.errstate(over="ignore", invalid="ignore"):  # judged below: what is not finite cannot pass
            g_back = backward(p64, X64, Y64, lambd=float(lambd), masks=problem.masks, keep_prob=problem.keep)
        g_back = vector_like(g_back, params, flat, "backward")
        if directions is None:
            g_auto, losses, kinks, j0 = _fast_path(p64, X64, Y64, problem, float(lambd), epsilon)
            values = (g_auto, g_back)
        else:
            key = core.DEFAULT_KEY if direction_key is None else direction_key
            g_auto, losses, kinks, proj, j0 = _directional(
                flat, X64, Y64, problem, float(lambd), g_back, epsilon=epsilon, directions=directions, key=key
            )
            values = (proj[:, 0], proj[:, 1])
    core.check_loss(j0)
    # Both gradients round like the terms they sum: the finite differences' bounds include that too.
    with np.errstate(over="ignore"):  # a saturated sigmoid in the reference's forward pass: 0 or 1, as meant
        scale = _gradient_scale(flat, g_auto, p64, X64, Y64, problem, float(lambd))
    options = dict(threshold=threshold, safety=safety, top_k=top_k)
    differences = core.differences(losses, j0, flat, epsilon=epsilon, directions=directions,
                                   grad_rounding=core.gradient_rounding(scale))  # fmt: skip
    fd = dict(losses=losses, loss=j0, flat=flat, epsilon=epsilon, directions=directions, kinks=kinks, fd=differences,
              **options)  # fmt: skip
    return NetworkReport.combine(
        core.judge_fd(values[0], compared="finite differences vs jax.grad(jaxreg.loss)", **fd),
        core.judge_fd(values[1], compared="finite differences vs backward", **fd),
        core.judge_exact(g_back, g_auto, flat, scale=scale, compared="backward vs jax.grad(jaxreg.loss)", **options),
    )


def _gradient_scale(flat: Flat, grad, params, X, Y, problem: _Problem, lambd: float) -> float:
    """How large the gradient's terms are, for the rounding of two exact gradients. A backprop
    rounds the output error ``dZ_L = sigmoid(z) - y`` absolutely (to about u, not u |dZ_L|):
    where the network is sure, ``|dZ_L|`` is tiny and so is the gradient, but not its
    rounding. So the cross-entropy's part counts as if the largest ``|dZ_L|`` were 1; the
    L2 part ``lambd/m W`` counts as it is."""
    m = X.shape[1]
    _, cache = reference.forward(params, X, masks=problem.masks, keep_prob=problem.keep)
    logits = cache[f"Z{len(problem.dims) - 1}"]
    delta = np.max(np.exp(-np.logaddexp(0, -(1 - 2 * Y) * logits)))  # max |sigmoid(z) - y|, no cancellation
    l2 = np.concatenate(
        [lambd / m * leaf.ravel() * (name[0] == "W") for name, leaf in zip(flat.names, flat.leaves, strict=True)]
    )
    data = np.abs(grad - l2)
    return float(np.max(data[np.isfinite(data)], initial=0.0) / max(delta, 1e-300) + np.max(np.abs(l2)))


# ---------------------------------------------------------------------------------------------------
# The fast path


def _act(Z, mask, keep_prob):
    """A hidden layer's ReLU and inverted dropout, as in :func:`jaxreg.model.preactivations`."""
    A = jax.nn.relu(Z)
    return A if mask is None else jnp.where(mask, A, 0) / keep_prob


def _on(Z, mask):
    """The ReLU pattern: units on and kept (dropped units do not reach the loss)."""
    return Z > 0 if mask is None else (Z > 0) & mask


class _Net(NamedTuple):
    """The cached forward pass. Index ``l`` is layer ``l`` (``Z[0]``, ``mask[0]``, ``keep[0]``
    unused), so ``Z[l]`` is ``Z_l`` ``(n_l, m)``; ``A[0]`` is ``X``."""

    params: dict
    masks: tuple | None  # as model.loss takes them
    keep: Any  # 1.0, or the (L - 1,) keep_prob of the hidden layers
    Z: tuple
    A: tuple
    on: tuple
    mask: tuple  # mask[l]: (n_l, m) bool of hidden layer l, or None

    @classmethod
    def build(cls, params, X, masks, keep):
        Z = (None, *model.preactivations(params, X, masks=masks, keep_prob=keep))
        L = len(Z) - 1
        mask = (None, *(None if masks is None else masks[l - 1] for l in range(1, L)))
        kp = (None, *(None if masks is None else keep[l - 1] for l in range(1, L)))
        A = (X, *(_act(Z[l], mask[l], kp[l]) for l in range(1, L)))
        on = (None, *(_on(Z[l], mask[l]) for l in range(1, L)))
        return cls(params, masks, keep, Z, A, on, mask)

    def row_mask(self, l, i):
        return None if self.mask[l] is None else self.mask[l][i][None]

    def layer_mask(self, l):
        return None if self.mask[l] is None else self.mask[l][None]

    def kp(self, l):
        return None if self.masks is None else self.keep[l - 1]


def _downstream(net: _Net, l: int, i, z):
    """Row ``i`` of ``Z_l`` replaced by ``z (4, m)`` (one row per step): the logits ``(4, m)``
    and whether any later ReLU pattern changed."""
    L = len(net.Z) - 1
    if l == L:
        return z, jnp.zeros((), bool)  # the output row: no ReLU
    mask = net.row_mask(l, i)
    kink = jnp.any(_on(z, mask) != net.on[l][i][None])
    change = _act(z, mask, net.kp(l)) - net.A[l][i][None]  # (4, m): row i of A_l moves, nothing else
    Z = net.Z[l + 1][None] + net.params[f"W{l + 1}"][:, i][None, :, None] * change[:, None, :]
    if l + 1 == L:
        return Z[:, 0, :], kink
    kink |= jnp.any(_on(Z, net.layer_mask(l + 1)) != net.on[l + 1][None])
    A = _act(Z, net.layer_mask(l + 1), net.kp(l + 1))
    rest = jax.vmap(lambda A: model.preactivations(net.params, A, masks=net.masks, keep_prob=net.keep, first=l + 2))(A)
    for k, Zk in enumerate(rest[:-1], start=l + 2):
        kink |= jnp.any(_on(Zk, net.layer_mask(k)) != net.on[k][None])
    return rest[-1][:, 0, :], kink


def _layer_sweep(net: _Net, l: int, Y, lambd, steps, batch: int):
    """Layer ``l``'s coordinates, ``(i, j)`` for row ``i`` and ``j`` a column of ``W_l`` or
    (``j = n_{l-1}``) the bias: losses ``(n_l, n_{l-1} + 1, 4)`` and kink flags ``(n_l, n_{l-1} + 1)``."""
    m = Y.shape[1]
    A_in = jnp.concatenate([net.A[l - 1], jnp.ones((1, m), net.A[l - 1].dtype)])  # a bias moves Z_l[i] by s
    n_out, n_in = net.Z[l].shape[0], A_in.shape[0]
    W = net.params[f"W{l}"]
    penalty = model.l2_penalty(net.params)
    sign = 1 - 2 * Y  # (1, m): cross-entropy is softplus((1 - 2y) z), as in model.loss

    def one(c):
        i, j = c // n_in, c % n_in
        logits, kink = _downstream(net, l, i, net.Z[l][i][None] + steps[:, None] * A_in[j][None])
        cost = jnp.mean(jax.nn.softplus(sign * logits), axis=1)
        w = W[i, jnp.minimum(j, n_in - 2)]
        l2 = penalty + jnp.where(j < n_in - 1, steps * (2 * w + steps), 0.0)  # biases are not penalised
        return cost + lambd / (2 * m) * l2, kink

    J, kink = jax.lax.map(one, jnp.arange(n_out * n_in), batch_size=batch)
    return J.reshape(n_out, n_in, 4), kink.reshape(n_out, n_in)


@functools.partial(jax.jit, static_argnames=("batches",))
def _fast_program(params, X, Y, masks, keep_prob, lambd, epsilon, *, batches):
    """``jax.grad`` of the loss ``(P,)``, every coordinate's four losses ``(P, 4)`` and kink
    flags ``(P,)``, in the textbook's order (W1, b1, W2, ...), and the loss at ``params``
    computed as the perturbed ones are (from the cached pass)."""
    keep = 1.0 if masks is None else keep_prob
    grad = jax.grad(model.loss)(params, X, Y, lambd=lambd, masks=masks, keep_prob=keep)
    net = _Net.build(params, X, masks, keep)
    steps = epsilon * jnp.asarray(STEPS, X.dtype)
    losses, kinks = [], []
    for l, batch in enumerate(batches, start=1):
        J, kink = _layer_sweep(net, l, Y, lambd, steps, batch)
        losses += [J[:, :-1].reshape(-1, 4), J[:, -1]]
        kinks += [kink[:, :-1].ravel(), kink[:, -1]]
    g = jnp.concatenate([grad[f"{c}{l}"].ravel() for l in range(1, len(batches) + 1) for c in "Wb"])
    m = Y.shape[1]
    j0 = jnp.mean(jax.nn.softplus((1 - 2 * Y) * net.Z[-1])) + lambd / (2 * m) * model.l2_penalty(params)
    return g, jnp.concatenate(losses), jnp.concatenate(kinks), j0


def _batches(dims: tuple[int, ...], m: int) -> tuple[int, ...]:
    """Coordinates per batch, per layer: about ``core.BATCH_ELEMENTS`` numbers held at once."""
    out = []
    for l in range(1, len(dims)):
        per_coordinate = 4 * m * (2 + sum(dims[l + 1 :]))
        out.append(max(1, min(dims[l] * (dims[l - 1] + 1), core.BATCH_ELEMENTS // per_coordinate)))
    return tuple(out)


def _fast_path(params, X, Y, problem: _Problem, lambd: float, epsilon: float):
    keep = None if problem.masks is None else np.asarray(problem.keep, np.float64)
    batches = _batches(problem.dims, X.shape[1])
    out = _fast_program(params, X, Y, problem.masks, keep, np.float64(lambd), np.float64(epsilon), batches=batches)
    return tuple(np.asarray(x) for x in out)


# ---------------------------------------------------------------------------------------------------
# Random directions: the generic path, with the model's pattern for kinks


@dataclasses.dataclass(frozen=True)
class _DirectionalLoss:
    """``jaxreg.loss`` as :func:`core.sweep` calls it, ``arrays = (X, Y, masks, lambd)``; equal
    for equal ``keep`` (1.0, or the hidden layers' keep_prob), so its program is reused."""

    keep: Any

    def __call__(self, params, arrays):
        X, Y, masks, lambd = arrays
        return model.loss(params, X, Y, lambd=lambd, masks=masks, keep_prob=self.keep)


@dataclasses.dataclass(frozen=True)
class _DirectionalPattern:
    """The ReLU pattern (units on and kept) of every hidden layer, flat, same arguments."""

    keep: Any

    def __call__(self, params, arrays):
        X, _, masks, _ = arrays
        Z = model.preactivations(params, X, masks=masks, keep_prob=self.keep)[:-1]
        return jnp.concatenate([_on(Zl, None if masks is None else masks[l]).ravel() for l, Zl in enumerate(Z)])


def _directional(flat: Flat, X, Y, problem: _Problem, lambd: float, g_back, *, epsilon, directions, key):
    arrays = (X, Y, problem.masks, np.float64(lambd))
    options = dict(epsilon=epsilon, directions=directions, key=key, pattern=_DirectionalPattern(problem.keep))
    return core.sweep(_DirectionalLoss(problem.keep), flat, arrays, g_back[None], with_grad=True, **options)
