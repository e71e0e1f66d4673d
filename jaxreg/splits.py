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

__all__ = ["DEFAULT_FOLDS", "Splits", "stratified_folds", "holdout", "appended", "check_folds", "check_fraction"]


DEFAULT_FOLDS = 5  # cross-validation folds where no other validation is given, as scikit-learn's GridSearchCV


class Splits(NamedTuple):
    """The data every member sees and each split's weights."""

    X: np.ndarray  # (n_x, m): the training examples (and an appended validation set)
    Y: np.ndarray  # (1, m)
    train: np.ndarray  # (k, 1, m) 0/1: the examples split i trains on
    valid: np.ndarray  # (k, 1, m) 0/1: the examples split i is validated on
    kind: str  # "5-fold", "holdout 0.2", "validation set"


def check_folds(folds, m: int) -> int:
    if isinstance(folds, bool) or not isinstance(folds, int | np.integer) or not 2 <= folds <= m:
        raise ValueError(f"folds: got {folds!r}, expected an integer from 2 to the {m} training examples")
    return int(folds)


def check_fraction(fraction, name: str = "validation_split") -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, int | float | np.floating) or not 0 < fraction < 1:
        raise ValueError(f"{name}: got {fraction!r}, expected a fraction in (0, 1)")
    return float(fraction)


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
    folds = check_folds(folds, Y.shape[1])
    fold_of = _stratified_order(Y, seed) % folds
    valid = (fold_of[None, None, :] == np.arange(folds)[:, None, None]).astype(X.dtype)
    return Splits(X, Y, 1 - valid, valid, f"{folds}-fold")


def holdout(X: np.ndarray, Y: np.ndarray, fraction: float, seed: int = 0) -> Splits:
    """One split validating on about ``fraction`` of each class (at least one example of
    each, at most all but one), training on the rest."""
    fraction = check_fraction(fraction)
    labels = np.asarray(Y).reshape(-1)
    rank = _stratified_order(Y, seed)
    valid = np.zeros(labels.size, X.dtype)
    for cls in np.unique(labels):
        count = int(np.sum(labels == cls))
        keep = min(max(1, round(fraction * count)), count - 1)
        valid[(labels == cls) & (rank < keep)] = 1
    if valid.sum() == 0 or valid.sum() == labels.size:
        raise ValueError(f"validation_split: got {fraction}, which leaves no example to train or to validate on "
                         f"among {labels.size}")
    return Splits(X, Y, (1 - valid)[None, None], valid[None, None], f"holdout {fraction:g}")


def appended(X: np.ndarray, Y: np.ndarray, X_val: np.ndarray, Y_val: np.ndarray) -> Splits:
    """A separate validation set, appended to the training examples with its own weights."""
    m, m_val = X.shape[1], X_val.shape[1]
    train = np.concatenate([np.ones(m), np.zeros(m_val)]).astype(X.dtype)
    return Splits(np.concatenate([X, X_val], axis=1), np.concatenate([Y, Y_val], axis=1), train[None, None],
                  (1 - train)[None, None], "validation set")
