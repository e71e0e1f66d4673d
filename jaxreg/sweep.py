"""Hyperparameter sweeps: a grid of ``lambd`` x ``keep_prob`` x seeds (x folds) in one compiled loop.

Every member is the run :func:`jaxreg.train` would do for that configuration alone
(``key = jax.random.key(seed)``, the same validation split): the same initial state,
masks and step code (:func:`jaxreg.programs.run_chunk`), under ``jax.vmap`` over the
members, by the same core (:mod:`jaxreg.members`) and loop (:func:`jaxreg.driver.drive`). Hyperparameter values are
traced, so the whole grid compiles once per program (once with dropout, once without
where the grid holds ``keep_prob = 1``). In float64 a member equals the lone run to
rounding (1e-12 here); in float32 rounding differs too, and 30000 steps at a high
learning rate can amplify it to a visibly different run.

The choice is made on validation data, never on the test set (:mod:`jaxreg.selection`):
stratified K-fold cross-validation (5 folds by default: each fold is one more member
axis, a 0/1 weight over the same examples), a held-out fraction, or a validation set.
The chosen configuration is then refit on every training example and only that refit
meets the test set.

Scale-out is JAX's own SPMD: the member axis is sharded over a 1-D mesh of
``jax.devices()`` (padded to a multiple of the device count), the data replicated;
members never talk to each other. When the grid would not fit ``memory_budget``
(bytes per device) it runs in equal chunks of members, one after the other, with the
same results. :func:`jaxreg.train_data_parallel` is the other axis: one model, examples
sharded over the devices, parameters replicated, gradient sums reduced by XLA.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxreg import members, splits, validate
from jaxreg.config import Program, TrainConfig
from jaxreg.driver import Events, Schedule, drive
from jaxreg.errors import ConfigError, ConfigTypeError
from jaxreg.hosts import agreed_min, global_array
from jaxreg.programs import MEMBERS, Split
from jaxreg.resources import MEMBER_HOST_BYTES, host_memory, member_bytes
from jaxreg.selection import NoChoice, SweepResult
from jaxreg.splits import DEFAULT_FOLDS
from jaxreg.training import TrainResult, make_config, train

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "DEFAULT_FOLDS",
    "SweepResult",
    "NoChoice",
    "sweep",
    "member_bytes",
    "default_memory_budget",
]

DEFAULT_MEMORY_BUDGET = 2 * 2**30  # bytes per device where the device does not report its memory


# ----------------------------------------------------------------------------- grid checks


def _grid_values(name: str, values) -> list:
    """A grid axis as a list: a sequence, an array (NumPy's or JAX's: its rows) or one value."""
    if hasattr(values, "__array__") and not isinstance(values, Sequence):
        values = np.asarray(values)  # NumPy's or JAX's: concrete values
        values = [values[()]] if values.ndim == 0 else list(values)
    elif isinstance(values, str | bytes) or not isinstance(values, Sequence):
        values = [values]
    values = list(values)
    if not values:
        raise ConfigError(name, values, "at least one value", shown="an empty grid")
    return values


def _seeds(seeds) -> list[int]:
    """``seeds``: a count ``N`` (seeds 0..N-1) or a sequence of distinct seeds, each as
    :func:`jaxreg.validate.seed` takes them. A count is bounded by the host's memory: each
    member costs at least ``MEMBER_HOST_BYTES``."""
    seeds = validate.scalar(seeds)
    if isinstance(seeds, int | np.integer) and not isinstance(seeds, bool | np.bool_):
        most = (host_memory() or 2**63) // MEMBER_HOST_BYTES
        if not 1 <= seeds <= most:
            raise ConfigError("seeds", seeds, f"a count >= 1 and <= {most} (each member of a sweep takes at least "
                              f"{MEMBER_HOST_BYTES} bytes of host memory), or a list of seeds", shown=str(seeds))
        return list(range(int(seeds)))
    values = _grid_values("seeds", seeds)
    for s in values:
        validate.seed(s, "seeds")
    _distinct("seeds", values, "seeds")
    return [int(s) for s in values]


def _distinct(name: str, values: list, what: str = "values") -> None:
    if len(set(values)) != len(values):
        raise ConfigError(name, values, f"distinct {what}", shown=str(values))


def _grid(layer_dims, n_x: int, lambd, keep_prob, seeds, options: dict) -> tuple[list[TrainConfig], np.ndarray]:
    """Every configuration, ``lambd`` slowest and seed fastest, and each one's seed."""
    for name in ("key", "seed"):
        if name in options:
            raise ConfigTypeError(name, options[name], "seeds=N or seeds=[s, ...]",
                                  shown=f"{options[name]!r} (not a sweep option)")
    lambds = _grid_values("lambd", lambd)
    seed_list = _seeds(seeds)
    keep_probs = _grid_values("keep_prob", keep_prob)
    configs = [make_config(layer_dims, dict(options, lambd=lam, keep_prob=kp), n_x)
               for lam in lambds for kp in keep_probs for _ in seed_list]
    _distinct("lambd", [c.lambd for c in configs[:: len(keep_probs) * len(seed_list)]])
    _distinct("keep_prob", [c.keep_prob for c in configs[: len(keep_probs) * len(seed_list): len(seed_list)]])
    return configs, np.tile(np.asarray(seed_list, np.uint64), len(lambds) * len(keep_probs))


