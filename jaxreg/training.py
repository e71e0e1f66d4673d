"""Training one network: :func:`train`, a run of one member of :mod:`jaxreg.members`.

Iterations run inside compiled ``lax.scan`` loops (:func:`jaxreg.programs.run_chunk`)
in chunks that end at multiples of ``log_every`` (and at the end); gradients come from
``jax.grad`` of the loss (L2 is always the loss term), updates from optax.

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

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxreg import checkpoint as ckpt
from jaxreg import diagnose, members, splits, validate
from jaxreg.config import TrainConfig, settings
from jaxreg.driver import Events, History, Outcome, Schedule, drive
from jaxreg.errors import ConfigError, ConfigTypeError, TrainingDiverged
from jaxreg.hosts import global_array, is_main, to_host
from jaxreg.members import TrainResult
from jaxreg.programs import Split, TrainState, key_data

__all__ = ["TrainResult", "TrainingDiverged", "train", "train_data_parallel", "make_config", "data_fingerprint"]


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
    on_checkpoint: Callable[[int], None] | None = None,
    on_divergence: str = "raise",
    bucket: bool = False,
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
    iterations (rounded up to a chunk end) and at the end, and ``on_checkpoint(step)`` is
    called after each save; ``resume=True`` continues from it up to ``iterations``.
    ``on_chunk(step, total)`` is called after each chunk, and ``on_costs(start, costs)``
    with its training costs ``(n_steps,)``, one per step from iteration ``start`` (a finer
    history than ``log_every``'s, e.g. for a figure or progress). ``sharding`` places ``X``
    and ``Y`` (e.g. examples split over devices); by default they go to one device.

    ``bucket=True`` pads the examples with examples of weight 0 up to :func:`jaxreg.members.bucket`
    so that runs of nearby sizes (a cross-validation's folds, its refit) share one compiled
    program; it changes nothing but rounding (the same masks; float64 costs to 1e-12).

    When the cost turns NaN or infinite, raises :class:`TrainingDiverged` (its ``result``
    holds the last finite state), or with ``on_divergence="return"`` returns that result
    (``result.diverged_at`` says where). Warns (:class:`~jaxreg.diagnose.StuckWarning`) when
    the cost stopped moving in a dead network or one that predicts one class for every example."""
    validate.train_and_test(X, Y, X_test, Y_test)
    config = make_config(layer_dims, options, X.shape[0])
    _warn_tiny(config.dtype, X=X, X_test=X_test)
    data, impl = _key_arg(key, seed)
    _check_checkpointing(checkpoint, checkpoint_every, resume, on_divergence)
    split = splits.choose(X, Y, validation=validation, validation_split=validation_split, split_seed=split_seed,
                          early_stopping=config.early_stopping)
    if split is not None:
        X, Y = split.X, split.Y
    one = None if split is None else Split(split.train[0], split.valid[0])
    meta = {"config": config.to_json(), "data": data_fingerprint(X, Y),
            "split": None if one is None else data_fingerprint(one.train, one.valid)}
    if sharding is not None or bucket:
        size = members.bucket(X.shape[1]) if bucket else X.shape[1]
        devices = 1 if sharding is None else len(sharding.device_set)
        X, Y, one = _padded(X, Y, one, -(-size // devices) * devices)

    place = jax.device_put if sharding is None else partial(global_array, sharding=sharding)
    g = members.group([config], data, impl, one, stacked=False)
    states, loop = members.start(g, *(place(np.asarray(a, config.dtype)) for a in (X, Y)))
    history = None
    if resume:
        states, history = _resume(checkpoint, states, meta, config.iterations)
    save = None if checkpoint is None else partial(_save, checkpoint, meta, on_checkpoint)
    outcome = drive(loop, states, Schedule(1, int(states.step), config.iterations, config.log_every,
                                           checkpoint_every),
                    history, Events(on_chunk, None if on_costs is None else lambda s, c: on_costs(s, c[0]), save))
    return _result(outcome, g, one, X, Y, X_test, Y_test, on_divergence)


def _result(outcome: Outcome, g: members.Group, split: Split | None, X, Y, X_test, Y_test,
            on_divergence: str) -> TrainResult:
    """The one member judged; a divergence raised (or returned), a run that learned nothing warned of."""
    config = g.configs[0]
    member, = members.finish(outcome, g)
    judged = members.judge(members.kept_params(member.state), config.lambd, split, X, Y, X_test, Y_test,
                           stacked=False)
    result = members.result(member, config, judged)
    if result.diverged_at is not None:
        if on_divergence == "return":
            return result
        raise TrainingDiverged(result.diverged_at, _cost_at(outcome, result.diverged_at), result)
    why = diagnose.stuck(result.params, X, result.iterations, result.clean_costs, result.final_cost,
                         int(result.state.step), config.learning_rate)
    if why is not None:
        warnings.warn(why, diagnose.StuckWarning, stacklevel=3)
    return result


def train_data_parallel(X, Y, layer_dims: Sequence[int] | TrainConfig, *, devices: Sequence | None = None,
                        **kwargs) -> TrainResult:
    """:func:`train` with the examples sharded over ``devices`` (default all of
    ``jax.devices()``, every host's): parameters replicated, XLA reducing the gradient
    sums across devices; the same run as on one device up to the order of floating-point
    sums. Where ``m`` does not divide among the devices, zero-weight examples pad it (all
    devices stay busy; the real examples keep their dropout masks). ``kwargs`` go to ``train``."""
    validate.features_and_labels(X, Y)
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ConfigError("devices", devices, "at least one device", shown="none")
    by_example = NamedSharding(Mesh(np.asarray(devices), ("data",)), P(None, "data"))
    return train(X, Y, layer_dims, sharding=by_example, **kwargs)


def make_config(layer_dims, options: dict, n_x: int) -> TrainConfig:
    """``layer_dims`` as a :class:`TrainConfig` (or the keywords that make one), checked against ``n_x``."""
    if isinstance(layer_dims, TrainConfig):
        if options:
            raise ConfigTypeError(", ".join(options), options, "them in it",
                                  shown="options beside a TrainConfig")
        config = layer_dims
    else:
        config = TrainConfig(layer_dims=layer_dims, **options)
    if config.layer_dims[0] != n_x:
        raise ConfigError("layer_dims", config.layer_dims, f"{n_x} (X has {n_x} features)",
                          shown=f"n_x = {config.layer_dims[0]}")
    if config.dtype == "float64" and not jax.config.jax_enable_x64:
        raise ConfigError("dtype", "float64", "it on: call jax.config.update('jax_enable_x64', True) first",
                          shown="'float64' but jax_enable_x64 is off")
    return config


def _warn_tiny(dtype: str, **arrays) -> None:
    for name, a in arrays.items():
        if a is not None and (count := validate.tiny(a, dtype)):
            warnings.warn(f"{name}: {count} feature values below {dtype}'s smallest normal number "
                          f"({np.finfo(dtype).tiny:.3g}) lose precision or become 0: scale the features or train in "
                          "float64", stacklevel=3)


def _key_arg(key, seed) -> tuple[np.ndarray, str]:
    """The run's key as host key data: ``key``, else ``jax.random.key(seed)`` (seed 0 by default)."""
    if key is None:
        return key_data(seed=validate.seed(0 if seed is None else seed))
    if seed is not None:
        raise ConfigTypeError("key, seed", (key, seed), "one (the key is jax.random.key(seed))", shown="both")
    validate.key(key)
    return key_data(key)


def _check_checkpointing(checkpoint, checkpoint_every, resume, on_divergence) -> None:
    """``checkpoint_every`` an integer >= 1 (or None); ``resume`` only with a checkpoint path."""
    if checkpoint_every is not None and (
        isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int | np.integer)
        or checkpoint_every < 1
    ):
        raise ConfigError("checkpoint_every", checkpoint_every, "an integer >= 1")
    if resume and checkpoint is None:
        raise ConfigError("resume", resume, "checkpoint=PATH", shown="True without a checkpoint path")
    validate.choice("on_divergence", on_divergence, ("raise", "return"))


def data_fingerprint(X, Y) -> str:
    """sha256 of the training data, so a checkpoint is not resumed on other data."""
    digest = hashlib.sha256()
    for a in (X, Y):
        a = np.ascontiguousarray(np.asarray(a, np.float64))
        digest.update(str(a.shape).encode())
        digest.update(a.tobytes())
    return digest.hexdigest()[:16]


def _padded(X, Y, split: Split | None, size: int):
    """``X``, ``Y`` with zero-weight examples appended up to ``size``, and the split whose training
    weights say so and whose width (the masks' stride) is the real examples'; unchanged at ``size``."""
    m = X.shape[1]
    extra = size - m
    if extra == 0:
        return X, Y, split

    def pad(a):
        return np.pad(np.asarray(a), ((0, 0), (0, extra)))

    train_weights = np.ones((1, m)) if split is None else split.train
    return pad(X), pad(Y), Split(pad(train_weights), None if split is None else pad(split.valid), np.int32(m))


def _save(path, meta: dict, on_checkpoint, outcome: Outcome) -> None:
    """The run so far, as a checkpoint: its last finite state and history after a divergence."""
    state = outcome.last_finite[0] if outcome.diverged_at[0] >= 0 else outcome.states
    # The history as a run at the state's step has it: a resumed run logs the state's own row again.
    logged = outcome.history.up_to(0, int(state.step), int(state.step) + 1)
    state = to_host(state) if jax.process_count() > 1 else state  # every process takes part
    if is_main():
        ckpt.save(path, state, {**meta, "history": _history_json(logged)})
        if on_checkpoint is not None:
            on_checkpoint(int(state.step))


def _cost_at(outcome: Outcome, iteration: int) -> float:
    """The non-finite cost that stopped the run (NaN where the history did not log it)."""
    hit = np.flatnonzero(outcome.history.iterations == iteration)
    return float(outcome.history.costs[0, hit[0]]) if hit.size else float("nan")


_HISTORY = ("iterations", "costs", "clean_costs", "valid_iterations", "valid_costs")


def _history_json(history: History) -> dict:
    return {name: (getattr(history, name) if name.endswith("iterations") else getattr(history, name)[0]).tolist()
            for name in _HISTORY}


def _resume(path, template: TrainState, meta: dict, iterations: int) -> tuple[TrainState, History]:
    """Load a checkpoint written by :func:`train` and check it belongs to this run: the same
    settings (but those the table lets change: ``iterations``, and ``learning_rate`` with a
    warning: what a diverged run needs), the same data and the same key (seed)."""
    state, stored = ckpt.load(path, like=template)
    if not isinstance(stored.get("config"), dict) or not isinstance(stored.get("data"), str):
        raise ckpt.CheckpointError(f"{path}: not a checkpoint of jaxreg.train (no run configuration and data)")
    if not all(np.all(np.isfinite(np.asarray(p))) for p in state.params.values()):
        raise ckpt.CheckpointError(f"{path}: corrupted checkpoint: its parameters hold NaN or infinite values, "
                                   "expected the finite state jaxreg saves (even after a divergence)")
    mine, theirs = dict(meta["config"]), dict(stored["config"])
    rules = {name: s.resume for name, (_, s) in settings().items()}
    warned = [(k, mine.get(k), theirs.get(k)) for k, rule in rules.items() if rule == "warn"]
    for d in (mine, theirs):
        for k, rule in rules.items():
            if rule != "same":
                d.pop(k, None)
    differing = sorted(k for k in set(mine) | set(theirs) if ckpt.json_data(mine.get(k), k) != theirs.get(k))
    if differing:
        detail = ", ".join(f"{k}: checkpoint {theirs.get(k)!r}, run {mine.get(k)!r}" for k in differing)
        raise ValueError(f"checkpoint {path}: incompatible configuration ({detail})")
    if stored["data"] != meta["data"]:
        raise ValueError(f"checkpoint {path}: it was written for other training data")
    if stored.get("split") != meta["split"]:
        raise ValueError(f"checkpoint {path}: it was written for other training and validation examples (another "
                         "validation split, split seed or validation set, or none): expected the same")
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
    for name, new, old in warned:
        if new != old:
            warnings.warn(f"checkpoint {path}: resumed at iteration {step} with {name} {new} "
                          f"(its run used {old} before)", stacklevel=3)
    return state, _stored_history(path, stored.get("history"), step)


def _stored_history(path, logged, step: int) -> History:
    """A checkpoint's cost history, refused in words where it is not the lists :func:`train` saves."""
    lists = [logged.get(k, [] if k.startswith("valid") else None) if isinstance(logged, dict) else None
             for k in _HISTORY]
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
