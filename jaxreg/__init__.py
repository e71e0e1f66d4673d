"""jaxreg: L2 and inverted dropout for small deep networks, as pure JAX functions,
checked against the textbook's hand-written NumPy backprop."""

from jaxreg import reference
from jaxreg.model import (
    accuracy,
    dropout_masks,
    forward,
    init_params,
    loss,
    predict,
    predict_proba,
)

__all__ = [
    "accuracy",
    "dropout_masks",
    "forward",
    "init_params",
    "loss",
    "predict",
    "predict_proba",
    "reference",
]
__version__ = "0.1.0"
