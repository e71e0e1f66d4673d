"""Hyperparameter sweeps: a grid of ``lambd`` x ``keep_prob`` x seeds (x folds) in one compiled loop.

Every member is the run :func:`jaxreg.train` would do for that configuration alone
(``key = jax.random.key(seed)``, the same validation split): the same initial state,
masks and step code (:func:`jaxreg.programs.run_chunk`), under ``jax.vmap`` over the
members, by the same loop (:func:`jaxreg.driver.drive`). Hyperparameter values are
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
same results. :func:`train_data_parallel` is the other axis: one model, examples sharded
over the devices, parameters replicated, gradient sums reduced by XLA.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxreg import splits, validate
from jaxreg.config import TrainConfig, check_seed, scalar
from jaxreg.driver import History, Outcome, drive
from jaxreg.hosts import agreed_min, global_array, to_host
from jaxreg.masks import mask_bits_bytes
from jaxreg.programs import (
    MEMBERS,
    Program,
    Split,
    TrainState,
    evaluate_members,
    hyper_of,
    init_members,
    key_data,
    run_chunk,
    run_members,
)
from jaxreg.resources import MEMBER_HOST_BYTES, host_memory
from jaxreg.selection import NoChoice, SweepResult
from jaxreg.splits import DEFAULT_FOLDS
from jaxreg.training import TrainResult, accuracies, course_masks, make_config, train, validation_splits

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "DEFAULT_FOLDS",
    "SweepResult",
    "NoChoice",
    "sweep",
    "member_bytes",
    "default_memory_budget",
    "train_data_parallel",
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
        raise ValueError(f"{name}: got an empty grid, expected at least one value")
    return values


def _seeds(seeds) -> list[int]:
    """``seeds``: a count ``N`` (seeds 0..N-1) or a sequence of distinct seeds, each as
    :func:`jaxreg.config.check_seed` takes them. A count is bounded by the host's memory: each
    member costs at least ``MEMBER_HOST_BYTES``."""
    seeds = scalar(seeds)
    if isinstance(seeds, int | np.integer) and not isinstance(seeds, bool | np.bool_):
        most = (host_memory() or 2**63) // MEMBER_HOST_BYTES
        if not 1 <= seeds <= most:
            raise ValueError(f"seeds: got {seeds}, expected a count >= 1 and <= {most} (each member of a sweep "
                             f"takes at least {MEMBER_HOST_BYTES} bytes of host memory), or a list of seeds")
        return list(range(int(seeds)))
    values = _grid_values("seeds", seeds)
    for s in values:
        check_seed(s, "seeds")
    if len(set(values)) != len(values):
        raise ValueError(f"seeds: got {values}, expected distinct seeds")
    return [int(s) for s in values]


def _distinct(name: str, values: list) -> None:
    if len(set(values)) != len(values):
        raise ValueError(f"{name}: got {values}, expected distinct values")


# ----------------------------------------------------------------------------- memory


def member_bytes(layer_dims: Sequence[int], m: int, *, dtype: str = "float32", optimizer: str = "sgd",
                 n_steps: int = 1, split: bool = False, early_stopping: bool = False) -> int:
    """A generous estimate of the device bytes one member of a sweep needs while training.

    Parameters, gradients, updates and the new parameters (4 copies; one more for early
    stopping's best) plus the optimizer's moments; per step the activations kept for the
    backward pass and their gradients (about 6 numbers per unit and example), the masks
    (5 bytes per hidden unit and example, generously), the block of packed mask bits that
    ``run_chunk`` draws ahead for per-step masks (at most 1 MiB; twice one step's bits,
    generously, where those are more), the ``n_steps`` costs and, with a validation split,
    its two weights per example."""
    dims = validate.layer_dims(layer_dims)
    itemsize = np.dtype(dtype).itemsize
    n_params = sum(dims[l] * dims[l - 1] + dims[l] for l in range(1, len(dims)))
    copies = 4 + {"sgd": 0, "momentum": 1, "adam": 2}.get(optimizer, 2) + early_stopping
    units, hidden = sum(dims[1:]), sum(dims[1:-1])
    step_bits = mask_bits_bytes(dims, m)
    mask_block = max(min(2**20, step_bits * max(n_steps, 1)), 2 * step_bits)
    numbers = copies * n_params + 6 * units * m + n_steps + 2 * m * split
    return itemsize * numbers + 5 * hidden * m + mask_block


def default_memory_budget(device=None) -> int:
    """Half of ``device``'s memory where it reports it (GPUs, TPUs), else 2 GiB."""
    device = device or jax.devices()[0]
    try:
        limit = (device.memory_stats() or {}).get("bytes_limit")
    except Exception:  # backends without memory statistics
        limit = None
    return int(limit) // 2 if limit else DEFAULT_MEMORY_BUDGET


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
    split = _validation(X, Y, configs[0], folds, validation, validation_split, split_seed)
    n_splits = 1 if split is None else split.train.shape[0]
    member_config = [c for c in configs for _ in range(n_splits)]
    member_seed, member_fold = np.repeat(seed_of, n_splits), np.tile(np.arange(n_splits), len(configs))
    if split is None:
        member_fold[:] = -1
    Xs, Ys = (X, Y) if split is None else (split.X, split.Y)
    runs = _run(member_config, member_seed, member_fold, split, Xs, Ys, memory_budget, devices, on_progress)
    result = _result(member_config, member_seed, member_fold, split, runs, Xs, Ys, X_test, Y_test)
    if refit and split is not None and result.ranking():
        result = result._replace(refit=_refit(result, X, Y, X_test, Y_test))
    return result


def _validation(X, Y, base: TrainConfig, folds, validation, validation_split, split_seed) -> splits.Splits | None:
    """How members are validated: a validation set, a held-out fraction or stratified folds."""
    if folds is not None and (validation is not None or validation_split is not None):
        raise ValueError("folds: got folds beside validation data, expected one way to validate")
    if folds is None and validation is None and validation_split is None:
        folds = DEFAULT_FOLDS
    if folds == 0 or folds is None:
        return validation_splits(X, Y, base, validation, validation_split, split_seed)
    if not isinstance(folds, bool) and isinstance(folds, int | np.integer) and folds == 1:
        raise ValueError("folds: got 1, expected 0 (no validation) or a count from 2 (cross-validation)")
    return splits.stratified_folds(np.asarray(X, np.float64), np.asarray(Y, np.float64), folds,
                                   check_seed(split_seed, "split_seed"))


def _run(member_config, member_seed, member_fold, split, X, Y, memory_budget, devices, on_progress) -> dict:
    """Train every member, in chunks of members that fit the memory budget, sharded over the devices."""
    base = member_config[0]
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices: got none, expected at least one device")
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
    members: list = [None] * len(member_config)  # (final state, history, diverged_at) of each member
    done, total, n_chunks = 0, len(member_config) * base.iterations, 0
    for program, indices in groups.items():
        chunks, size = _chunking(len(indices), len(devices), per_device)
        n_chunks += chunks
        for c in range(chunks):
            real = indices[c * size: (c + 1) * size]
            idx = np.asarray(real + [real[-1]] * (size - len(real)))  # padding: copies of a real member, dropped
            progress = None if on_progress is None else partial(_progress, on_progress, done, len(real), total)
            weights = None if split is None else Split(split.train[member_fold[idx]], split.valid[member_fold[idx]])
            outcome = _train_members([member_config[i] for i in idx], member_seed[idx], weights, program, Xd, Yd,
                                     mesh, place, progress)
            done += len(real) * base.iterations
            host = to_host(outcome.states._replace(key=None))
            for r, i in enumerate(real):
                members[i] = _member_of(outcome, host, r)
    return {"members": members, "n_programs": len(groups), "n_chunks": n_chunks, "n_devices": len(devices)}


def _result(member_config, member_seed, member_fold, split, runs: dict, X, Y, X_test, Y_test) -> SweepResult:
    """The members' final states, histories and evaluations, stacked in grid order."""
    final, histories, diverged_at = zip(*runs.pop("members"), strict=True)
    states = jax.tree_util.tree_map(lambda *a: np.stack(a), *final)
    keys = jax.random.wrap_key_data(np.stack([key_data(seed=int(s))[0] for s in member_seed]))
    best = states.best
    history = _stacked(histories)
    for i in np.flatnonzero(best.stopped_at >= 0) if best is not None else ():  # as a run alone ends there
        history.costs[i, history.iterations >= best.stopped_at[i]] = np.nan
        history.clean_costs[i, history.iterations >= best.stopped_at[i]] = np.nan
        history.valid_costs[i, history.valid_iterations > best.stopped_at[i]] = np.nan
    weights = None if split is None else Split(split.train[member_fold], split.valid[member_fold])
    params = states.params if best is None else best.params
    judged = _judge(params, member_config, weights, X, Y, X_test if split is None else None, Y_test)
    no_stop = np.full(len(member_seed), -1, np.int64)
    return SweepResult(
        lambd=np.asarray([c.lambd for c in member_config]),
        keep_prob=tuple(c.keep_prob for c in member_config),
        seed=member_seed.astype(np.int64),
        fold=np.asarray(member_fold, np.int64),
        states=states._replace(key=keys),
        iterations=history.iterations,
        costs=history.costs,
        clean_costs=history.clean_costs,
        valid_iterations=history.valid_iterations,
        valid_costs=history.valid_costs,
        best_iteration=no_stop if best is None else np.asarray(best.step, np.int64),
        stopped_at=no_stop if best is None else np.asarray(best.stopped_at, np.int64),
        diverged_at=np.asarray(diverged_at, np.int64),
        configs=tuple(member_config),
        validation=None if split is None else split.kind,
        refit=None,
        **judged,
        **runs,
    )


def _stacked(histories: list[History]) -> History:
    """One member's histories stacked, NaN-padded to the longest: a chunk of members that all
    stopped early ends its loop sooner than the others."""
    longest = max(histories, key=lambda h: (len(h.iterations), len(h.valid_iterations)))

    def pad(values, k):
        return np.pad(values, ((0, 0), (0, k - values.shape[1])), constant_values=np.nan)

    return longest._replace(
        costs=np.concatenate([pad(h.costs, len(longest.iterations)) for h in histories]),
        clean_costs=np.concatenate([pad(h.clean_costs, len(longest.iterations)) for h in histories]),
        valid_costs=np.concatenate([pad(h.valid_costs, len(longest.valid_iterations)) for h in histories]),
    )


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


def _progress(on_progress, done: int, members: int, total: int, step: int, _iterations: int) -> None:
    """A chunk's driver progress as member-iterations of the whole sweep."""
    on_progress(done + members * step, total)


def _grid(layer_dims, n_x: int, lambd, keep_prob, seeds, options: dict) -> tuple[list[TrainConfig], np.ndarray]:
    """Every configuration, ``lambd`` slowest and seed fastest, and each one's seed."""
    for name in ("key", "seed"):
        if name in options:
            raise TypeError(f"{name}: not a sweep option, expected seeds=N or seeds=[s, ...]")
    lambds = _grid_values("lambd", lambd)
    seed_list = _seeds(seeds)
    keep_probs = _grid_values("keep_prob", keep_prob)
    configs = [make_config(layer_dims, dict(options, lambd=lam, keep_prob=kp), n_x)
               for lam in lambds for kp in keep_probs for _ in seed_list]
    _distinct("lambd", [c.lambd for c in configs[:: len(keep_probs) * len(seed_list)]])
    _distinct("keep_prob", [c.keep_prob for c in configs[: len(keep_probs) * len(seed_list): len(seed_list)]])
    return configs, np.tile(np.asarray(seed_list, np.uint64), len(lambds) * len(keep_probs))


def _budget(memory_budget, device) -> int:
    if memory_budget is None:
        return default_memory_budget(device)
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, int | np.integer) or memory_budget < 1:
        raise ValueError(f"memory_budget: got {memory_budget!r}, expected a number of bytes >= 1")
    return int(memory_budget)


