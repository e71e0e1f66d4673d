"""The regularized network as pure JAX functions.

LINEAR->RELU->...->LINEAR->SIGMOID on ``X`` of shape ``(n_x, m)`` (features x
examples), labels ``Y`` of shape ``(1, m)``, parameters ``{"W1": (n1, n0),
"b1": (n1, 1), ...}``. Two regularizers:

* L2: ``lambd/(2m) * sum_l ||W_l||^2`` is part of :func:`loss` (biases are not
  penalised); ``jax.grad(loss)`` gives the gradients, nothing is hand-derived.
* Inverted dropout on hidden layers: ``A = A * D / keep_prob``, where the
  boolean masks ``D`` are explicit values from :func:`dropout_masks` and an
  explicit key. ``keep_prob`` is the probability of *keeping* a unit (the
  textbook's word, never a drop rate); it may differ per hidden layer.

Everything here is pure and jit-able. The public functions check their input once, at the
call, before tracing (see :mod:`jaxreg.validate`); their twins :func:`logits`, :func:`cost`,
:func:`classify` and :func:`initial_params` take checked input and check nothing (what the
compiled programs call). :func:`init_params`, :func:`predict_proba`,
:func:`predict` and :func:`accuracy` run as one compiled program each (not op by op),
also when called outside ``jit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp

from jaxreg import validate
from jaxreg.errors import ConfigError
from jaxreg.masks import dropout_masks
from jaxreg.threefry import normals

__all__ = [
    "init_params",
    "dropout_masks",
    "forward",
    "preactivations",
    "loss",
    "cross_entropy",
    "predict_proba",
    "predict",
    "accuracy",
    "n_layers",
    "logits",
    "cost",
    "classify",
    "initial_params",
]

INIT_SCHEMES = ("he", "lecun", "zeros")


def n_layers(params: dict) -> int:
    """Number of weight layers ``L`` in ``params`` (hidden layers + 1)."""
    return len(params) // 2


def init_params(key, layer_dims: Sequence[int], scheme: str = "he", dtype=None) -> dict:
    """Keyed initialisation. Returns ``{"W<l>": (n_l, n_{l-1}), "b<l>": (n_l, 1)}``.

    ``scheme``: ``"he"`` (``N(0, 2/n_{l-1})``, for ReLU), ``"lecun"`` (the textbook's
    ``randn / sqrt(n_{l-1})``) or ``"zeros"`` (tests only: a zero network cannot learn).
    Biases start at zero. ``dtype`` defaults to JAX's default float. Layer ``l``'s weights
    are ``jax.random.normal(jax.random.split(key, L)[l - 1], (n_l, n_{l-1}))`` times the gain,
    drawn for every layer in one kernel."""
    dims = validate.layer_dims(layer_dims)
    validate.choice("scheme", scheme, INIT_SCHEMES)
    return initial_params(key, dims, scheme, jnp.dtype(dtype or jnp.result_type(float)))


@partial(jax.jit, static_argnums=(1, 2, 3))
def initial_params(key, dims: tuple[int, ...], scheme: str, dtype) -> dict:
    """:func:`init_params` of checked input (``dims`` a tuple, ``dtype`` a NumPy dtype), compiled."""
    gain = {"he": 2.0, "lecun": 1.0, "zeros": 0.0}[scheme]
    shapes = [(dims[l], dims[l - 1]) for l in range(1, len(dims))]
    # The barrier keeps the samples apart from their scaling: fused with it, XLA would round
    # them differently (an ulp) from jax.random.normal's own.
    samples = jax.lax.optimization_barrier(normals(jax.random.split(key, len(shapes)), shapes, dtype))
    params = {}
    for l, (sample, (n, n_prev)) in enumerate(zip(samples, shapes, strict=True), start=1):
        params[f"W{l}"] = sample * jnp.sqrt(jnp.asarray(gain / n_prev, dtype))
        params[f"b{l}"] = jnp.zeros((n, 1), dtype)
    return params


def _check_masks(masks, dims: tuple[int, ...], m: int) -> None:
    hidden = dims[1:-1]
    if len(masks) != len(hidden):
        raise ConfigError("masks", masks, f"{len(hidden)} (one per hidden layer)", shown=f"{len(masks)} masks")
    for l, (mask, n) in enumerate(zip(masks, hidden, strict=True), start=1):
        if tuple(mask.shape) != (n, m):
            raise ConfigError(f"masks[{l - 1}]", mask.shape, f"({n}, {m})", shown=f"shape {tuple(mask.shape)}")


def forward(params: dict, X, *, masks=None, keep_prob=1.0) -> jax.Array:
    """The logits ``Z_L`` of shape ``(1, m)`` for ``X`` of shape ``(n_x, m)``.

    Hidden layers are LINEAR->RELU, then ``A * D / keep_prob`` where ``masks`` (from
    :func:`dropout_masks`) are given; without masks there is no dropout."""
    return preactivations(params, X, masks=masks, keep_prob=keep_prob)[-1]


def preactivations(params: dict, X, *, masks=None, keep_prob=1.0, first: int = 1) -> tuple[jax.Array, ...]:
    """``(Z_first, ..., Z_L)``, each ``Z_l = W_l A_{l-1} + b_l`` of shape ``(n_l, m)`` (``Z_L``: the logits).

    ``X`` is ``A_{first-1}`` of shape ``(n_{first-1}, m)``: the data for ``first = 1`` (the
    default), else the output of hidden layer ``first - 1`` after its dropout. Hidden layers
    are LINEAR->RELU, then ``A * D / keep_prob`` where ``masks`` are given."""
    dims = validate.params(params, validate.features(X) if first == 1 else None)
    L = len(dims) - 1
    if not 1 <= first <= L:
        raise ConfigError("first", first, f"a layer from 1 to {L}")
    if X.shape[0] != dims[first - 1]:
        raise ConfigError("X", X.shape, f"({dims[first - 1]}, m), the input of layer {first}",
                          shown=f"shape {tuple(X.shape)}")
    kps = None
    if masks is not None:
        _check_masks(masks, dims, X.shape[1])
        kps = validate.keep_prob(keep_prob, L - 1)
    return _preactivations(params, X, masks, kps, first)


def _preactivations(params: dict, X, masks, keep_prob, first: int = 1) -> tuple[jax.Array, ...]:
    """:func:`preactivations` of checked input; ``keep_prob``: one value per hidden layer (a
    sequence or an array ``(n_hidden,)``), read only with ``masks``."""
    L = n_layers(params)
    Z = [params[f"W{first}"] @ X + params[f"b{first}"]]
    for l in range(first + 1, L + 1):
        A = jax.nn.relu(Z[-1])
        if masks is not None:
            A = _dropout(A, masks[l - 2], keep_prob[l - 2])
        Z.append(params[f"W{l}"] @ A + params[f"b{l}"])
    return tuple(Z)


def logits(params: dict, X, masks=None, keep_prob=None) -> jax.Array:
    """:func:`forward` of checked input (``keep_prob`` as in :func:`_preactivations`)."""
    return _preactivations(params, X, masks, keep_prob)[-1]


def _dropout(A, mask, keep_prob):
    if validate.is_concrete(keep_prob) and float(keep_prob) == 1.0:
        return A  # Nothing is dropped, nothing to scale (as Equinox's Dropout does).
    return jnp.where(mask, A, 0) / keep_prob


def l2_penalty(params: dict) -> jax.Array:
    """``sum_l ||W_l||^2`` over the weights (biases excluded)."""
    return sum(jnp.sum(jnp.square(params[f"W{l}"])) for l in range(1, n_layers(params) + 1))


def loss(params: dict, X, Y, *, lambd=0.0, masks=None, keep_prob=1.0, weights=None) -> jax.Array:
    """Scalar cost: mean binary cross-entropy plus ``lambd/(2m) * sum_l ||W_l||^2``.

    ``X`` is ``(n_x, m)``, ``Y`` is ``(1, m)`` of 0/1. ``weights`` ``(1, m)`` (0/1: which
    examples are trained on, e.g. a cross-validation fold's) make the cross-entropy their
    weighted mean and ``m`` their sum: with 0/1 weights, exactly the cost of the examples
    of weight 1 alone."""
    validate.features_and_labels(X, Y)
    validate.lambd(lambd)
    dims = validate.params(params, X)
    kps = None
    if masks is not None:
        _check_masks(masks, dims, X.shape[1])
        kps = validate.keep_prob(keep_prob, len(dims) - 2)
    return cost(params, X, Y, lambd, masks, kps, weights)


def cost(params: dict, X, Y, lambd, masks=None, keep_prob=None, weights=None) -> jax.Array:
    """:func:`loss` of checked input (``keep_prob`` as in :func:`_preactivations`): what the
    compiled training step differentiates."""
    ce = cross_entropy(logits(params, X, masks, keep_prob), Y)
    m = X.shape[1] if weights is None else jnp.sum(weights)
    mean = jnp.mean(ce) if weights is None else jnp.sum(weights * ce) / m
    if validate.is_concrete(lambd) and float(lambd) == 0.0:
        return mean
    return mean + lambd / (2 * m) * l2_penalty(params)


def cross_entropy(logits, Y) -> jax.Array:
    """Binary cross-entropy ``(1, m)`` of each example from its logit, for labels ``Y`` of 0 or 1:
    ``-y log(sigmoid(z)) - (1-y) log(1-sigmoid(z)) = softplus((1 - 2y) z)``, one stable softplus
    per example (half the work of two ``log_sigmoid``): saturated units give neither
    ``log(0)`` nor NaN, and well-classified examples keep their tiny loss."""
    return jax.nn.softplus((1 - 2 * Y.astype(logits.dtype)) * logits)


def predict_proba(params: dict, X) -> jax.Array:
    """``P(y = 1 | x)`` of shape ``(1, m)``, the full network without dropout."""
    validate.params(params, validate.features(X))
    return _predict_proba(params, X)


def predict(params: dict, X) -> jax.Array:
    """0/1 predictions ``(1, m)`` (int32): probability above 0.5, as in the textbook."""
    validate.params(params, validate.features(X))
    return _predict(params, X)


def accuracy(params: dict, X, Y) -> jax.Array:
    """Fraction of the ``m`` examples predicted right (scalar, JAX's default float)."""
    validate.features_and_labels(X, Y)
    validate.params(params, X)
    return _accuracy(params, X, Y)


@jax.jit
def _predict_proba(params: dict, X) -> jax.Array:
    return jax.nn.sigmoid(logits(params, X))


def classify(params: dict, X) -> jax.Array:
    """:func:`predict` of checked input: 0/1 ``(1, m)`` int32, not compiled by itself."""
    return (jax.nn.sigmoid(logits(params, X)) > 0.5).astype(jnp.int32)


_predict = jax.jit(classify)


@jax.jit
def _accuracy(params: dict, X, Y) -> jax.Array:
    return jnp.mean(_predict(params, X) == Y, dtype=jnp.result_type(float))
