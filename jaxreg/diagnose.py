"""A run that trained but learned nothing: a dead network, a cost that stopped moving.

NumPy only, run on the host after training, and only when the cost history is flat
(:func:`flat_since`), so an ordinary run pays nothing for it.
"""

from __future__ import annotations

import numpy as np

from jaxreg import reference

__all__ = ["StuckWarning", "dead_layers", "flat_since", "stuck"]

FLAT = 1e-7  # relative spread below which a cost "no longer moves"


class StuckWarning(UserWarning):
    """Training ended with a network that cannot learn any more (dead ReLUs, a frozen cost)."""


def flat_since(iterations, costs, final_cost: float, end: int) -> int | None:
    """The first logged iteration from which the cost stayed within ``FLAT`` (relative) of
    ``final_cost`` up to ``end``, when that covers at least the second half of the run and
    three logged costs; else None. ``iterations``, ``costs``: ``(k,)``, the full network's."""
    values = np.append(np.asarray(costs, np.float64), final_cost)
    its = np.append(np.asarray(iterations), end)
    if not np.isfinite(final_cost):
        return None
    near = np.abs(values - final_cost) <= FLAT * max(abs(final_cost), 1e-12)
    first = len(near)
    while first > 0 and near[first - 1]:
        first -= 1
    if len(near) - first < 3 or its[first] > end // 2:
        return None
    return int(its[first])


def _hidden(params: dict, X) -> list[np.ndarray]:
    """The ReLU activations of every hidden layer on ``X (n_x, m)``, and the output ``P(y = 1) (1, m)``:
    the textbook's NumPy forward pass (:func:`jaxreg.reference.forward`), in float64."""
    params = {k: np.asarray(v, np.float64) for k, v in params.items()}
    with np.errstate(over="ignore"):  # a saturated output: exp overflows to inf, the sigmoid to 0
        _, cache = reference.forward(params, np.asarray(X, np.float64))
    return [cache[f"A{l}"] for l in range(1, len(params) // 2 + 1)]


def dead_layers(params: dict, X) -> list[int]:
    """The hidden layers (1-based) whose every ReLU unit outputs 0 on every example of ``X (n_x, m)``."""
    return _dead(_hidden(params, X))


def _dead(layers: list[np.ndarray]) -> list[int]:
    return [l for l, A in enumerate(layers[:-1], start=1) if not A.any()]


def stuck(params: dict, X, iterations, costs, final_cost: float, end: int, learning_rate: float) -> str | None:
    """Why the run learned nothing more, in words with the remedy, or None: a flat cost (see
    :func:`flat_since`) with a dead hidden layer or one prediction for every example."""
    since = flat_since(iterations, costs, final_cost, end)
    if since is None:
        return None
    layers = _hidden(params, X)
    dead = _dead(layers)
    predictions = layers[-1] > 0.5
    if dead:
        what = (f"every ReLU unit of hidden layer {dead[0]} outputs 0 on every training example (a dead network: "
                "no gradient reaches the layers below)")
        wider = ", another seed or a wider layer"
    elif predictions.all() or not predictions.any():
        what = "the network predicts the same class for every training example"
        wider = " or another seed"
    else:
        return None
    return (f"{what}, and the cost has stayed at {final_cost:.6f} since iteration {since}; expected a network "
            f"that learns: try a smaller learning rate (this run's: {learning_rate:g}){wider}")
