"""Training one network: :func:`train`, the one-member run of :func:`jaxreg.driver.drive`.

Iterations run inside compiled ``lax.scan`` loops (:func:`jaxreg.programs.run_chunk`)
in chunks that end at multiples of ``log_every`` (and at the end); gradients come from
``jax.grad(jaxreg.loss)`` (L2 is always the loss term), updates from optax.

Dropout mask schedules:

* ``"per-step"``: step ``t`` uses ``dropout_masks(fold_in(mask_key, t), ...)``, so a
  step's mask never depends on how the loop was chunked or resumed;
* ``"fixed"``: ``dropout_masks(mask_key, ...)`` at every step;
* ``"course"``: the textbook's masks (``reference.course_masks``), at every step
  (the textbook reseeds NumPy in each forward pass, so its run uses one mask).

``mask_key`` and the initialisation key come from ``jax.random.split(key)``.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from jaxreg import checkpoint as ckpt
from jaxreg import diagnose, reference, splits, validate
from jaxreg.config import TrainConfig, check_seed
from jaxreg.driver import History, Outcome, drive
from jaxreg.hosts import global_array, is_main, to_host
from jaxreg.programs import Program, Split, TrainState, evaluate, hyper_of, init_state, key_data, run_chunk
from jaxreg.splits import Splits

__all__ = ["TrainResult", "TrainingDiverged", "train", "data_fingerprint", "judge", "accuracies"]


class TrainResult(NamedTuple):
    """A finished run: final parameters and state, history, accuracies.

    With early stopping, ``params`` are those of the best validation check (``best_iteration``),
    and ``state`` is where training ended (``stopped_at``, or the last iteration)."""

    params: dict
    state: TrainState
    iterations: np.ndarray  # (k,) the logged iterations: 0, log_every, 2*log_every, ...
    costs: np.ndarray  # (k,) training cost at those iterations (with dropout where on)
    clean_costs: np.ndarray  # (k,) cost of the full network, without dropout, same iterations
    final_cost: float  # cost of the full network (L2 included, no dropout) at params, on the training examples
    train_accuracy: float
    test_accuracy: float | None
    config: TrainConfig
    valid_accuracy: float | None = None  # on the validation examples, where there are some
    valid_cost: float | None = None  # their mean cross-entropy at params
    valid_iterations: np.ndarray = np.zeros(0, np.int64)  # (j,) the validation checks: log_every, ...
    valid_costs: np.ndarray = np.zeros(0)  # (j,) the validation cost at each check
    best_iteration: int | None = None  # early stopping: the check whose parameters were kept
    stopped_at: int | None = None  # early stopping: the iteration patience ran out, None if it did not


class TrainingDiverged(RuntimeError):
    """The cost turned NaN or infinite. ``result`` holds the last finite parameters."""

    def __init__(self, iteration: int, cost: float, result: TrainResult):
        super().__init__(
            f"training diverged at iteration {iteration} (cost {cost}); the parameters of "
            f"iteration {int(result.state.step)} were kept: try a smaller learning rate"
        )
        self.iteration = iteration
        self.result = result


def _key_arg(key, seed) -> tuple[np.ndarray, str]:
    """The run's key as host key data: ``key``, else ``jax.random.key(seed)`` (seed 0 by default)."""
    if key is None:
        return key_data(seed=check_seed(0 if seed is None else seed))
    if seed is not None:
        raise TypeError("key, seed: got both, expected one (the key is jax.random.key(seed))")
    validate.key(key)
    return key_data(key)


def make_config(layer_dims, options: dict, n_x: int) -> TrainConfig:
    """``layer_dims`` as a :class:`TrainConfig` (or the keywords that make one), checked against ``n_x``."""
    if isinstance(layer_dims, TrainConfig):
        if options:
            raise TypeError(f"{', '.join(options)}: got options beside a TrainConfig, expected them in it")
        config = layer_dims
    else:
        config = TrainConfig(layer_dims=layer_dims, **options)
    if config.layer_dims[0] != n_x:
        raise ValueError(f"layer_dims: got n_x = {config.layer_dims[0]}, expected {n_x} (X has {n_x} features)")
    if config.dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError(
            "dtype: got 'float64' but jax_enable_x64 is off, expected it on: "
            "call jax.config.update('jax_enable_x64', True) first"
        )
    return config


def data_fingerprint(X, Y) -> str:
    """sha256 of the training data, so a checkpoint is not resumed on other data."""
    digest = hashlib.sha256()
    for a in (X, Y):
        a = np.ascontiguousarray(np.asarray(a, np.float64))
        digest.update(str(a.shape).encode())
        digest.update(a.tobytes())
    return digest.hexdigest()[:16]


