"""One L2 strength in every library's convention: :func:`convert_l2`. NumPy only.

The textbook's ``lambd`` adds ``lambd/(2m) * sum_l ||W_l||^2`` to the mean cross-entropy
over the ``m`` training examples, so every gradient step sees ``lambd/m * W`` added to the
weights' gradient (biases are not penalised, here or below). The same regularization, as
other libraries name it:

============  ====================================================================  ===========
convention    what it adds                                                          value
============  ====================================================================  ===========
course        loss: ``lambd/(2m) sum ||W||^2`` (jaxreg, the textbook)               ``lambd``
sklearn       loss: ``alpha/(2 n) sum ||W||^2``, ``MLPClassifier(alpha=...)``       ``lambd``
keras         loss: ``l sum ||W||^2``, ``kernel_regularizer=l2(l)``                 ``lambd/(2m)``
pytorch       gradient: ``wd W``, ``torch.optim.SGD(weight_decay=wd)`` (Adam too)   ``lambd/m``
optax         gradient: ``wd W``, ``chain(add_decayed_weights(wd), optimizer)``     ``lambd/m``
decoupled     update: ``- lr wd W`` beside the optimizer's, ``optax.adamw``,        ``lambd/m``
              ``torch.optim.AdamW``, ``jaxreg train --weight-decay``
============  ====================================================================  ===========

Where each holds:

* ``keras``, ``pytorch`` and ``optax`` change the loss or the gradient the optimizer
  receives, so they equal ``lambd`` under every optimizer (SGD, momentum, Adam) and batch
  size. ``optax`` means :func:`optax.add_decayed_weights` *before* the optimizer's own
  transformation; placed after it (``optax.adamw`` places it after ``scale_by_adam``), it
  is ``decoupled``.
* ``sklearn``: scikit-learn divides ``alpha`` by the examples of each gradient step
  (``_multilayer_perceptron.py``: ``loss += 0.5 * alpha * sum(W**2) / n_samples``), so
  ``alpha == lambd`` where a step sees all ``m`` examples (``solver="lbfgs"``, or
  ``batch_size >= n_samples``); with minibatches of ``B`` it is ``lambd * B / m``.
* ``decoupled``: the decay as optax, PyTorch and Keras define it, multiplied by the
  learning rate (``W -= lr * (direction + wd * W)``; Loshchilov and Hutter's paper
  multiplies it by the schedule only). Under plain gradient descent (no momentum, no Adam)
  that is the ``pytorch`` gradient term, so ``wd = lambd/m``, whatever the learning rate.
  Under momentum or Adam no decoupled decay equals an L2 term: the conversion then gives
  the decay that would equal it under plain gradient descent.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

from jaxreg.errors import ConfigError, ConfigTypeError

__all__ = ["CONVENTIONS", "convert_l2"]

CONVENTIONS = ("course", "sklearn", "keras", "pytorch", "optax", "decoupled")
# Each convention's value is lambd * factor * m ** power.
_SCALE = {
    "course": (1.0, 0),
    "sklearn": (1.0, 0),
    "keras": (0.5, -1),
    "pytorch": (1.0, -1),
    "optax": (1.0, -1),
    "decoupled": (1.0, -1),
}
_IN_LAMBD = {  # each value in terms of the course's lambd, for messages
    "course": "lambd",
    "sklearn": "alpha = lambd",
    "keras": "l2 = lambd/(2m)",
    "pytorch": "weight_decay = lambd/m",
    "optax": "add_decayed_weights(lambd/m)",
    "decoupled": "weight_decay = lambd/m",
}


def convert_l2(value, from_: str, to: str, *, m: int | None = None) -> float:
    """``value``, an L2 strength in convention ``from_``, in convention ``to`` (both one of
    :data:`CONVENTIONS`; see the module's table): e.g. ``convert_l2(0.7, "course", "pytorch",
    m=211)`` is PyTorch's ``weight_decay`` for the textbook's ``lambd = 0.7`` on its 211
    examples, ``0.7 / 211``.

    ``m``, the number of training examples (an integer >= 1), is needed between a
    convention that divides by it (course, sklearn) and one that does not (keras, pytorch,
    optax, decoupled); between two of the same kind it is not (keras ``l`` is pytorch's
    ``wd / 2``). ``sklearn`` equals ``course`` where each step sees all ``m`` examples;
    ``decoupled`` equals ``pytorch`` and ``optax`` under plain gradient descent only (see the
    module's notes). There is no ``learning_rate``: decoupled decay as optax, PyTorch and
    Keras define it is already multiplied by it.

    Raises :class:`~jaxreg.errors.ConfigError` (a ``ValueError``) naming the argument, what it got
    and what was expected: an unknown convention, a negative or non-finite ``value``, ``m`` below 1
    or missing where needed."""
    for name, convention in (("from_", from_), ("to", to)):
        if not isinstance(convention, str) or convention not in _SCALE:
            raise ConfigError(name, convention, f"one of {', '.join(CONVENTIONS)}")
    value = _strength(value)
    if m is not None:
        m = _examples(m)
    (f_from, p_from), (f_to, p_to) = _SCALE[from_], _SCALE[to]
    if p_from == p_to:
        return value * f_to / f_from
    if m is None:
        raise ConfigError("m", None, f"the number of training examples (an integer >= 1): converting {from_} to {to} "
                          f"needs it ({from_}: {_IN_LAMBD[from_]}; {to}: {_IN_LAMBD[to]})")
    scale = value * f_to / f_from
    return scale * m if p_to > p_from else scale / m


def _strength(value) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigTypeError("value", value, "a finite number >= 0")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ConfigError("value", value, "a finite number >= 0", shown=f"{v:g}")
    return v


def _examples(m) -> int:
    if isinstance(m, bool) or not isinstance(m, Integral) or m < 1:
        raise ConfigError("m", m, "an integer >= 1 (the number of training examples)")
    return int(m)
