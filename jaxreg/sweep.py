"""Hyperparameter sweeps: a grid of ``lambd`` x ``keep_prob`` x seeds in one compiled loop.

Every member is the run :func:`jaxreg.train` would do for that configuration
alone (``key = jax.random.key(seed)``): the same initial state, masks and step code
(:func:`jaxreg.programs.run_chunk`), under ``jax.vmap`` over the configuration axis.
Hyperparameter values are traced, so the whole grid compiles once per program
(once with dropout, once without where the grid holds ``keep_prob = 1``).

Scale-out is JAX's own SPMD: the configuration axis is sharded over a 1-D mesh of
``jax.devices()`` (padded to a multiple of the device count), the data replicated;
members never talk to each other, so a sharded sweep computes what one device
does, up to float rounding (XLA compiles the per-device program apart and may sum
in another order: differences of a few ulps, 4e-16 seen in float64). When the
grid would not fit ``memory_budget`` (bytes per device) it runs in equal chunks of
configurations, one after the other, with the same results.

:func:`train_data_parallel` is the other axis: one model, examples sharded over the
devices, parameters replicated, gradient sums reduced by XLA.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxreg import validate
from jaxreg.config import TrainConfig, check_seed, scalar
from jaxreg.driver import History, Outcome, drive, to_host
from jaxreg.masks import mask_bits_bytes
from jaxreg.programs import (
    MEMBERS,
    Program,
    TrainState,
    evaluate_members,
    hyper_of,
    init_members,
    key_data,
    run_chunk,
    run_members,
)
from jaxreg.resources import MEMBER_HOST_BYTES, host_memory
from jaxreg.training import TrainResult, course_masks, make_config, train

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "SweepResult",
    "sweep",
    "member_bytes",
    "default_memory_budget",
    "train_data_parallel",
]

DEFAULT_MEMORY_BUDGET = 2 * 2**30  # bytes per device where the device does not report its memory


class SweepResult(NamedTuple):
    """A finished sweep: ``n`` members in grid order (``lambd`` slowest, seed fastest).

    Per-member arrays have a leading axis of ``n``; histories are ``(n, k)`` at the
    ``k`` logged iterations, NaN from a member's divergence on."""

    lambd: np.ndarray  # (n,) float
    keep_prob: tuple[tuple[float, ...], ...]  # n tuples, one value per hidden layer
    seed: np.ndarray  # (n,) int
    states: TrainState  # stacked final states (host arrays; key (n,) typed keys)
    iterations: np.ndarray  # (k,) logged iterations: 0, log_every, ...
    costs: np.ndarray  # (n, k) training cost (with dropout where on)
    clean_costs: np.ndarray  # (n, k) cost of the full network, no dropout
    final_cost: np.ndarray  # (n,) cost of the final parameters: full network, L2 included
    train_accuracy: np.ndarray  # (n,)
    test_accuracy: np.ndarray | None  # (n,), None without a test set
    diverged_at: np.ndarray  # (n,) iteration whose cost was not finite, -1 where none
    configs: tuple[TrainConfig, ...]  # (n,) each member's configuration
    n_programs: int  # compiled programs: 2 where the grid mixes keep_prob 1 and dropout, else 1
    n_chunks: int  # runs of a compiled program, one after the other: n_programs, more when memory-bound
    n_devices: int  # devices the configuration axis was sharded over

    @property
    def params(self) -> dict:
        """Stacked final parameters ``{"W<l>": (n, n_l, n_{l-1}), ...}``."""
        return self.states.params

    def member(self, i: int) -> TrainResult:
        """Member ``i`` as the :class:`~jaxreg.training.TrainResult` that ``train`` returns
        (for a diverged member: the one carried by ``TrainingDiverged.result``)."""
        keys = np.asarray(jax.random.key_data(self.states.key))
        state = jax.tree_util.tree_map(lambda a: jax.device_put(a[i]), self.states._replace(key=None))
        state = state._replace(key=jax.random.wrap_key_data(keys[i], impl=str(jax.random.key_impl(self.states.key))))
        # A diverged member's history holds the logged iterations before its divergence, as train's does.
        k = len(self.iterations) if self.diverged_at[i] < 0 else int(
            np.searchsorted(self.iterations, self.diverged_at[i], side="left"))
        return TrainResult(
            params=state.params,
            state=state,
            iterations=self.iterations[:k],
            costs=self.costs[i, :k],
            clean_costs=self.clean_costs[i, :k],
            final_cost=float(self.final_cost[i]),
            train_accuracy=float(self.train_accuracy[i]),
            test_accuracy=None if self.test_accuracy is None else float(self.test_accuracy[i]),
            config=self.configs[i],
        )

    def records(self) -> list[dict]:
        """One plain dict per member (JSON-ready): lambd, keep_prob, seed, accuracies, costs."""
        rows = []
        for i in range(len(self.seed)):
            rows.append({
                "lambd": float(self.lambd[i]),
                "keep_prob": list(self.keep_prob[i]),
                "seed": int(self.seed[i]),
                "train_accuracy": float(self.train_accuracy[i]),
                "test_accuracy": None if self.test_accuracy is None else float(self.test_accuracy[i]),
                "final_cost": _number(self.final_cost[i]),
                "diverged_at": None if self.diverged_at[i] < 0 else int(self.diverged_at[i]),
            })
        return rows

    def summary(self) -> list[dict]:
        """Mean and standard deviation over seeds, one dict per (lambd, keep_prob), grid order."""
        groups: dict[tuple, list[int]] = {}
        for i, key in enumerate(zip(self.lambd.tolist(), self.keep_prob, strict=True)):
            groups.setdefault(key, []).append(i)
        rows = []
        for (lambd, keep_prob), idx in groups.items():
            row = {"lambd": lambd, "keep_prob": list(keep_prob), "seeds": len(idx),
                   "diverged": int(np.sum(self.diverged_at[idx] >= 0))}
            for name in ("train_accuracy", "test_accuracy", "final_cost"):
                values = getattr(self, name)
                if values is None:
                    continue
                values = np.asarray(values)[idx]
                row[f"{name}_mean"] = _number(np.mean(values))
                row[f"{name}_std"] = _number(np.std(values))
            rows.append(row)
        return rows

    def best(self) -> dict:
        """The :meth:`summary` row with the highest mean test accuracy (train accuracy
        without a test set); ties go to the smaller spread over seeds, then the larger
        lambd, then the smaller keep_prob (the more regularized model), then grid order."""
        metric = "test_accuracy" if self.test_accuracy is not None else "train_accuracy"
        return max(self.summary(), key=lambda r: (r[f"{metric}_mean"], -r[f"{metric}_std"], r["lambd"],
                                                  -sum(r["keep_prob"])))