def course_masks(config: TrainConfig, m: int):
    """The textbook's masks for the ``course`` schedule (with dropout), else None."""
    if config.masks != "course" or not config.dropout:
        return None
    return tuple(np.asarray(d, bool) for d in reference.course_masks(config.layer_dims, m, config.keep_prob))


def train(
    X,
    Y,
    layer_dims: Sequence[int] | TrainConfig,
    *,
    key=None,
    seed: int | None = None,
    X_test=None,
    Y_test=None,
    validation: tuple | None = None,
    validation_split: float | None = None,
    split_seed: int = 0,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    on_chunk: Callable[[int, int], None] | None = None,
    on_costs: Callable[[int, np.ndarray], None] | None = None,
    sharding: jax.sharding.Sharding | None = None,
    **options,
) -> TrainResult:
    """Train the network on ``X (n_x, m)``, ``Y (1, m)``.

    ``layer_dims`` is a :class:`TrainConfig`, or ``[n_x, n_1, ..., 1]`` with ``options``
    the other fields of one (``lambd``, ``keep_prob``, ``learning_rate``, ``iterations``,
    ``optimizer``, ``weight_decay``, ``init``, ``masks``, ``log_every``, ``dtype``,
    ``early_stopping``). ``key`` or ``seed`` (giving ``jax.random.key(seed)``; seed 0 when
    neither is given) drives initialisation and masks.

    Validation: ``validation=(X_val, Y_val)``, or ``validation_split=F`` (a stratified
    fraction of ``X`` held out, drawn from ``split_seed``). Its cost is checked after each
    chunk (every ``log_every`` iterations); with ``early_stopping=P`` training stops after
    ``P`` checks without improvement and keeps the best check's parameters.

    With ``checkpoint``, the state is saved atomically every ``checkpoint_every``
    iterations (rounded up to a chunk end) and at the end; ``resume=True`` continues from
    it up to ``iterations``. ``on_chunk(step, total)`` is called after each chunk, and
    ``on_costs(start, costs)`` with its training costs ``(n_steps,)``, one per step from
    iteration ``start`` (a finer history than ``log_every``'s, e.g. for a figure or progress).
    ``sharding`` places ``X`` and ``Y`` (e.g. examples split over devices); by default
    they go to one device.

    Raises :class:`TrainingDiverged` when the cost turns NaN or infinite; warns
    (:class:`~jaxreg.diagnose.StuckWarning`) when the cost stopped moving in a dead network or
    one that predicts one class for every example."""
    validate.train_and_test(X, Y, X_test, Y_test)
    config = make_config(layer_dims, options, X.shape[0])
    data, impl = _key_arg(key, seed)
    _check_checkpointing(checkpoint, checkpoint_every, resume)
    split = validation_splits(X, Y, config, validation, validation_split, split_seed)
    if split is not None:
        X, Y = split.X, split.Y
    one = None if split is None else Split(split.train[0], split.valid[0])
    meta = {"config": config.to_json(), "data": data_fingerprint(X, Y)}
    if sharding is not None:
        X, Y, one = _padded(X, Y, one, len(sharding.device_set))

    program, hyper = Program.of(config, split=one is not None), hyper_of(config)
    place = jax.device_put if sharding is None else partial(global_array, sharding=sharding)
    Xd, Yd = (place(np.asarray(a, config.dtype)) for a in (X, Y))
    state = init_state(data, impl=impl, program=program.for_init())
    history = None
    if resume:
        state, history = _resume(checkpoint, state, meta, config.iterations)
    masks = course_masks(config, X.shape[1])

    def run(state, n_steps):
        return run_chunk(state, hyper, masks, one, Xd, Yd, program=program, n_steps=n_steps)

    def save(outcome: Outcome):
        state, logged = _member(outcome)
        state = to_host(state) if jax.process_count() > 1 else state  # every process takes part
        if is_main():
            ckpt.save(checkpoint, state, {**meta, "history": _history_json(logged)})

    outcome = drive(run, state, n=1, start=int(state.step), total=config.iterations, log_every=config.log_every,
                    history=history, save=None if checkpoint is None else save, save_every=checkpoint_every,
                    on_chunk=on_chunk, on_costs=None if on_costs is None else lambda s, c: on_costs(s, c[0]))
    state, logged = _member(outcome)
    if jax.process_count() > 1:  # arrays across hosts: the result is the same on every host
        state = to_host(state)
    result = _result(state, logged, config, X, Y, X_test, Y_test, one)
    if outcome.diverged_at[0] >= 0:
        iteration = int(outcome.diverged_at[0])
        raise TrainingDiverged(iteration, _cost_at(outcome, iteration), result)
    why = diagnose.stuck(result.params, X, result.iterations, result.clean_costs, result.final_cost,
                         int(result.state.step), config.learning_rate)
    if why is not None:
        warnings.warn(why, diagnose.StuckWarning, stacklevel=2)
    return result