# ----------------------------------------------------------------------------- memory


def default_memory_budget(device=None) -> int:
    """Half of ``device``'s memory where it reports it (GPUs, TPUs), else 2 GiB."""
    device = device or jax.devices()[0]
    try:
        limit = (device.memory_stats() or {}).get("bytes_limit")
    except Exception:  # backends without memory statistics
        limit = None
    return int(limit) // 2 if limit else DEFAULT_MEMORY_BUDGET


def _budget(memory_budget, device) -> int:
    if memory_budget is None:
        return default_memory_budget(device)
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, int | np.integer) or memory_budget < 1:
        raise ConfigError("memory_budget", memory_budget, "a number of bytes >= 1")
    return int(memory_budget)


def _chunking(n: int, n_devices: int, per_device: int) -> tuple[int, int]:
    """``(chunks, size)``: ``n`` members in equal chunks (one compilation) of ``size``, a
    multiple of ``n_devices`` holding at most ``per_device`` members per device."""
    n_chunks = math.ceil(n / (per_device * n_devices))
    size = math.ceil(math.ceil(n / n_chunks) / n_devices) * n_devices
    return n_chunks, size


# ----------------------------------------------------------------------------- the sweep


def sweep(
    X,
    Y,
    layer_dims: Sequence[int],
    *,
    lambd=(0.0,),
    keep_prob=(1.0,),
    seeds=1,
    folds: int | None = None,
    validation: tuple | None = None,
    validation_split: float | None = None,
    split_seed: int = 0,
    refit: bool = True,
    X_test=None,
    Y_test=None,
    memory_budget: int | None = None,
    devices: Sequence | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    **options,
) -> SweepResult:
    """Train every ``lambd`` x ``keep_prob`` x seed configuration of the network ``layer_dims``,
    judge each on validation data and refit the best on every training example.

    ``lambd``: grid values (numbers >= 0); ``keep_prob``: grid values, each a float or
    one value per hidden layer (a bare float is a one-value grid); ``seeds``: a count
    ``N`` (seeds ``0..N-1``) or a list; each seed ``s`` runs with ``jax.random.key(s)``,
    as ``train(seed=s)`` does. ``options`` are the other :class:`TrainConfig` fields,
    shared by the grid (``early_stopping=P`` too).

    Validation: ``validation=(X_val, Y_val)``, or ``validation_split=F`` (a stratified
    held-out fraction), or ``folds=K`` stratified folds (the default: 5 folds when
    neither of the others is given; ``folds=0``: no validation, nothing is chosen),
    drawn from ``split_seed``. With ``refit``, the best configuration (see
    :meth:`SweepResult.ranking`) is trained on all of ``X`` with its first seed and only
    that run is judged on ``X_test``.

    ``memory_budget``: bytes per device (default :func:`default_memory_budget`);
    ``devices``: the devices to shard the members over (default all of ``jax.devices()``).
    ``on_progress(done, total)`` is called after each compiled chunk, counting
    member-iterations. Diverging members do not stop the sweep: see ``diverged_at``."""
    validate.train_and_test(X, Y, X_test, Y_test)
    configs, seed_of = _grid(layer_dims, X.shape[0], lambd, keep_prob, seeds, options)
    if folds is None and validation is None and validation_split is None:
        folds = DEFAULT_FOLDS
    split = splits.choose(X, Y, folds=folds, validation=validation, validation_split=validation_split,
                          split_seed=split_seed, early_stopping=configs[0].early_stopping)
    n_splits = 1 if split is None else split.train.shape[0]
    member_config = [c for c in configs for _ in range(n_splits)]
    member_seed, member_fold = np.repeat(seed_of, n_splits), np.tile(np.arange(n_splits), len(configs))
    if split is None:
        member_fold[:] = -1
    Xs, Ys = (X, Y) if split is None else (split.X, split.Y)
    trained, counts = _run(member_config, member_seed, member_fold, split, Xs, Ys, memory_budget, devices,
                           on_progress)
    weights = None if split is None else Split(split.train[member_fold], split.valid[member_fold])
    params = jax.tree_util.tree_map(lambda *a: np.stack(a), *[members.kept_params(m.state) for m in trained])
    judged = members.judge(params, [c.lambd for c in member_config], weights, Xs, Ys,
                           X_test if split is None else None, Y_test, stacked=True)
    keys = members.seed_keys(member_seed)
    runs = [members.result(m._replace(state=m.state._replace(key=jax.random.wrap_key_data(keys[r]))), c, judged, r)
            for r, (m, c) in enumerate(zip(trained, member_config, strict=True))]
    result = SweepResult.of(runs, member_seed, member_fold, None if split is None else split.kind, **counts)
    if refit and split is not None and result.ranking():
        result = result._replace(refit=_refit(result, X, Y, X_test, Y_test))
    return result


