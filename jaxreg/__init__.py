"""jaxreg: L2 and inverted dropout for small deep networks, as pure JAX functions,
checked against the textbook's hand-written NumPy backprop."""

from jaxreg import data, gradcheck, reference, sweep
from jaxreg.model import (
    accuracy,
    dropout_masks,
    forward,
    init_params,
    loss,
    predict,
    predict_proba,
)
from jaxreg.train import TrainingDiverged, TrainResult, train
from jaxreg.uncertainty import predict_mc

__all__ = [
    "TrainResult",
    "TrainingDiverged",
    "accuracy",
    "data",
    "dropout_masks",
    "forward",
    "gradcheck",
    "init_params",
    "loss",
    "predict",
    "predict_mc",
    "predict_proba",
    "reference",
    "sweep",
    "train",
]
__version__ = "0.1.0"