def _check_checkpointing(checkpoint, checkpoint_every, resume) -> None:
    """``checkpoint_every`` an integer >= 1 (or None); ``resume`` only with a checkpoint path."""
    if checkpoint_every is not None and (
        isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int | np.integer)
        or checkpoint_every < 1
    ):
        raise ValueError(f"checkpoint_every: got {checkpoint_every!r}, expected an integer >= 1")
    if resume and checkpoint is None:
        raise ValueError("resume: got True without a checkpoint path, expected checkpoint=PATH")


def _padded(X, Y, split: Split | None, devices: int):
    """``X``, ``Y`` with zero-weight examples appended up to a multiple of ``devices`` (all of them
    busy), and the split whose training weights say so; unchanged where ``m`` already divides."""
    m = X.shape[1]
    extra = -m % devices
    if extra == 0:
        return X, Y, split
    def pad(a):
        return np.pad(np.asarray(a), ((0, 0), (0, extra)))

    train = np.ones((1, m)) if split is None else split.train
    return pad(X), pad(Y), Split(pad(train), None if split is None else pad(split.valid))


def validation_splits(X, Y, config: TrainConfig, validation, validation_split, split_seed) -> Splits | None:
    """The validation set or held-out fraction a run is judged on (None: none), checked."""
    if validation is not None and validation_split is not None:
        raise ValueError("validation, validation_split: got both, expected one")
    dtype = np.float64
    X, Y = np.asarray(X, dtype), np.asarray(Y, dtype)
    if validation is not None:
        if not isinstance(validation, tuple | list) or len(validation) != 2:
            raise TypeError(f"validation: got {type(validation).__name__}, expected a pair (X_val, Y_val)")
        X_val, Y_val = validation
        validate.features_and_labels(X_val, Y_val, "X_val", "Y_val")
        if X_val.shape[0] != X.shape[0]:
            raise ValueError(f"X_val: got {X_val.shape[0]} features, expected {X.shape[0]} as in X")
        return splits.appended(X, Y, np.asarray(X_val, dtype), np.asarray(Y_val, dtype))
    if validation_split is not None:
        return splits.holdout(X, Y, validation_split, check_seed(split_seed, "split_seed"))
    if config.early_stopping is not None:
        raise ValueError(f"early_stopping: got {config.early_stopping} without validation data, expected "
                         "validation=(X_val, Y_val) or validation_split=F (the cost it watches)")
    return None


def _member(outcome: Outcome) -> tuple[TrainState, History]:
    """The one member's state and history; after a divergence, its last finite ones."""
    if outcome.diverged_at[0] < 0:
        return outcome.states, outcome.history
    return outcome.last_finite[0], outcome.history.up_to(0, int(outcome.diverged_at[0]))


def _cost_at(outcome: Outcome, iteration: int) -> float:
    """The non-finite cost that stopped the run (NaN where the history did not log it)."""
    hit = np.flatnonzero(outcome.history.iterations == iteration)
    return float(outcome.history.costs[0, hit[0]]) if hit.size else float("nan")


def _history_json(history: History) -> dict:
    return {"iterations": history.iterations.tolist(), "costs": history.costs[0].tolist(),
            "clean_costs": history.clean_costs[0].tolist(), "valid_iterations": history.valid_iterations.tolist(),
            "valid_costs": history.valid_costs[0].tolist()}


def judge(params: dict, lambd, X, Y, X_test=None, Y_test=None, split: Split | None = None) -> dict:
    """Trained parameters in one compiled call: ``final_cost`` (the full network's, L2
    included, no dropout, on the training examples), the :func:`accuracies` and ``valid_cost``
    on the validation examples (None without)."""
    dtype = params["W1"].dtype
    Xt = None if X_test is None else np.asarray(X_test, dtype)
    out = evaluate(params, np.asarray(lambd, dtype), np.asarray(X, dtype), np.asarray(Y, dtype), Xt, split)
    judged = {**accuracies(out.predictions, Y, split, out.test_predictions, Y_test),
              "final_cost": out.final_cost, "valid_cost": out.valid_cost}
    return {name: None if value is None else float(value) for name, value in judged.items()}


def accuracies(predictions, Y, split: Split | None = None, test_predictions=None, Y_test=None) -> dict:
    """Accuracies counted exactly on the host from predictions ``(..., 1, m)`` (a leading axis of
    members or none): ``train_accuracy`` on the training examples (``split.train``'s, every one
    without a split), ``valid_accuracy`` on ``split.valid``'s (None without), ``test_accuracy``
    (None without a test set)."""
    right = np.asarray(predictions) == np.asarray(Y)

    def share(hits, weights=1.0):
        return np.sum(hits * weights, axis=(-2, -1)) / np.sum(np.broadcast_to(weights, hits.shape), axis=(-2, -1))

    return {
        "train_accuracy": share(right) if split is None else share(right, np.asarray(split.train)),
        "valid_accuracy": None if split is None or split.valid is None else share(right, np.asarray(split.valid)),
        "test_accuracy": None if test_predictions is None
        else share(np.asarray(test_predictions) == np.asarray(Y_test)),
    }


