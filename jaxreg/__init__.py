"""jaxreg: L2 and inverted dropout for small deep networks, as pure JAX functions,
checked against the textbook's hand-written NumPy backprop.

Names load on first use (PEP 562): ``import jaxreg`` itself imports neither JAX nor
anything else heavy, so the command line answers ``--help`` and bad input at once.
"""

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it (a module's own name: the module itself)
_EXPORTS = {
    "TrainConfig": "jaxreg.config",
    "enable_cache": "jaxreg.compilation",
    "ConfigError": "jaxreg.errors",
    "TrainResult": "jaxreg.training",
    "TrainingDiverged": "jaxreg.errors",
    "train": "jaxreg.training",
    "accuracy": "jaxreg.model",
    "forward": "jaxreg.model",
    "init_params": "jaxreg.model",
    "loss": "jaxreg.model",
    "predict": "jaxreg.model",
    "predict_proba": "jaxreg.model",
    "dropout_masks": "jaxreg.masks",
    "convert_l2": "jaxreg.l2",
    "predict_mc": "jaxreg.uncertainty",
    "train_data_parallel": "jaxreg.training",
    "data": "jaxreg.data",
    "gradcheck": "jaxreg.gradcheck",
    "reference": "jaxreg.reference",
    "sweep": "jaxreg.sweep",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'jaxreg' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name])
    value = module if module.__name__ == f"jaxreg.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_EXPORTS])
