"""The compiled programs a run is made of: initialise, train a chunk, evaluate.

Each is a pure function of one member (one configuration and key), compiled once per
static structure (:class:`~jaxreg.config.Program`) and shapes: the traced settings are
arguments (:class:`~jaxreg.config.Hyper`), so changing them never recompiles. Input is
checked at the public boundary (:func:`jaxreg.train`, :func:`jaxreg.sweep.sweep`): these
functions trust what they get. A run of one member calls
:func:`init_state`, :func:`run_chunk` and :func:`evaluate`; a sweep calls the same
functions over a leading member axis (:func:`init_members`, :func:`run_members`,
:func:`evaluate_members`: ``jax.vmap``, and ``shard_map`` over a mesh of devices).
Nothing here runs op by op: keys are split and folded inside the programs.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxreg import reference
from jaxreg.config import Hyper, Program, TrainConfig, hyper_of
from jaxreg.masks import all_masks, mask_bits, mask_bits_bytes, masks_from_bits
from jaxreg.model import classify, cost, cross_entropy, initial_params, logits

__all__ = [
    "MOMENTUM",
    "Program",
    "TrainState",
    "Hyper",
    "Evaluation",
    "Best",
    "Split",
    "ChunkLog",
    "validation_cost",
    "make_optimizer",
    "hyper_of",
    "key_data",
    "initial",
    "init_state",
    "run_chunk",
    "evaluate",
    "init_members",
    "run_members",
    "evaluate_members",
]

MOMENTUM = 0.9  # the usual heavy-ball coefficient for optimizer="momentum"
MEMBERS = "members"  # the mesh axis a sweep's members are sharded over


class Best(NamedTuple):
    """Early stopping's record, carried in the state: the parameters of the lowest validation cost."""

    params: dict  # like TrainState.params
    cost: jax.Array  # scalar: their validation cost (inf before the first check)
    step: jax.Array  # int32: the iteration they are from (-1 before the first check)
    wait: jax.Array  # int32: checks since the last improvement
    stopped_at: jax.Array  # int32: the iteration patience ran out (-1: still training); then parameters stay


class TrainState(NamedTuple):
    """What a run carries from step to step (and what a checkpoint stores)."""

    params: dict  # {"W<l>": (n_l, n_{l-1}), "b<l>": (n_l, 1)} in the run's dtype
    opt_state: Any  # the optax optimizer's state for params
    key: jax.Array  # the run's base key (init and mask keys are split from it)
    step: jax.Array  # int32 scalar: the number of updates done so far
    best: Best | None = None  # with early stopping


class Split(NamedTuple):
    """Which examples of ``X`` a member trains on and which it is validated on (0/1 weights)."""

    train: Any  # (1, m)
    valid: Any  # (1, m), or None: no validation (the weights only mark padding, say)
    width: Any = None  # int32 scalar: the real examples, the first ``width`` of m (the rest pad); None: all


class ChunkLog(NamedTuple):
    """What a chunk reports besides its training costs."""

    clean_cost: jax.Array  # scalar: the full network's cost (no dropout, L2 included) at the first step
    valid_cost: jax.Array | None  # scalar: validation cross-entropy after the last step (with a Split)
    stopped: jax.Array | None  # bool: early stopping has ended the member's training


class Evaluation(NamedTuple):
    """Trained parameters judged: the full network (L2 included, no dropout)."""

    final_cost: jax.Array  # scalar: cross-entropy + L2 term on the training examples
    predictions: jax.Array  # (1, m) int32 on X
    test_predictions: jax.Array | None  # (1, m_test) int32, None without a test set
    valid_cost: jax.Array | None  # scalar: cross-entropy on the validation examples (with a Split)


def _weights_only(params: dict) -> dict:
    return {k: k.startswith("W") for k in params}