def _placement(mesh: Mesh | None, devices: list):
    """``place(host array, spec)``: on the mesh with that partition spec (each process placing
    its devices' shards), else on the one device."""
    if mesh is None:
        return lambda a, spec: jax.device_put(a, devices[0])
    return lambda a, spec: global_array(a, NamedSharding(mesh, spec))


def _train_members(configs: list[TrainConfig], seeds: np.ndarray, split: Split | None, program: Program, X, Y, mesh,
                   place, on_chunk) -> Outcome:
    """One chunk of members (a multiple of the device count), trained by the driver."""
    base = configs[0]
    data = np.stack([key_data(seed=int(s))[0] for s in seeds])
    hyper = jax.tree_util.tree_map(lambda *a: np.stack(a), *[hyper_of(c) for c in configs])
    masks = [course_masks(c, X.shape[1]) for c in configs]
    masks = None if masks[0] is None else jax.tree_util.tree_map(lambda *a: np.stack(a), *masks)
    data, hyper, masks, split = (jax.tree_util.tree_map(lambda a: place(a, P(MEMBERS)), t)
                                 for t in (data, hyper, masks, split))
    states = init_members(data, impl="threefry2x32", program=program.for_init())  # laid out as its key data

    def run(states, n_steps):
        return run_members(states, hyper, masks, split, X, Y, program=program, n_steps=n_steps, mesh=mesh)

    def replay(states, r, n_steps):  # a diverged member alone, as train runs it: the same program
        state, one = _host_member(states, r), _host_member((hyper, masks, split), r)
        return state if n_steps == 0 else run_chunk(state, *one, X, Y, program=program, n_steps=n_steps)[0]

    return drive(run, states, n=len(configs), start=0, total=base.iterations, log_every=base.log_every,
                 on_chunk=on_chunk, replay=replay)


