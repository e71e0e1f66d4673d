"""The textbook's regularized network, hand-written in NumPy (no jax, ever).

This is the independent reference the JAX model is tested against. It follows
the textbook's formulas line by line, generalised from its 3-layer code to any
depth: LINEAR->RELU->...->LINEAR->SIGMOID, L2 as ``lambd/(2m) * sum ||W_l||^2``
and inverted dropout ``A = A * D / keep_prob`` on the hidden layers.

Dropout masks are *inputs* (boolean arrays, one ``(n_l, m)`` per hidden layer),
so this code and the JAX model can be run on the very same masks.
``keep_prob`` is the probability of *keeping* a unit (the textbook's word).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["init_params", "course_masks", "forward", "cost", "backward", "predict", "accuracy"]


def _n_layers(params: dict) -> int:
    return len(params) // 2


def _per_layer(keep_prob, n_hidden: int) -> list[float]:
    """keep_prob as one float per hidden layer."""
    values = np.asarray(keep_prob, dtype=float).reshape(-1)
    if values.size == 1:
        values = np.repeat(values, n_hidden)
    if values.size != n_hidden:
        raise ValueError(
            f"keep_prob: got {values.size} values, expected 1 or {n_hidden} (one per hidden layer)"
        )
    return [float(v) for v in values]


def init_params(layer_dims: Sequence[int], seed: int = 3) -> dict[str, np.ndarray]:
    """The textbook's initialisation: after ``np.random.seed(seed)``, layer by layer,
    ``W_l = randn(n_l, n_{l-1}) / sqrt(n_{l-1})`` of shape ``(n_l, n_{l-1})`` and
    ``b_l = zeros((n_l, 1))``."""
    rng = np.random.RandomState(seed)
    params = {}
    for l in range(1, len(layer_dims)):
        params[f"W{l}"] = rng.randn(layer_dims[l], layer_dims[l - 1]) / np.sqrt(layer_dims[l - 1])
        params[f"b{l}"] = np.zeros((layer_dims[l], 1))
    return params


def course_masks(layer_dims: Sequence[int], m: int, keep_prob, seed: int = 1) -> tuple:
    """The masks the textbook's dropout forward draws after ``np.random.seed(seed)``:
    ``rand(n_1, m) < keep_prob``, then ``rand(n_2, m) < keep_prob``, ... from one
    stream. Returns one boolean ``(n_l, m)`` array per hidden layer."""
    hidden = list(layer_dims[1:-1])
    kps = _per_layer(keep_prob, len(hidden))
    rng = np.random.RandomState(seed)
    return tuple(rng.rand(n, m) < kp for n, kp in zip(hidden, kps, strict=True))


def _relu(z):
    return np.maximum(0, z)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def forward(params: dict, X: np.ndarray, *, masks=None, keep_prob=1.0):
    """Forward pass. ``X`` is ``(n_x, m)``. Returns ``(AL, cache)`` where ``AL`` is the
    ``(1, m)`` sigmoid output and ``cache`` holds ``A0..AL`` (after dropout) and ``Z1..ZL``."""
    L = _n_layers(params)
    kps = _per_layer(keep_prob, L - 1)
    cache = {"A0": X}
    A = X
    for l in range(1, L + 1):
        Z = np.dot(params[f"W{l}"], A) + params[f"b{l}"]
        cache[f"Z{l}"] = Z
        if l == L:
            A = _sigmoid(Z)
        else:
            A = _relu(Z)
            if masks is not None:
                A = A * masks[l - 1]
                A = A / kps[l - 1]
        cache[f"A{l}"] = A
    return A, cache


def cost(AL: np.ndarray, Y: np.ndarray, params: dict | None = None, lambd: float = 0.0) -> float:
    """The textbook's cost: ``-1/m * nansum(Y log AL + (1-Y) log(1-AL))`` plus, where
    ``params`` are given, ``lambd/(2m) * sum_l ||W_l||^2``."""
    m = Y.shape[1]
    logprobs = np.multiply(-np.log(AL), Y) + np.multiply(-np.log(1 - AL), 1 - Y)
    J = 1.0 / m * np.nansum(logprobs)
    if params is not None and lambd:
        squares = sum(np.sum(np.square(params[f"W{l}"])) for l in range(1, _n_layers(params) + 1))
        J = J + lambd / (2 * m) * squares
    return float(J)


def backward(params: dict, X: np.ndarray, Y: np.ndarray, *, lambd=0.0, masks=None, keep_prob=1.0):
    """The textbook's backprop: returns ``{"dW1": (n1, n0), "db1": (n1, 1), ...}``.

    ``dZ_L = A_L - Y``; ``dW_l = dZ_l A_{l-1}^T / m + (lambd/m) W_l``; ``db_l = sum(dZ_l)/m``;
    ``dA_{l-1} = W_l^T dZ_l``, times ``D_{l-1} / keep_prob`` under dropout;
    ``dZ_{l-1} = dA_{l-1} * (A_{l-1} > 0)``."""
    L = _n_layers(params)
    kps = _per_layer(keep_prob, L - 1)
    m = X.shape[1]
    AL, cache = forward(params, X, masks=masks, keep_prob=keep_prob)
    grads = {}
    dZ = AL - Y
    for l in range(L, 0, -1):
        A_prev = cache[f"A{l - 1}"]
        W = params[f"W{l}"]
        grads[f"dW{l}"] = 1.0 / m * np.dot(dZ, A_prev.T) + lambd / m * W
        grads[f"db{l}"] = 1.0 / m * np.sum(dZ, axis=1, keepdims=True)
        if l > 1:
            dA = np.dot(W.T, dZ)
            if masks is not None:
                dA = dA * masks[l - 2]
                dA = dA / kps[l - 2]
            dZ = np.multiply(dA, np.int64(A_prev > 0))
    return {k: grads[k] for k in sorted(grads, key=lambda k: (int(k[2:]), k[1]))}


def predict(params: dict, X: np.ndarray) -> np.ndarray:
    """0/1 predictions ``(1, m)``: the textbook's ``AL > 0.5`` without dropout."""
    AL, _ = forward(params, X)
    return (AL > 0.5).astype(int)


def accuracy(params: dict, X: np.ndarray, Y: np.ndarray) -> float:
    """Fraction of the ``m`` examples predicted right."""
    return float(np.mean(predict(params, X)[0, :] == Y[0, :]))