def make_optimizer(name: str, learning_rate, weight_decay=None) -> optax.GradientTransformation:
    """Plain gradient descent (``"sgd"``), heavy-ball momentum or Adam, from optax.

    ``weight_decay`` (None: none) decays the weights (not the biases) after the
    optimizer's transformation and before the learning rate, as AdamW does: under plain
    SGD it equals L2 in the loss with ``weight_decay = lambd/m``."""
    base = {
        "sgd": optax.identity,
        "momentum": lambda: optax.trace(decay=MOMENTUM),
        "adam": optax.scale_by_adam,
    }[name]()
    decay = [] if weight_decay is None else [optax.add_decayed_weights(weight_decay, mask=_weights_only)]
    return optax.chain(base, *decay, optax.scale_by_learning_rate(learning_rate))


def _optimizer(program: Program, hyper: Hyper) -> optax.GradientTransformation:
    return make_optimizer(program.optimizer, hyper.learning_rate, hyper.weight_decay if program.decay else None)


def key_data(key=None, seed: int | None = None) -> tuple[np.ndarray, str]:
    """``(data, impl)`` of a key, on the host: a typed key, a legacy ``uint32[2]`` key, or
    ``jax.random.key(seed)``'s words ``[seed >> 32, seed & 0xFFFFFFFF]`` for a seed
    ``0 <= seed < 2**64`` (threefry), computed without running anything on a device."""
    if key is None:
        return np.asarray([seed >> 32, seed & 0xFFFFFFFF], np.uint32), "threefry2x32"
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(key)), str(jax.random.key_impl(key))
    return np.asarray(key, np.uint32), "threefry2x32"


# ----------------------------------------------------------------------------- one member


def _initial_params(program: Program, init_key) -> dict:
    dtype = jnp.dtype(program.dtype)
    if program.init == "course":
        return {k: jnp.asarray(v, dtype) for k, v in reference.init_params(program.layer_dims).items()}
    return initial_params(init_key, program.layer_dims, program.init, dtype)


def _init_state(data, *, impl: str, program: Program) -> TrainState:
    """Step 0: parameters from ``program.init`` and the init half of the key ``data``
    (``impl``'s words; pass ``program.for_init()``)."""
    key = jax.random.wrap_key_data(data, impl=impl)
    init_key, _ = jax.random.split(key)
    params = _initial_params(program, init_key)
    opt_state = make_optimizer(program.optimizer, 1.0, 0.0 if program.decay else None).init(params)
    best = None
    if program.early_stopping is not None:
        best = Best(params, jnp.asarray(jnp.inf, params["W1"].dtype), jnp.asarray(-1, jnp.int32),
                    jnp.zeros((), jnp.int32), jnp.asarray(-1, jnp.int32))
    return TrainState(params, opt_state, key, jnp.zeros((), jnp.int32), best)


def _monitor(best: Best, params: dict, cost, step, patience: int) -> Best:
    """Early stopping after a validation check of ``params`` (at iteration ``step``)."""
    training = best.stopped_at < 0
    better = (cost < best.cost) & training
    wait = jnp.where(better, 0, best.wait + training.astype(jnp.int32))
    return Best(
        params=jax.tree_util.tree_map(lambda new, old: jnp.where(better, new, old), params, best.params),
        cost=jnp.where(better, cost, best.cost),
        step=jnp.where(better, step, best.step),
        wait=wait,
        stopped_at=jnp.where(training & (wait >= patience), step, best.stopped_at),
    )