def _result(state: TrainState, history: History, config, X, Y, X_test, Y_test, split) -> TrainResult:
    best = state.best
    params = state.params if best is None else best.params
    return TrainResult(
        params=params,
        state=state,
        iterations=history.iterations,
        costs=history.costs[0],
        clean_costs=history.clean_costs[0],
        config=config,
        valid_iterations=history.valid_iterations,
        valid_costs=history.valid_costs[0],
        best_iteration=None if best is None else int(best.step),
        stopped_at=None if best is None or int(best.stopped_at) < 0 else int(best.stopped_at),
        **judge(params, config.lambd, X, Y, X_test, Y_test, split),
    )


def _resume(path, template: TrainState, meta: dict, iterations: int) -> tuple[TrainState, History]:
    """Load a checkpoint written by :func:`train` and check it belongs to this run: the same
    configuration (but ``iterations``, and ``learning_rate``, which may change with a warning: what
    a diverged run needs), the same data and the same key (seed)."""
    state, stored = ckpt.load(path, like=template)
    if not isinstance(stored.get("config"), dict) or not isinstance(stored.get("data"), str):
        raise ckpt.CheckpointError(f"{path}: not a checkpoint of jaxreg.train (no run configuration and data)")
    mine, theirs = dict(meta["config"]), dict(stored["config"])
    for d in (mine, theirs):
        d.pop("iterations", None)
    new_rate, old_rate = mine.pop("learning_rate", None), theirs.pop("learning_rate", None)
    differing = sorted(k for k in set(mine) | set(theirs) if ckpt.json_data(mine.get(k), k) != theirs.get(k))
    if differing:
        detail = ", ".join(f"{k}: checkpoint {theirs.get(k)!r}, run {mine.get(k)!r}" for k in differing)
        raise ValueError(f"checkpoint {path}: incompatible configuration ({detail})")
    if stored["data"] != meta["data"]:
        raise ValueError(f"checkpoint {path}: it was written for other training data")
    keys = [np.asarray(key_data(k)[0]) for k in (state.key, template.key)]
    if not np.array_equal(*keys):
        started, run = (int(k[0]) << 32 | int(k[1]) if k.shape == (2,) else k.tolist() for k in keys)
        raise ValueError(f"checkpoint {path}: its run started from seed {started}, this run's from seed {run}: "
                         "expected the same seed (or key)")
    step = int(state.step)
    if step > iterations:
        raise ValueError(
            f"checkpoint {path}: it is at step {step}, past iterations = {iterations}; "
            "expected iterations >= the checkpoint's step (iterations is the run's total length)"
        )
    if new_rate != old_rate:
        warnings.warn(f"checkpoint {path}: resumed at iteration {step} with learning_rate {new_rate} "
                      f"(its run used {old_rate} before)", stacklevel=3)
    return state, _stored_history(path, stored.get("history"), step)


def _stored_history(path, logged, step: int) -> History:
    """A checkpoint's cost history, refused in words where it is not the lists :func:`train` saves."""
    names = ("iterations", "costs", "clean_costs", "valid_iterations", "valid_costs")
    lists = [logged.get(k, [] if k.startswith("valid") else None) if isinstance(logged, dict) else None
             for k in names]
    kinds = (int, int | float, int | float, int, int | float)
    well_formed = all(isinstance(v, list) and all(isinstance(x, kind) and not isinstance(x, bool) for x in v)
                      for v, kind in zip(lists, kinds, strict=True))
    if not (well_formed and len({len(v) for v in lists[:3]}) == 1 and len({len(v) for v in lists[3:]}) == 1
            and all(its == sorted(set(its)) and all(0 <= i <= step for i in its) for its in lists[::3])):
        raise ckpt.CheckpointError(
            f"{path}: corrupted checkpoint: malformed history (got {str(logged)!r:.80}, expected iterations in "
            f"[0, {step}] ascending, costs and clean_costs: lists of numbers of the same length, and the "
            "validation checks likewise)")
    iterations, costs, clean_costs, valid_iterations, valid_costs = lists
    return History(np.asarray(iterations, np.int64), np.asarray([costs], np.float64),
                   np.asarray([clean_costs], np.float64), np.asarray(valid_iterations, np.int64),
                   np.asarray([valid_costs], np.float64))
