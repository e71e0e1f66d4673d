"""Gradient checking: finite differences, with an error model, against any gradient.

* :func:`check`: any scalar loss of a pytree of parameters; checks ``jax.grad(loss_fn)``
  or gradients you pass (keyed like ``params`` or like the textbook's ``dW1``).
* :func:`check_network`: jaxreg's network three ways (finite differences vs
  ``jax.grad(jaxreg.loss)`` vs a NumPy backprop), with L2 and dropout on, every
  coordinate at a cost linear in the parameters.
* :func:`check_directions`: forward mode (``jax.jvp``) vs reverse mode (``jax.vjp``) vs
  finite differences along random directions, to any order, tolerances keyed by dtype.

Reports carry two verdicts: the textbook's (``difference <= 2e-7``, ``textbook_passed``)
and the error model's (``passed``: each value within ``safety`` times the error its own
finite difference may carry; a value whose step crosses a kink, between its one-sided
differences; see :mod:`jaxreg.gradcheck.core`).

Precision: with ``epsilon = 1e-7`` finite differences are meaningless in float32, so
:func:`check` and :func:`check_network` run with float64 enabled (``jax.enable_x64``,
whatever the global setting) on the parameters cast to float64; a loss that still returns
less than float64, or gradients given in float32, are refused with a message that says why.
"""

from jaxreg.gradcheck.core import EPSILON, SAFETY, THRESHOLD, TOP_K, check, relative_difference
from jaxreg.gradcheck.directions import DirectionsReport, check_directions
from jaxreg.gradcheck.network import check_network
from jaxreg.gradcheck.report import Entry, Kink, NetworkReport, Report

__all__ = [
    "EPSILON",
    "SAFETY",
    "THRESHOLD",
    "TOP_K",
    "DirectionsReport",
    "Entry",
    "Kink",
    "NetworkReport",
    "Report",
    "check",
    "check_directions",
    "check_network",
    "relative_difference",
]