def _host_member(tree, r: int):
    """Member ``r`` of stacked arrays, on the host (typed keys kept as keys): no device work."""
    def take(a):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(to_host(jax.random.key_data(a))[r], impl=str(jax.random.key_impl(a)))
        return to_host(a)[r]

    return jax.tree_util.tree_map(take, tree)


def _member_of(outcome: Outcome, host: TrainState, r: int) -> tuple[TrainState, History, int]:
    """Member ``r`` of a chunk (``host``: its final states on the host): its final state
    (its last finite one after a divergence, as train keeps), its history and the
    iteration it diverged at (-1: none)."""
    at = int(outcome.diverged_at[r])
    if at < 0:
        state = jax.tree_util.tree_map(lambda a: a[r], host)
    else:
        state = to_host(outcome.last_finite[r]._replace(key=None))
    h = outcome.history  # NaN where the member had diverged
    one = History(h.iterations, h.costs[r:r + 1], h.clean_costs[r:r + 1], h.valid_iterations, h.valid_costs[r:r + 1])
    return state._replace(key=None), one, at


def _judge(params: dict, configs: list[TrainConfig], split: Split | None, X, Y, X_test, Y_test) -> dict:
    """Final costs and exact accuracies of every member, in one compiled call: on its training
    examples, its validation examples (with a split) and the test set (given only without one)."""
    dtype = configs[0].dtype
    lambd = np.asarray([c.lambd for c in configs], dtype)
    Xt = None if X_test is None else np.asarray(X_test, dtype)
    out = to_host(evaluate_members(params, lambd, split, np.asarray(X, dtype), np.asarray(Y, dtype), Xt))
    return dict(
        final_cost=out.final_cost.astype(np.float64),
        valid_cost=None if split is None else out.valid_cost.astype(np.float64),
        **accuracies(out.predictions, Y, split, out.test_predictions, Y_test),
    )


# ----------------------------------------------------------------------------- data parallel


def train_data_parallel(X, Y, layer_dims: Sequence[int], *, devices: Sequence | None = None,
                        **kwargs) -> TrainResult:
    """:func:`jaxreg.train` with the examples sharded over ``devices`` (default all of
    ``jax.devices()``, every host's): parameters replicated, XLA reducing the gradient
    sums across devices; the same run as on one device up to the order of floating-point
    sums. Where ``m`` does not divide among the devices, zero-weight examples pad it (all
    devices stay busy; the dropout masks are then drawn for the padded width, so a run
    with dropout differs from the unpadded one). ``kwargs`` go to ``train``."""
    validate.features_and_labels(X, Y)
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices: got none, expected at least one device")
    by_example = NamedSharding(Mesh(np.asarray(devices), ("data",)), P(None, "data"))
    return train(X, Y, layer_dims, sharding=by_example, **kwargs)
