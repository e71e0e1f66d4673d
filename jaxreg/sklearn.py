"""A scikit-learn estimator: :class:`MLPClassifier`, the jaxreg network with examples as rows.

``from jaxreg.sklearn import MLPClassifier`` (needs ``pip install 'jaxreg[sklearn]'``). ``X`` is
``(n_samples, n_features)`` and ``y`` ``(n_samples,)`` holds any two labels, as everywhere in
scikit-learn; the estimator transposes to the library's ``(n_x, m)`` layout and calls
:func:`jaxreg.train` and :func:`jaxreg.predict`, so its predictions are exactly those of
``jaxreg.train(X.T, y01.reshape(1, -1), ...)`` with the same config and seed.

``import jaxreg`` does not import this module (nor scikit-learn).
"""

from __future__ import annotations

import dataclasses
import inspect
import numbers
import textwrap
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted

import jaxreg
from jaxreg import reference
from jaxreg.config import Setting, TrainConfig, settings
from jaxreg.diagnose import StuckWarning
from jaxreg.errors import ConfigError

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn: the estimator's own method
    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

__all__ = ["MLPClassifier", "parameters", "estimator_init"]

_SEED_HIGH = np.iinfo(np.int32).max  # seeds drawn from a RandomState lie in [0, 2**31 - 1)


# The estimator's own parameters (not settings of a run), with their defaults.
_OWN = {
    "early_stopping": False,  # hold out validation_fraction and stop on it (with patience n_iter_no_change)
    "validation_fraction": 0.1,  # jaxreg.train's validation_split
    "random_state": None,  # seeds the run: None is seed 0
}
_OWN_NAMES = {"validation_split": "validation_fraction"}  # library arguments this estimator names otherwise

_NOTES = {  # what the estimator adds to a setting's help: why its default differs, how it is used here
    "iterations": "The textbook runs 30000 at learning rate 0.3. On the built-in dataset, L2 (``lambd=0.7``) and "
    "dropout (``keep_prob=0.86``) runs are within about a point of their 30000-iteration test accuracy by 2000 "
    "steps, raw or standardised; the unregularised network overfits only later. A small network's step costs "
    "microseconds, so a fit's time is mostly compilation either way; 2000 keeps a fit, and ``check_estimator``'s "
    "dozens of fits, quick.",
    "early_stopping": "Used where ``early_stopping=True``.",
}


def _default(field, s: Setting):
    if s.sklearn_default is not dataclasses.MISSING:
        return s.sklearn_default
    return s.outer_default if s.outer is not None else field.default


def parameters(table=TrainConfig) -> list[inspect.Parameter]:
    """The estimator's parameters: every setting of ``table`` under its scikit-learn name (the first,
    ``hidden_layer_sizes``, also by position), then the estimator's own."""
    kinds = iter([inspect.Parameter.POSITIONAL_OR_KEYWORD])
    found = [inspect.Parameter(s.sklearn or name, next(kinds, inspect.Parameter.KEYWORD_ONLY), default=_default(f, s))
             for name, (f, s) in settings(table).items()]
    return found + [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=v) for name, v in _OWN.items()]


def estimator_init(table=TrainConfig):
    """An ``__init__`` whose signature is :func:`parameters` (scikit-learn's ``get_params`` reads it);
    it stores each argument as it is, as scikit-learn requires."""
    signature = inspect.Signature([inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
                                   *parameters(table)])

    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        for name, value in list(bound.arguments.items())[1:]:
            setattr(self, name, value)

    __init__.__signature__ = signature
    return __init__


def _docstring(table=TrainConfig) -> str:
    """The parameters' section of the estimator's docstring, from the table's help."""
    lines = []
    for name, (f, s) in settings(table).items():
        lines.append(f"{s.sklearn or name} : default {_default(f, s)!r}")
        lines += textwrap.wrap(" ".join([s.help + ".", _NOTES.get(name, "")]), 92, initial_indent="    ",
                               subsequent_indent="    ")
    return "\n    ".join(lines)


def _hidden(sizes) -> tuple[int, ...]:
    """``hidden_layer_sizes`` as a tuple of widths (an int is one hidden layer)."""
    given = sizes
    if isinstance(sizes, numbers.Integral):
        sizes = (sizes,)
    sizes = tuple(sizes) if isinstance(sizes, list | tuple | np.ndarray) else None
    if not sizes or not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n > 0 for n in sizes):
        raise ConfigError("hidden_layer_sizes", given, "a non-empty tuple of positive ints (one width per hidden "
                          "layer)")
    return sizes


