"""Monte Carlo dropout: the predictive mean and spread over dropout masks.

With explicit keys, sampling ``N`` dropout networks is ``jax.vmap`` over ``N`` keys
split from one. Each sample is one thinned network: :func:`jaxreg.forward` with the
masks :func:`jaxreg.dropout_masks` draws for its key and one example, applied to
every example. Each example's mean and spread are those of per-example masks (its
units are dropped with the same probabilities), and maps over a grid come out
smooth, the same thinned networks being used everywhere.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from jaxreg import validate
from jaxreg.model import dropout_masks, forward, predict_proba

__all__ = ["predict_mc"]


@partial(jax.jit, static_argnames=("layer_dims", "keep_prob", "samples"))
def _mc(params, X, key, *, layer_dims, keep_prob, samples):
    def one(k):
        # One thinned network per sample: masks over units, shared by every example.
        masks = tuple(jnp.broadcast_to(d, (d.shape[0], X.shape[1]))
                      for d in dropout_masks(k, layer_dims, 1, keep_prob))
        return jax.nn.sigmoid(forward(params, X, masks=masks, keep_prob=keep_prob))

    # lax.map in batches of vmapped samples: memory grows with the batch, not with samples.
    probs = jax.lax.map(one, jax.random.split(key, samples), batch_size=min(samples, 32))  # (samples, 1, m)
    return jnp.mean(probs, axis=0), jnp.std(probs, axis=0)


def predict_mc(params: dict, X, key, keep_prob, samples: int = 100) -> tuple[jax.Array, jax.Array]:
    """Mean and standard deviation ``(1, m)`` of ``P(y = 1 | x)`` over ``samples``
    thinned networks (inverted dropout with ``keep_prob``, one value or one per hidden
    layer), sample ``i`` using ``dropout_masks(jax.random.split(key, samples)[i],
    layer_dims, 1, keep_prob)`` for every example.

    The same key gives the same result; ``keep_prob = 1`` gives the plain
    :func:`jaxreg.predict_proba` and a standard deviation of 0."""
    dims = validate.params(params, validate.features(X))
    kps = validate.keep_prob(keep_prob, len(dims) - 2)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples: got {samples!r}, expected an integer >= 1")
    validate.key(key)
    X = jnp.asarray(X, params["W1"].dtype)
    if all(kp == 1.0 for kp in kps):  # nothing is dropped: every sample is the plain network
        proba = predict_proba(params, X)
        return proba, jnp.zeros_like(proba)
    return _mc(params, X, key, layer_dims=dims, keep_prob=kps, samples=samples)
