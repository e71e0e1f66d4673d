"""A sweep's results, and the choice among its configurations: on validation data, never on the test set.

:class:`SweepResult` holds every member (a configuration ``lambd`` x ``keep_prob`` x seed,
and with cross-validation a fold). Configurations are ranked by their members' mean
validation accuracy, as scikit-learn's ``GridSearchCV`` ranks by its mean cross-validated
score; ties go to the lower mean validation cost, then to the stronger regularisation
(larger ``lambd``, then smaller ``keep_prob``), then to grid order. A configuration with
a diverged member is not ranked. The chosen one is then refit on the whole training set,
and only that refit is judged on the test set.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import numpy as np

from jaxreg.config import TrainConfig
from jaxreg.members import TrainResult, seed_keys
from jaxreg.programs import TrainState

__all__ = ["SweepResult", "NoChoice"]

_METRICS = ("train_accuracy", "valid_accuracy", "valid_cost", "final_cost", "test_accuracy", "best_iteration")


class NoChoice(ValueError):
    """No configuration can be chosen: no validation data, or every configuration diverged."""


class SweepResult(NamedTuple):
    """A finished sweep: ``n`` members in grid order (``lambd`` slowest, then ``keep_prob``,
    seed, fold fastest). Per-member arrays have a leading axis of ``n``; histories are
    ``(n, k)``, NaN from a member's divergence on."""

    lambd: np.ndarray  # (n,) float
    keep_prob: tuple[tuple[float, ...], ...]  # n tuples, one value per hidden layer
    seed: np.ndarray  # (n,) int
    fold: np.ndarray  # (n,) int: the member's validation split (fold), -1 without validation
    states: TrainState  # stacked final states (host arrays; key (n,) typed keys)
    iterations: np.ndarray  # (k,) logged iterations: 0, log_every, ...
    costs: np.ndarray  # (n, k) training cost (with dropout where on)
    clean_costs: np.ndarray  # (n, k) cost of the full network, no dropout
    valid_iterations: np.ndarray  # (j,) validation checks: log_every, 2 log_every, ...
    valid_costs: np.ndarray  # (n, j) validation cost at each check
    final_cost: np.ndarray  # (n,) the full network's cost (L2 included) on the member's training examples
    train_accuracy: np.ndarray  # (n,) on the member's training examples
    valid_accuracy: np.ndarray | None  # (n,) on its validation examples; None without validation
    valid_cost: np.ndarray | None  # (n,) their cross-entropy
    test_accuracy: np.ndarray | None  # (n,) only without validation (with it, only the refit sees the test set)
    best_iteration: np.ndarray  # (n,) early stopping: the check whose parameters were kept, -1 without
    stopped_at: np.ndarray  # (n,) early stopping: where patience ran out, -1 where it did not
    diverged_at: np.ndarray  # (n,) iteration whose cost was not finite, -1 where none
    configs: tuple[TrainConfig, ...]  # (n,) each member's configuration
    validation: str | None  # how members were validated: "5-fold", "holdout 0.2", "validation set", None
    refit: TrainResult | None  # the chosen configuration trained on every training example
    n_programs: int  # compiled programs: 2 where the grid mixes keep_prob 1 and dropout, else 1
    n_chunks: int  # runs of a compiled program, one after the other: n_programs, more when memory-bound
    n_devices: int  # devices the members were sharded over
    runs: tuple[TrainResult, ...] = ()  # each member's run, as train returns it (member(i))

    @property
    def params(self) -> dict:
        """Stacked final parameters ``{"W<l>": (n, n_l, n_{l-1}), ...}``."""
        return self.states.params

    @classmethod
    def of(cls, runs: list[TrainResult], seed: np.ndarray, fold: np.ndarray, validation: str | None,
           **counts) -> SweepResult:
        """The members' runs (each as :func:`jaxreg.train` returns it) in grid order, stacked:
        histories NaN-padded to the longest (a member's ends where its run alone ends)."""
        k = max(len(r.iterations) for r in runs)
        j = max(len(r.valid_iterations) for r in runs)
        longest = next(r for r in runs if len(r.iterations) == k)
        longest_valid = next(r for r in runs if len(r.valid_iterations) == j)

        def rows(name, length):
            return np.stack([np.pad(np.asarray(getattr(r, name), np.float64), (0, length - len(getattr(r, name))),
                                    constant_values=np.nan) for r in runs])

        def metric(name):
            values = [getattr(r, name) for r in runs]
            return None if values[0] is None else np.asarray(values, np.float64)

        def when(name):
            return np.asarray([-1 if getattr(r, name) is None else getattr(r, name) for r in runs], np.int64)

        states = [r.state._replace(key=None) for r in runs]
        states = jax.tree_util.tree_map(lambda *a: np.stack(a), *states)
        keys = jax.random.wrap_key_data(seed_keys(seed))
        return cls(
            lambd=np.asarray([r.config.lambd for r in runs]),
            keep_prob=tuple(r.config.keep_prob for r in runs),
            seed=np.asarray(seed).astype(np.int64),
            fold=np.asarray(fold, np.int64),
            states=states._replace(key=keys),
            iterations=longest.iterations,
            costs=rows("costs", k),
            clean_costs=rows("clean_costs", k),
            valid_iterations=longest_valid.valid_iterations,
            valid_costs=rows("valid_costs", j),
            final_cost=metric("final_cost"),
            train_accuracy=metric("train_accuracy"),
            valid_accuracy=metric("valid_accuracy"),
            valid_cost=metric("valid_cost"),
            test_accuracy=metric("test_accuracy"),
            best_iteration=when("best_iteration"),
            stopped_at=when("stopped_at"),
            diverged_at=when("diverged_at"),
            configs=tuple(r.config for r in runs),
            validation=validation,
            refit=None,
            runs=tuple(runs),
            **counts,
        )

    def member(self, i: int) -> TrainResult:
        """Member ``i`` as the :class:`~jaxreg.training.TrainResult` that ``train`` returns
        (for a diverged member: the one carried by ``TrainingDiverged.result``)."""
        return self.runs[i]

    def records(self) -> list[dict]:
        """One plain dict per member (JSON-ready): its configuration, fold and results."""
        return [{
            "lambd": float(self.lambd[i]),
            "keep_prob": list(self.keep_prob[i]),
            "seed": int(self.seed[i]),
            "fold": None if self.fold[i] < 0 else int(self.fold[i]),
            **{name: _number(_at(getattr(self, name), i)) for name in _METRICS[:-1] if getattr(self, name) is not None},
            "best_iteration": None if self.best_iteration[i] < 0 else int(self.best_iteration[i]),
            "stopped_at": None if self.stopped_at[i] < 0 else int(self.stopped_at[i]),
            "diverged_at": None if self.diverged_at[i] < 0 else int(self.diverged_at[i]),
        } for i in range(len(self.seed))]

    def summary(self) -> list[dict]:
        """Mean and standard deviation over seeds and folds, one dict per (lambd, keep_prob),
        in grid order; diverged members are left out of the means (``diverged`` counts them)."""
        groups: dict[tuple, list[int]] = {}
        for i, key in enumerate(zip(self.lambd.tolist(), self.keep_prob, strict=True)):
            groups.setdefault(key, []).append(i)
        rows = []
        for (lambd, keep_prob), idx in groups.items():
            idx = np.asarray(idx)
            alive = idx[self.diverged_at[idx] < 0]
            row = {"lambd": lambd, "keep_prob": list(keep_prob), "members": len(idx),
                   "seeds": len(set(self.seed[idx].tolist())), "diverged": len(idx) - len(alive)}
            for name in _METRICS:
                values = getattr(self, name)
                if values is None or (name == "best_iteration" and np.all(values < 0)):
                    continue
                values = np.asarray(values, np.float64)[alive]
                row[f"{name}_mean"] = _number(np.mean(values)) if values.size else None
                row[f"{name}_std"] = _number(np.std(values)) if values.size else None
            rows.append(row)
        return rows

    def ranking(self) -> list[dict]:
        """The :meth:`summary` rows that can be ranked (validated, no member diverged), best
        first: higher mean validation accuracy, then lower mean validation cost, then larger
        ``lambd``, then smaller ``keep_prob`` (summed over layers), then grid order."""
        if self.valid_accuracy is None:
            raise NoChoice("no validation data, so no configuration can be chosen: sweep with folds, validation "
                           "or validation_split (the test set is never used to choose)")
        rows = [r for r in self.summary() if r["diverged"] == 0]
        return sorted(rows, key=lambda r: (-r["valid_accuracy_mean"], r["valid_cost_mean"], -r["lambd"],
                                           sum(r["keep_prob"])))

    def best(self) -> dict:
        """The first row of :meth:`ranking`. Raises :class:`NoChoice` when every configuration diverged."""
        ranking = self.ranking()
        if not ranking:
            raise NoChoice(f"every configuration had a diverged member ({int(np.sum(self.diverged_at >= 0))} of "
                           f"{len(self.seed)} members diverged): none can be chosen")
        return ranking[0]

    def best_config(self) -> TrainConfig:
        """The chosen configuration (that of the first member of the best row)."""
        best = self.best()
        return next(c for c, lam, kp in zip(self.configs, self.lambd, self.keep_prob, strict=True)
                    if lam == best["lambd"] and list(kp) == best["keep_prob"])


def _at(values, i: int):
    return None if values is None else values[i].item()


def _number(x) -> float | int | None:
    """A number for JSON: None for None, NaN or infinity."""
    if x is None or isinstance(x, int):
        return x
    x = float(x)
    return x if math.isfinite(x) else None