def _named(err: ConfigError, table=TrainConfig) -> ConfigError:
    """``err`` named by the estimator's parameter (``precision``, not ``dtype``)."""
    declared = settings(table).get(err.field)
    name = (declared[1].sklearn if declared else None) or _OWN_NAMES.get(err.field, err.field)
    return err.renamed(name)


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """Binary LINEAR→RELU→…→SIGMOID network with L2 and inverted dropout, trained by full-batch
    gradient descent (:func:`jaxreg.train`), in scikit-learn's layout.

    ``fit(X, y)``: ``X`` ``(n_samples, n_features)``, ``y`` ``(n_samples,)`` with exactly two
    labels (``classes_``, sorted; ``classes_[1]`` is the positive class). Binary only: more
    classes raise ``ValueError`` (wrap it in ``sklearn.multiclass.OneVsRestClassifier``).

    Parameters
    ----------
    {settings}
    early_stopping : bool, default False
        Hold out ``validation_fraction`` of the training examples (stratified) and stop after
        ``n_iter_no_change`` checks without improvement of their cost, keeping the best
        check's parameters.
    validation_fraction : float, default 0.1
    random_state : None, int or numpy.random.RandomState, default None
        Seeds initialisation, dropout masks and the early-stopping split:
        ``jax.random.key(seed)``. ``None`` means seed 0, so fits are reproducible by default
        (jaxreg's convention, unlike scikit-learn's ``None``); an int is the seed; a
        ``RandomState`` gives ``seed = random_state.randint(2**31 - 1)``, drawn at each fit.

    Attributes
    ----------
    classes_ : ndarray (2,)
    n_features_in_ : int
    feature_names_in_ : ndarray (n_features_in_,), only when ``X`` had string column names
    params_ : dict of ndarray
        ``{{"W1": (n_1, n_features), "b1": (n_1, 1), ..., "WL": (1, n_{{L-1}}), "bL": (1, 1)}}``.
    costs_ : ndarray (k,)
        Training cost (with dropout where on, L2 included) at ``cost_iterations_``.
    cost_iterations_ : ndarray (k,)
        ``0, log_every, 2 * log_every, ...``
    n_iter_ : int
        Iterations run (fewer than ``iterations`` when early stopping or divergence ended the run).
    best_iteration_ : int or None
        With early stopping: the iteration whose parameters were kept.
    valid_costs_ : ndarray (j,)
        With early stopping: the validation cost at each check; else empty.
    config_ : jaxreg.TrainConfig
        The run's validated configuration.
    seed_ : int
        The seed the run used.
    """

    _table = TrainConfig  # the settings this estimator's parameters are derived from
    __init__ = estimator_init(TrainConfig)
    __doc__ = __doc__.format(settings=_docstring(TrainConfig))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False  # one sigmoid output unit
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"binary_only": True}

    # ------------------------------------------------------------------------------- fit

    def _config(self, n_features: int) -> TrainConfig:
        """The run's :class:`jaxreg.TrainConfig` for ``n_features`` inputs; errors name the estimator's parameters."""
        values = {}
        for name, (_, s) in settings(self._table).items():
            value = getattr(self, s.sklearn or name)
            values[name] = s.outer(_hidden(value), n_features) if s.outer is not None else value
        if not isinstance(self.early_stopping, bool | np.bool_):
            raise ConfigError("early_stopping", self.early_stopping, "True or False")
        if not self.early_stopping:
            values["early_stopping"] = None
        if not isinstance(values["keep_prob"], numbers.Real):
            values["keep_prob"] = tuple(values["keep_prob"])
        try:
            return self._table(**values)
        except ConfigError as err:
            raise _named(err, self._table) from None

    def _seed(self) -> int:
        if self.random_state is None:
            return 0
        if isinstance(self.random_state, numbers.Integral) and not isinstance(self.random_state, bool):
            return int(self.random_state)
        if isinstance(self.random_state, np.random.RandomState):
            return int(check_random_state(self.random_state).randint(_SEED_HIGH))
        raise ValueError(f"random_state: got {self.random_state!r}, expected None, an int or a numpy RandomState")

    def fit(self, X, y):
        """Train on ``X`` ``(n_samples, n_features)`` and ``y`` ``(n_samples,)`` of two labels.

        Returns ``self``. A run whose cost turns NaN or infinite keeps the last finite
        parameters and warns (``ConvergenceWarning``): scale the features or lower
        ``learning_rate``."""
        X, y = _validate_data(self, X, y, dtype=(np.float64, np.float32))
        check_classification_targets(y)
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        classes = np.unique(y)
        if y_type != "binary":
            raise ValueError(
                f"Only binary classification is supported. The type of the target is {y_type} "
                f"({classes.size} classes: {classes[:5].tolist()}{', ...' if classes.size > 5 else ''}); "
                f"{type(self).__name__} is binary-only (one sigmoid output unit): wrap it in "
                "sklearn.multiclass.OneVsRestClassifier for more classes"
            )
        if classes.size < 2:
            raise ValueError(
                f"{type(self).__name__} needs 2 classes in y, got 1 class ({classes[0]!r}): "
                "a classifier can't train when only one class is present"
            )
        config = self._config(X.shape[1])
        seed = self._seed()
        Y = (y == classes[1]).astype(config.dtype).reshape(1, -1)
        Xt = np.asarray(X.T, config.dtype)
        options = {}
        if config.early_stopping is not None:
            options = {"validation_split": self.validation_fraction, "split_seed": seed}
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", StuckWarning)
                result = jaxreg.train(Xt, Y, config, seed=seed, on_divergence="return", bucket=True, **options)
            for w in caught:  # scikit-learn's users filter convergence problems by this class
                category = ConvergenceWarning if issubclass(w.category, StuckWarning) else w.category
                warnings.warn(f"{type(self).__name__}: {w.message}", category, stacklevel=2)
        except ConfigError as err:
            raise _named(err, self._table) from None
        if result.diverged_at is not None:
            warnings.warn(f"{type(self).__name__}: training diverged at iteration {result.diverged_at}; the "
                          f"parameters of iteration {int(result.state.step)} were kept: try a smaller learning rate, "
                          "or scale the features (StandardScaler)", ConvergenceWarning, stacklevel=2)
        self.classes_ = classes
        self.config_ = config
        self.seed_ = seed
        self.params_ = {k: np.asarray(v) for k, v in result.params.items()}
        self.costs_ = np.asarray(result.costs)
        self.cost_iterations_ = np.asarray(result.iterations)
        self.n_iter_ = int(result.state.step)
        self.best_iteration_ = result.best_iteration
        self.valid_costs_ = np.asarray(result.valid_costs)
        return self

    # --------------------------------------------------------------------------- predict

    def _columns(self, X) -> np.ndarray:
        """``X`` ``(n_samples, n_features)`` checked against the fit, as the network's ``(n_x, m)``."""
        check_is_fitted(self)
        X = _validate_data(self, X, dtype=(np.float64, np.float32), reset=False)
        return np.asarray(X.T, self.config_.dtype)

    def _forward(self, X) -> tuple[np.ndarray, np.ndarray]:
        """The full network's ``(logits, P(y = 1))``, each ``(n_samples,)``, in NumPy (the textbook's
        forward pass, :func:`jaxreg.reference.forward`): a small network on a batch to predict costs
        microseconds there, and a compiled program per batch size would cost far more."""
        Xt = self._columns(X)
        with np.errstate(over="ignore"):  # exp(-z) of a saturated unit: P = 0 exactly
            proba, cache = reference.forward(self.params_, Xt)
        return cache[f"Z{len(self.params_) // 2}"][0], proba[0]

    def decision_function(self, X) -> np.ndarray:
        """The network's logit ``(n_samples,)``: positive where ``classes_[1]`` is predicted."""
        return self._forward(X)[0]

    def predict_proba(self, X) -> np.ndarray:
        """``(n_samples, 2)``: ``P(classes_[0] | x)``, ``P(classes_[1] | x)``, without dropout."""
        p = np.asarray(self._forward(X)[1], np.float64)
        return np.column_stack([1.0 - p, p])

    def predict_log_proba(self, X) -> np.ndarray:
        """``log(predict_proba(X))``, ``(n_samples, 2)``."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        """Labels ``(n_samples,)`` from ``classes_``: ``classes_[1]`` where its probability is above 0.5."""
        positive = self._forward(X)[1] > 0.5
        return self.classes_[positive.astype(int)]


