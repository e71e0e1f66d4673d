"""Validation splits: which examples a run trains on and which it is judged on (NumPy only).

A split is a pair of 0/1 weights over the columns of one ``X``, so every fold of a
cross-validation trains in the same compiled program on the same data. Folds and
held-out fractions are stratified (each class spread evenly, as scikit-learn's
``StratifiedKFold`` does for classifiers) and drawn from ``split_seed``: the same seed
gives the same split on every machine. A separate validation set is appended to ``X``
with weight 0 for training and 1 for validation.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxreg import validate
from jaxreg.errors import ConfigError, ConfigTypeError

__all__ = ["DEFAULT_FOLDS", "Splits", "choose", "stratified_folds", "holdout", "appended", "check_folds"]


DEFAULT_FOLDS = 5  # cross-validation folds where no other validation is given, as scikit-learn's GridSearchCV


class Splits(NamedTuple):
    """The data every member sees and each split's weights."""

    X: np.ndarray  # (n_x, m): the training examples (and an appended validation set)
    Y: np.ndarray  # (1, m)
    train: np.ndarray  # (k, 1, m) 0/1: the examples split i trains on
    valid: np.ndarray  # (k, 1, m) 0/1: the examples split i is validated on
    kind: str  # "5-fold", "holdout 0.2", "validation set"


def check_folds(folds, Y) -> int:
    """``folds`` stratified folds of labels ``Y (1, m)``: from 2 to the count of the smaller class,
    so that every fold validates on examples of each class."""
    counts = np.unique(np.asarray(Y).reshape(-1), return_counts=True)[1]
    smallest = int(counts.min()) if counts.size else 0
    if isinstance(folds, bool) or not isinstance(folds, int | np.integer) or not 2 <= folds <= max(smallest, 2):
        raise ConfigError("folds", folds, f"an integer from 2 to {smallest}, the examples of the smaller class "
                          "(every fold validates on examples of each class)")
    if smallest < 2:
        raise ConfigError("folds", folds, "2 examples of each class at least, to validate on each class in each "
                          f"fold (the smaller class has {smallest})")
    return int(folds)


def choose(X, Y, *, folds=None, validation=None, validation_split=None, split_seed=0,
           early_stopping=None) -> Splits | None:
    """How a run is validated, checked: stratified ``folds`` (0 or None: none), a separate
    ``validation=(X_val, Y_val)`` set or a held-out ``validation_split`` fraction, drawn from
    ``split_seed``; None without validation (refused where ``early_stopping`` needs it)."""
    if folds is not None and (validation is not None or validation_split is not None):
        raise ConfigError("folds", folds, "one way to validate", shown="folds beside validation data")
    if validation is not None and validation_split is not None:
        raise ConfigError("validation, validation_split", None, "one", shown="both")
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    if folds is not None and folds != 0:
        if not isinstance(folds, bool) and isinstance(folds, int | np.integer) and folds == 1:
            raise ConfigError("folds", folds, "0 (no validation) or a count from 2 (cross-validation)")
        return stratified_folds(X, Y, folds, validate.seed(split_seed, "split_seed"))
    if validation is not None:
        if not isinstance(validation, tuple | list) or len(validation) != 2:
            raise ConfigTypeError("validation", validation, "a pair (X_val, Y_val)", shown=type(validation).__name__)
        X_val, Y_val = validation
        validate.features_and_labels(X_val, Y_val, "X_val", "Y_val")
        if X_val.shape[0] != X.shape[0]:
            raise ConfigError("X_val", X_val.shape[0], f"{X.shape[0]} as in X", shown=f"{X_val.shape[0]} features")
        return appended(X, Y, np.asarray(X_val, np.float64), np.asarray(Y_val, np.float64))
    if validation_split is not None:
        return holdout(X, Y, validation_split, validate.seed(split_seed, "split_seed"))
    if early_stopping is not None:
        raise ConfigError("early_stopping", early_stopping, "validation=(X_val, Y_val) or validation_split=F (the "
                          "cost it watches)", shown=f"{early_stopping} without validation data")
    return None


def _stratified_order(Y: np.ndarray, seed: int) -> np.ndarray:
    """Each example's rank within its class, after shuffling each class with ``seed``."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(Y).reshape(-1)
    rank = np.empty(labels.size, np.int64)
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        rank[rng.permutation(members)] = np.arange(members.size)
    return rank


def stratified_folds(X: np.ndarray, Y: np.ndarray, folds: int, seed: int = 0) -> Splits:
    """``folds`` folds: fold ``i`` validates on the examples whose within-class rank is ``i``
    modulo ``folds`` and trains on the rest."""
    folds = check_folds(folds, Y)
    fold_of = _stratified_order(Y, seed) % folds
    valid = (fold_of[None, None, :] == np.arange(folds)[:, None, None]).astype(X.dtype)
    return Splits(X, Y, 1 - valid, valid, f"{folds}-fold")


def holdout(X: np.ndarray, Y: np.ndarray, fraction: float, seed: int = 0) -> Splits:
    """One split validating on about ``fraction`` of each class (at least one example of
    each, at most all but one), training on the rest."""
    fraction = validate.fraction(fraction)
    labels = np.asarray(Y).reshape(-1)
    rank = _stratified_order(Y, seed)
    valid = np.zeros(labels.size, X.dtype)
    for cls in np.unique(labels):
        count = int(np.sum(labels == cls))
        keep = min(max(1, round(fraction * count)), count - 1)
        valid[(labels == cls) & (rank < keep)] = 1
    if valid.sum() == 0 or valid.sum() == labels.size:
        raise ConfigError("validation_split", fraction, f"a fraction that leaves examples to train and to validate "
                          f"on among {labels.size}")
    return Splits(X, Y, (1 - valid)[None, None], valid[None, None], f"holdout {fraction:g}")


def appended(X: np.ndarray, Y: np.ndarray, X_val: np.ndarray, Y_val: np.ndarray) -> Splits:
    """A separate validation set, appended to the training examples with its own weights."""
    m, m_val = X.shape[1], X_val.shape[1]
    train = np.concatenate([np.ones(m), np.zeros(m_val)]).astype(X.dtype)
    return Splits(np.concatenate([X, X_val], axis=1), np.concatenate([Y, Y_val], axis=1), train[None, None],
                  (1 - train)[None, None], "validation set")