def _run_chunk(state: TrainState, hyper: Hyper, masks, split: Split | None, X, Y, *, program: Program,
               n_steps: int):
    """``n_steps`` updates from ``state``, as ``lax.scan`` loops.

    Returns ``(state, costs (n_steps,), log)``: the training cost of each step (computed
    before its update, as the textbook prints it) and a :class:`ChunkLog`. ``masks`` are
    the masks of every step for the ``course`` schedule, else None: per-step masks are
    ``dropout_masks(fold_in(mask_key, t), ...)``, fixed ones ``dropout_masks(mask_key, ...)``.
    With a ``split``, the member trains on ``split.train``'s examples and its validation
    cost after the chunk is measured on ``split.valid``'s; with early stopping
    (``program.early_stopping``) that check updates ``state.best``, and a member that has
    stopped keeps its parameters (its steps are computed and dropped: nothing retraces)."""
    weights = None if split is None else split.train
    clean_cost = cost(state.params, X, Y, hyper.lambd, weights=weights)
    params, opt_state, costs = _updates(state, hyper, masks, split, X, Y, program=program, n_steps=n_steps)
    step = state.step + n_steps
    best, valid_cost, stopped = state.best, None, None
    if best is not None:  # a stopped member stays where it stopped, its step count too
        stopped = best.stopped_at >= 0
        params, opt_state, step = jax.tree_util.tree_map(lambda old, new: jnp.where(stopped, old, new),
                                                         (state.params, state.opt_state, state.step),
                                                         (params, opt_state, step))
    if split is not None and split.valid is not None:
        valid_cost = validation_cost(params, X, Y, split.valid)
    if best is not None:
        best = _monitor(best, params, valid_cost, step, program.early_stopping)
        stopped = best.stopped_at >= 0
    return TrainState(params, opt_state, state.key, step, best), costs, ChunkLog(clean_cost, valid_cost, stopped)


def validation_cost(params: dict, X, Y, valid) -> jax.Array:
    """Mean cross-entropy of the full network on the examples of weight 1 in ``valid`` ``(1, m)``."""
    return jnp.sum(valid * cross_entropy(logits(params, X), Y)) / jnp.sum(valid)