def _number(x) -> float | None:
    """A float for JSON: None for NaN or infinity."""
    x = float(x)
    return x if math.isfinite(x) else None


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
                 n_steps: int = 1) -> int:
    """A generous estimate of the device bytes one member of a sweep needs while training.

    Parameters, gradients, updates and the new parameters (4 copies) plus the
    optimizer's moments; per step the activations kept for the backward pass and
    their gradients (about 6 numbers per unit and example), the masks (5 bytes per
    hidden unit and example, generously), the block of packed mask bits that
    ``run_chunk`` draws ahead for per-step masks (at most 1 MiB; twice one step's bits,
    generously, where those are more) and the ``n_steps`` costs."""
    dims = validate.layer_dims(layer_dims)
    itemsize = np.dtype(dtype).itemsize
    n_params = sum(dims[l] * dims[l - 1] + dims[l] for l in range(1, len(dims)))
    moments = {"sgd": 0, "momentum": 1, "adam": 2}.get(optimizer, 2)
    units, hidden = sum(dims[1:]), sum(dims[1:-1])
    step_bits = mask_bits_bytes(dims, m)
    mask_block = max(min(2**20, step_bits * max(n_steps, 1)), 2 * step_bits)
    return itemsize * ((4 + moments) * n_params + 6 * units * m + n_steps) + 5 * hidden * m + mask_block


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
    X_test=None,
    Y_test=None,
    memory_budget: int | None = None,
    devices: Sequence | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    **options,
) -> SweepResult:
    """Train every ``lambd`` x ``keep_prob`` x seed configuration of the network ``layer_dims``.

    ``lambd``: grid values (numbers >= 0); ``keep_prob``: grid values, each a float or
    one value per hidden layer (a bare float is a one-value grid); ``seeds``: a count
    ``N`` (seeds ``0..N-1``) or a list; each seed ``s`` runs with ``jax.random.key(s)``,
    as ``train(seed=s)`` does. ``options`` are the other :class:`TrainConfig` fields,
    shared by the grid. ``memory_budget``: bytes per device (default
    :func:`default_memory_budget`); ``devices``: the devices to shard the
    configuration axis over (default all of ``jax.devices()``).
    ``on_progress(done, total)`` is called after each compiled chunk, counting
    member-iterations. Diverging members do not stop the sweep: see ``diverged_at``."""
    validate.train_and_test(X, Y, X_test, Y_test)
    configs, seed_of = _grid(layer_dims, X.shape[0], lambd, keep_prob, seeds, options)
    base = configs[0]
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices: got none, expected at least one device")
    per_member = member_bytes(base.layer_dims, X.shape[1], dtype=base.dtype, optimizer=base.optimizer,
                              n_steps=min(base.log_every, max(base.iterations, 1)))
    data_bytes = (X.size + Y.size) * np.dtype(base.dtype).itemsize
    per_device = max(1, (_budget(memory_budget, devices[0]) - data_bytes) // per_member)
    mesh = Mesh(np.asarray(devices), (MEMBERS,)) if len(devices) > 1 else None
    place = _placement(mesh, devices)
    Xd, Yd = (place(np.asarray(a, base.dtype), P()) for a in (X, Y))

    groups: dict[Program, list[int]] = {}
    for i, config in enumerate(configs):  # one compiled program with dropout, one without
        groups.setdefault(Program.of(config), []).append(i)
    members: list = [None] * len(configs)  # (final state, history, diverged_at) of each member
    done, total, n_chunks = 0, len(configs) * base.iterations, 0
    for program, indices in groups.items():
        chunks, size = _chunking(len(indices), len(devices), per_device)
        n_chunks += chunks
        for c in range(chunks):
            real = indices[c * size: (c + 1) * size]
            idx = real + [real[-1]] * (size - len(real))  # padding: copies of a real member, dropped
            progress = None if on_progress is None else partial(_progress, on_progress, done, len(real), total)
            outcome = _train_members([configs[i] for i in idx], seed_of[idx], program, Xd, Yd, mesh, place,
                                     progress)
            done += len(real) * base.iterations
            host = to_host(outcome.states._replace(key=None))
            for r, i in enumerate(real):
                members[i] = _member_of(outcome, host, r)
    return _result(configs, seed_of, members, X, Y, X_test, Y_test, n_programs=len(groups), n_chunks=n_chunks,
                   n_devices=len(devices))


def _result(configs, seed_of, members: list, X, Y, X_test, Y_test, **counts) -> SweepResult:
    """The members' final states, histories and evaluations, stacked in grid order."""
    final, histories, diverged_at = zip(*members, strict=True)
    states = jax.tree_util.tree_map(lambda *a: np.stack(a), *final)
    keys = jax.random.wrap_key_data(np.stack([key_data(seed=int(s))[0] for s in seed_of]))
    return SweepResult(
        lambd=np.asarray([c.lambd for c in configs]),
        keep_prob=tuple(c.keep_prob for c in configs),
        seed=seed_of.astype(np.int64),
        states=states._replace(key=keys),
        iterations=histories[0].iterations,
        costs=np.concatenate([h.costs for h in histories]),
        clean_costs=np.concatenate([h.clean_costs for h in histories]),
        diverged_at=np.asarray(diverged_at, np.int64),
        configs=tuple(configs),
        **_judge(states.params, configs, X, Y, X_test, Y_test),
        **counts,
    )


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
    """``place(array, spec)``: on the mesh with that partition spec, else on the one device."""
    if mesh is None:
        return lambda a, spec: jax.device_put(a, devices[0])
    return lambda a, spec: jax.device_put(a, NamedSharding(mesh, spec))


def _train_members(configs: list[TrainConfig], seeds: np.ndarray, program: Program, X, Y, mesh, place,
                   on_chunk) -> Outcome:
    """One chunk of members (a multiple of the device count), trained by the driver."""
    base = configs[0]
    data = np.stack([key_data(seed=int(s))[0] for s in seeds])
    states = init_members(data, impl="threefry2x32", program=program.for_init())
    hyper = jax.tree_util.tree_map(lambda *a: np.stack(a), *[hyper_of(c) for c in configs])
    masks = [course_masks(c, X.shape[1]) for c in configs]
    masks = None if masks[0] is None else jax.tree_util.tree_map(lambda *a: np.stack(a), *masks)
    states, hyper, masks = (jax.tree_util.tree_map(lambda a: place(a, P(MEMBERS)), t) for t in (states, hyper, masks))

    def run(states, n_steps):
        return run_members(states, hyper, masks, X, Y, program=program, n_steps=n_steps, mesh=mesh)

    def replay(states, r, n_steps):  # a diverged member alone, as train runs it: the same program
        state, one = _host_member(states, r), _host_member((hyper, masks), r)
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
    history = outcome.history  # NaN where the member had diverged
    one = History(history.iterations, history.costs[r:r + 1], history.clean_costs[r:r + 1])
    return state._replace(key=None), one, at


def _judge(params: dict, configs: list[TrainConfig], X, Y, X_test, Y_test) -> dict:
    """Final costs and exact accuracies of every member, in one compiled call."""
    dtype = configs[0].dtype
    lambd = np.asarray([c.lambd for c in configs], dtype)
    Xt = None if X_test is None else np.asarray(X_test, dtype)
    out = to_host(evaluate_members(params, lambd, np.asarray(X, dtype), np.asarray(Y, dtype), Xt))
    return dict(
        final_cost=out.final_cost.astype(np.float64),
        train_accuracy=np.mean(out.predictions == np.asarray(Y), axis=(1, 2)),
        test_accuracy=None if X_test is None else np.mean(out.test_predictions == np.asarray(Y_test), axis=(1, 2)),
    )


# ----------------------------------------------------------------------------- data parallel


def train_data_parallel(X, Y, layer_dims: Sequence[int], *, devices: Sequence | None = None,
                        **kwargs) -> TrainResult:
    """:func:`jaxreg.train` with the examples sharded over ``devices`` (default all).

    ``X``/``Y`` are split along ``m`` on a 1-D mesh, parameters stay replicated and XLA
    reduces the gradient sums across devices: the same run as on one device up to the
    order of floating-point sums. Masks come from keys, so they are the same values.
    Arrays are split evenly only: with ``m`` not divisible by the device count the
    largest count that divides ``m`` is used (with a warning). ``kwargs`` go to ``train``."""
    validate.features_and_labels(X, Y)
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices: got none, expected at least one device")
    m = X.shape[1]
    used = max(d for d in range(1, len(devices) + 1) if m % d == 0)
    if used < len(devices):
        warnings.warn(f"train_data_parallel: m = {m} examples do not split evenly over {len(devices)} "
                      f"devices; using {used}", stacklevel=2)
    by_example = NamedSharding(Mesh(np.asarray(devices[:used]), ("data",)), P(None, "data"))
    return train(X, Y, layer_dims, sharding=by_example, **kwargs)