def _run(member_config, member_seed, member_fold, split, X, Y, memory_budget, devices, on_progress):
    """Train every member, in chunks of members that fit the memory budget, sharded over the
    devices: their :class:`~jaxreg.members.Member` s in grid order, and the counts of programs,
    chunks and devices."""
    base = member_config[0]
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ConfigError("devices", devices, "at least one device", shown="none")
    per_member = member_bytes(base.layer_dims, X.shape[1], dtype=base.dtype, optimizer=base.optimizer,
                              n_steps=min(base.log_every, max(base.iterations, 1)), split=split is not None,
                              early_stopping=base.early_stopping is not None)
    data_bytes = (X.size + Y.size) * np.dtype(base.dtype).itemsize
    local = next((d for d in devices if d.process_index == jax.process_index()), devices[0])
    per_device = agreed_min(max(1, (_budget(memory_budget, local) - data_bytes) // per_member))
    mesh = Mesh(np.asarray(devices), (MEMBERS,)) if len(devices) > 1 else None
    place = _placement(mesh, devices)
    Xd, Yd = (place(np.asarray(a, base.dtype), P()) for a in (X, Y))

    groups: dict[Program, list[int]] = {}
    for i, config in enumerate(member_config):  # one compiled program with dropout, one without
        groups.setdefault(Program.of(config, split=split is not None), []).append(i)
    trained: list = [None] * len(member_config)
    done, total, n_chunks = 0, len(member_config) * base.iterations, 0
    for indices in groups.values():
        chunks, size = _chunking(len(indices), len(devices), per_device)
        n_chunks += chunks
        for c in range(chunks):
            real = indices[c * size: (c + 1) * size]
            idx = np.asarray(real + [real[-1]] * (size - len(real)))  # padding: copies of a real member, dropped
            weights = None if split is None else Split(split.train[member_fold[idx]], split.valid[member_fold[idx]])
            g = members.group([member_config[i] for i in idx], members.seed_keys(member_seed[idx]), "threefry2x32",
                              weights, stacked=True)
            states, loop = members.start(g, Xd, Yd, place=lambda a: place(a, P(MEMBERS)), mesh=mesh)
            progress = None if on_progress is None else partial(_progress, on_progress, done, len(real), total)
            outcome = drive(loop, states, Schedule(len(idx), 0, base.iterations, base.log_every),
                            events=Events(on_chunk=progress))
            done += len(real) * base.iterations
            for i, member in zip(real, members.finish(outcome, g), strict=False):
                trained[i] = member
    return trained, {"n_programs": len(groups), "n_chunks": n_chunks, "n_devices": len(devices)}


def _placement(mesh: Mesh | None, devices: list):
    """``place(host array, spec)``: on the mesh with that partition spec (each process placing
    its devices' shards), else on the one device."""
    if mesh is None:
        return lambda a, spec: jax.device_put(a, devices[0])
    return lambda a, spec: global_array(a, NamedSharding(mesh, spec))


def _progress(on_progress, done: int, members: int, total: int, step: int, _iterations: int) -> None:
    """A chunk's driver progress as member-iterations of the whole sweep."""
    on_progress(done + members * step, total)


def _refit(result: SweepResult, X, Y, X_test, Y_test) -> TrainResult:
    """The chosen configuration trained on every training example with its first seed. With
    early stopping, for the members' mean best iteration (rounded up to a check), as the
    refit has no validation data to stop on."""
    config, best = result.best_config(), result.best()
    if config.early_stopping is not None:
        checks = math.ceil(best["best_iteration_mean"] / config.log_every)
        config = config.replace(iterations=max(1, checks) * config.log_every, early_stopping=None)
    seed = int(result.seed[next(i for i, c in enumerate(result.configs) if c.lambd == config.lambd
                                and c.keep_prob == config.keep_prob)])
    return train(X, Y, config, seed=seed, X_test=X_test, Y_test=Y_test)