def _updates(state: TrainState, hyper: Hyper, masks, split: Split | None, X, Y, *, program: Program, n_steps: int):
    """The chunk's ``n_steps`` optimizer steps: ``(params, opt_state, costs (n_steps,))``."""
    optimizer = _optimizer(program, hyper)
    # One traced scalar per hidden layer, sliced once, outside the loop (sliced inside the step,
    # XLA fuses the dropout scale otherwise, and float64 results move by an ulp).
    keep_prob = tuple(hyper.keep_prob[i] for i in range(len(program.layer_dims) - 2))
    mask_key = jax.random.split(state.key)[1]
    m, width = X.shape[1], None if split is None else split.width
    weights = None if split is None else split.train

    def step(carry, step_masks):
        params, opt_state = carry
        value, grads = jax.value_and_grad(cost)(params, X, Y, hyper.lambd, step_masks, keep_prob, weights)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    def bits(t):  # the packed bits of step t's masks, dropout_masks(fold_in(mask_key, t), ...)
        return mask_bits(jax.random.fold_in(mask_key, t), program.layer_dims, m, keep_prob, width)

    def per_step(carry, step_bits):
        return step(carry, masks_from_bits(step_bits, program.layer_dims, m, keep_prob))

    def blocks(carry, start, n_blocks: int, size: int):
        # Per-step masks: each block's bits are drawn in one vectorised call (a few large
        # kernels instead of a few small ones per step); each step builds its masks from its
        # bits, exactly those of dropout_masks(fold_in(mask_key, t), ...).
        def block(carry, b):
            block_bits = jax.vmap(bits)(start + b * size + jnp.arange(size, dtype=jnp.int32))
            # Index the block by step inside the loop rather than scanning over it: under a
            # sweep's vmap the scanned axis would not lead, and the block would be transposed.
            return jax.lax.scan(lambda c, i: per_step(c, block_bits[i]), carry, jnp.arange(size))

        carry, costs = jax.lax.scan(block, carry, jnp.arange(n_blocks))
        return carry, costs.reshape(n_blocks * size)

    carry = (state.params, state.opt_state)
    if program.dropout and program.masks == "fixed":
        masks = all_masks(mask_key, program.layer_dims, m, keep_prob, width)
    if not program.dropout or masks is not None:
        fixed = masks if program.dropout else None
        carry, costs = jax.lax.scan(lambda c, _: step(c, fixed), carry, length=n_steps)
    else:
        # Steps per block: the block's bits within about 1 MiB (a byte per four mask entries).
        # A divisor of n_steps if one is near, else a remainder block (one more trace of the step).
        size = max(1, min(n_steps, 2**20 // mask_bits_bytes(program.layer_dims, m)))
        size = next((d for d in range(size, (size + 3) // 4 - 1, -1) if n_steps % d == 0), size)
        carry, costs = blocks(carry, state.step, n_steps // size, size)
        if n_steps % size:
            carry, rest = blocks(carry, state.step + n_steps - n_steps % size, 1, n_steps % size)
            costs = jnp.concatenate([costs, rest])
    return *carry, costs


def _evaluate(params: dict, lambd, X, Y, X_test=None, split: Split | None = None) -> Evaluation:
    """The full network's cost (L2 included, no dropout) on the training examples, its
    predictions, and with a ``split`` its validation cost."""
    weights = None if split is None else split.train
    return Evaluation(
        final_cost=cost(params, X, Y, lambd, weights=weights),
        predictions=classify(params, X),
        test_predictions=None if X_test is None else classify(params, X_test),
        valid_cost=None if split is None or split.valid is None else validation_cost(params, X, Y, split.valid),
    )


def initial(config: TrainConfig, key=None, seed: int = 0) -> tuple[TrainState, Hyper, Program]:
    """What a run of ``config`` starts from: its state at step 0 (from ``key``, else
    ``jax.random.key(seed)``), its traced hyperparameters and its program."""
    program = Program.of(config)
    data, impl = key_data(key, seed)
    return init_state(data, impl=impl, program=program.for_init()), hyper_of(config), program


init_state = jax.jit(_init_state, static_argnames=("impl", "program"))
init_state.__doc__ = "Compiled :func:`_init_state`: ``init_state(key_data, impl=..., program=...)``."
run_chunk = jax.jit(_run_chunk, static_argnames=("program", "n_steps"))
run_chunk.__doc__ = _run_chunk.__doc__
evaluate = jax.jit(_evaluate)
evaluate.__doc__ = _evaluate.__doc__


# ----------------------------------------------------------------------------- members


def _sharded(fn, mesh: Mesh | None, n_member_args: int, n_shared_args: int):
    """``fn`` over members sharded on ``mesh`` (data replicated), or ``fn`` itself without one."""
    if mesh is None:
        return fn
    members = P(MEMBERS)
    # No collectives, so nothing for the varying-axes check to guard; and it rejects the mask
    # draw's conditional once vmap has turned it into a select (jax 0.10).
    return jax.shard_map(fn, mesh=mesh, in_specs=(members,) * n_member_args + (P(),) * n_shared_args,
                         out_specs=members, check_vma=False)


@partial(jax.jit, static_argnames=("impl", "program"))
def init_members(data, *, impl: str, program: Program) -> TrainState:
    """:func:`init_state` for a stack of key data ``(n, words)``: states with a leading axis ``n``."""
    return jax.vmap(partial(_init_state, impl=impl, program=program))(data)


@partial(jax.jit, static_argnames=("program", "n_steps", "mesh"))
def run_members(states, hyper, masks, split, X, Y, *, program: Program, n_steps: int, mesh: Mesh | None = None):
    """:func:`run_chunk` for a stack of members (leading axis of states, hyper, masks, split):
    costs ``(n, n_steps)`` and a :class:`ChunkLog` of ``(n,)``. On a ``mesh``, each device runs
    its share of the members (axis ``"members"``), data replicated, no communication."""
    run = jax.vmap(partial(_run_chunk, program=program, n_steps=n_steps), in_axes=(0, 0, 0, 0, None, None))
    return _sharded(run, mesh, 4, 2)(states, hyper, masks, split, X, Y)


@partial(jax.jit, static_argnames=("mesh",))
def evaluate_members(params, lambd, split, X, Y, X_test=None, *, mesh: Mesh | None = None) -> Evaluation:
    """:func:`evaluate` for stacked parameters, ``lambd`` ``(n,)`` and splits: each field with a
    leading axis ``n``."""
    def one(params, lambd, split, X, Y, X_test):
        return _evaluate(params, lambd, X, Y, X_test, split)

    run = jax.vmap(one, in_axes=(0, 0, 0, None, None, None))
    return _sharded(run, mesh, 3, 3)(params, lambd, split, X, Y, X_test)
