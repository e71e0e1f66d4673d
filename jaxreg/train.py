"""Training as whole compiled loops.

Iterations run inside ``jax.lax.scan`` in chunks that end at multiples of
``log_every`` (and at the end): between chunks the cost history is kept, the
progress callback runs and checkpoints are written. Gradients come from
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

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxreg import reference, validate
from jaxreg.model import _mask_bits, _masks_from_bits, dropout_masks, init_params, loss, mask_bits_bytes, predict

__all__ = [
    "OPTIMIZERS",
    "MASK_SCHEDULES",
    "INITS",
    "TrainConfig",
    "TrainState",
    "Hyper",
    "TrainResult",
    "TrainingDiverged",
    "make_optimizer",
    "evaluate",
    "init_state",
    "run_chunk",
    "train",
]

OPTIMIZERS = ("sgd", "momentum", "adam")
MASK_SCHEDULES = ("per-step", "fixed", "course")
INITS = ("he", "lecun", "zeros", "course")
MOMENTUM = 0.9  # the usual heavy-ball coefficient for optimizer="momentum"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run, apart from the data and the key."""

    layer_dims: tuple[int, ...]  # [n_x, n_1, ..., 1]
    lambd: float = 0.0  # L2 strength: lambd/(2m) * sum ||W_l||^2 in the loss
    keep_prob: tuple[float, ...] = (1.0,)  # probability of keeping a unit, one per hidden layer
    learning_rate: float = 0.3  # the textbook's
    iterations: int = 30000  # the run's total length, also when resumed
    optimizer: str = "sgd"  # one of OPTIMIZERS; "sgd" is plain gradient descent
    weight_decay: float = 0.0  # decoupled decay of the weights (not biases), apart from lambd
    init: str = "he"  # one of INITS; "course" is reference.init_params (seed 3)
    masks: str = "per-step"  # one of MASK_SCHEDULES
    log_every: int = 1000  # record the cost every log_every iterations, from 0
    dtype: str = "float32"  # "float64" needs jax_enable_x64

    @property
    def dropout(self) -> bool:
        return any(kp < 1 for kp in self.keep_prob)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Program:
    """The static part of a config: what changes the compiled program (hashable)."""

    layer_dims: tuple[int, ...]
    optimizer: str
    weight_decay: float
    dropout: bool  # False: no masks at all (every keep_prob is 1)

    @classmethod
    def of(cls, config: TrainConfig) -> Program:
        return cls(config.layer_dims, config.optimizer, config.weight_decay, config.dropout)


class TrainState(NamedTuple):
    """What a run carries from step to step (and what a checkpoint stores)."""

    params: dict  # {"W<l>": (n_l, n_{l-1}), "b<l>": (n_l, 1)} in the run's dtype
    opt_state: Any  # the optax optimizer's state for params
    key: jax.Array  # the run's base key (init and mask keys are split from it)
    step: jax.Array  # int32 scalar: the number of updates done so far


class Hyper(NamedTuple):
    """The hyperparameters that are traced values (vmapped over by sweeps)."""

    lambd: jax.Array  # scalar
    keep_prob: jax.Array  # (n_hidden,)
    learning_rate: jax.Array  # scalar


class TrainResult(NamedTuple):
    """A finished run: final parameters and state, history, accuracies."""

    params: dict
    state: TrainState
    iterations: np.ndarray  # (k,) the logged iterations: 0, log_every, 2*log_every, ...
    costs: np.ndarray  # (k,) training cost at those iterations (with dropout where on)
    clean_costs: np.ndarray  # (k,) cost of the full network, without dropout, same iterations
    final_cost: float  # cost of the full network (L2 included, no dropout) at the final parameters
    train_accuracy: float
    test_accuracy: float | None
    config: TrainConfig


class TrainingDiverged(RuntimeError):
    """The cost turned NaN or infinite. ``result`` holds the last finite parameters."""

    def __init__(self, iteration: int, cost: float, result: TrainResult):
        super().__init__(
            f"training diverged at iteration {iteration} (cost {cost}); the parameters of "
            f"iteration {int(result.state.step)} were kept: try a smaller learning rate"
        )
        self.iteration = iteration
        self.result = result


def _weights_only(params: dict) -> dict:
    return {name: name.startswith("W") for name in params}


def make_optimizer(name: str, learning_rate, weight_decay: float = 0.0) -> optax.GradientTransformation:
    """The optax optimizer for ``name``. Decoupled weight decay (weights only) is added
    after the optimizer's own transformation and before the learning rate, as AdamW
    does: under plain SGD it equals L2 in the loss with ``weight_decay = lambd/m``."""
    base = {
        "sgd": optax.identity,
        "momentum": lambda: optax.trace(decay=MOMENTUM),
        "adam": optax.scale_by_adam,
    }[name]()
    decay = [optax.add_decayed_weights(weight_decay, mask=_weights_only)] if weight_decay else []
    return optax.chain(base, *decay, optax.scale_by_learning_rate(learning_rate))


def _initial_params(config: TrainConfig, init_key) -> dict:
    dtype = jnp.dtype(config.dtype)
    if config.init == "course":
        return {k: jnp.asarray(v, dtype) for k, v in reference.init_params(config.layer_dims).items()}
    return init_params(init_key, config.layer_dims, config.init, dtype)


def init_state(config: TrainConfig, key) -> TrainState:
    """Step 0: parameters from ``config.init`` and the init half of ``key``."""
    init_key, _ = jax.random.split(key)
    params = _initial_params(config, init_key)
    opt_state = make_optimizer(config.optimizer, config.learning_rate, config.weight_decay).init(params)
    return TrainState(params, opt_state, key, jnp.zeros((), jnp.int32))


def hyper_of(config: TrainConfig) -> Hyper:
    dtype = jnp.dtype(config.dtype)
    return Hyper(
        jnp.asarray(config.lambd, dtype),
        jnp.asarray(config.keep_prob, dtype),
        jnp.asarray(config.learning_rate, dtype),
    )


def fixed_masks(config: TrainConfig, key, m: int):
    """The masks used at every step (``fixed``/``course`` schedules), else None."""
    if not config.dropout or config.masks == "per-step":
        return None
    if config.masks == "course":
        return tuple(jnp.asarray(d) for d in reference.course_masks(config.layer_dims, m, config.keep_prob))
    return dropout_masks(jax.random.split(key)[1], config.layer_dims, m, config.keep_prob)


@partial(jax.jit, static_argnames=("program", "n_steps"))
def run_chunk(state: TrainState, hyper: Hyper, masks, X, Y, *, program: Program, n_steps: int):
    """``n_steps`` updates from ``state``, compiled as ``lax.scan`` loops.

    Returns ``(state, costs (n_steps,), clean_cost)``: the training cost of each step
    (computed before its update, as the textbook prints it) and the cost of the
    full network without dropout at the chunk's first step. ``masks`` are the fixed
    masks, or None for per-step masks. Pure and vmappable over ``state`` and
    ``hyper`` (that is how sweeps run); hyperparameter values never recompile."""
    optimizer = make_optimizer(program.optimizer, hyper.learning_rate, program.weight_decay)
    keep_prob = tuple(hyper.keep_prob[i] for i in range(len(program.layer_dims) - 2))
    mask_key = jax.random.split(state.key)[1]
    m = X.shape[1]

    def step(carry, step_masks):
        params, opt_state = carry
        cost, grads = jax.value_and_grad(loss)(
            params, X, Y, lambd=hyper.lambd, masks=step_masks, keep_prob=keep_prob
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), cost

    def bits(t):  # the packed bits of step t's masks, dropout_masks(fold_in(mask_key, t), ...)
        return _mask_bits(jax.random.fold_in(mask_key, t), program.layer_dims, m, keep_prob)

    def per_step(carry, step_bits):
        return step(carry, _masks_from_bits(step_bits, program.layer_dims, m, keep_prob))

    def blocks(carry, start, n_blocks: int, size: int):
        # Per-step masks: each block's bits are drawn in one vectorised call (a few large
        # kernels instead of a few small ones per step); each step builds its masks from its
        # bits, exactly those of dropout_masks(fold_in(mask_key, t), ...).
        def block(carry, b):
            block_bits = jax.vmap(bits)(start + b * size + jnp.arange(size, dtype=jnp.int32))
            # Index the block by step inside the loop rather than scanning over it: under a
            # sweep's vmap the scanned axis would not lead, and the block would be transposed.
            return jax.lax.scan(lambda c, i: per_step(c, block_bits[i]), carry,
                                jnp.arange(size))

        carry, costs = jax.lax.scan(block, carry, jnp.arange(n_blocks))
        return carry, costs.reshape(n_blocks * size)

    clean_cost = loss(state.params, X, Y, lambd=hyper.lambd)
    carry = (state.params, state.opt_state)
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
    params, opt_state = carry
    return TrainState(params, opt_state, state.key, state.step + n_steps), costs, clean_cost


def chunk_ends(start: int, total: int, log_every: int) -> list[int]:
    """Chunk boundaries after ``start``: multiples of ``log_every``, and ``total``."""
    ends = list(range((start // log_every + 1) * log_every, total, log_every))
    return [e for e in ends if e > start] + ([total] if total > start else [])


def data_fingerprint(X, Y) -> str:
    """sha256 of the training data, so a checkpoint is not resumed on other data."""
    digest = hashlib.sha256()
    for a in (X, Y):
        a = np.ascontiguousarray(np.asarray(a, np.float64))
        digest.update(str(a.shape).encode())
        digest.update(a.tobytes())
    return digest.hexdigest()[:16]


def _key_of(key, seed: int | None):
    if key is None:
        return jax.random.key(0 if seed is None else seed)
    if not (jnp.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key) or (
        getattr(key, "shape", None) == (2,) and getattr(key, "dtype", None) == jnp.uint32
    )):
        raise TypeError(f"key: got {type(key).__name__}, expected a jax.random.key or PRNGKey")
    return key


def make_config(layer_dims, *, n_x: int, **options) -> TrainConfig:
    """A validated :class:`TrainConfig` (errors name the option and what was expected)."""
    dims = validate.layer_dims(layer_dims)
    if dims[0] != n_x:
        raise ValueError(f"layer_dims: got n_x = {dims[0]}, expected {n_x} (X has {n_x} features)")
    options["keep_prob"] = validate.keep_prob(options.get("keep_prob", 1.0), len(dims) - 2)
    validate.lambd(options.get("lambd", 0.0))
    for name, allowed in (("optimizer", OPTIMIZERS), ("masks", MASK_SCHEDULES), ("init", INITS),
                          ("dtype", ("float32", "float64"))):
        value = options.get(name, getattr(TrainConfig, name))
        if value not in allowed:
            raise ValueError(f"{name}: got {value!r}, expected one of {', '.join(allowed)}")
    lr = options.get("learning_rate", TrainConfig.learning_rate)
    if not (isinstance(lr, int | float) and np.isfinite(lr) and lr > 0):
        raise ValueError(f"learning_rate: got {lr!r}, expected a finite number > 0")
    wd = options.get("weight_decay", 0.0)
    if not (isinstance(wd, int | float) and np.isfinite(wd) and wd >= 0):
        raise ValueError(f"weight_decay: got {wd!r}, expected a finite number >= 0")
    for name, low in (("iterations", 0), ("log_every", 1)):
        value = options.get(name, getattr(TrainConfig, name))
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name}: got {value!r}, expected an integer >= {low}")
    if options.get("dtype") == "float64" and not jax.config.jax_enable_x64:
        raise ValueError(
            "dtype: got 'float64' but jax_enable_x64 is off, expected it on: "
            "call jax.config.update('jax_enable_x64', True) first"
        )
    floats = {k: float(options[k]) for k in ("lambd", "learning_rate", "weight_decay") if k in options}
    return TrainConfig(layer_dims=dims, **{**options, **floats})


def train(
    X,
    Y,
    layer_dims: Sequence[int],
    *,
    key=None,
    seed: int | None = None,
    X_test=None,
    Y_test=None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    on_chunk: Callable[[int, int], None] | None = None,
    **options,
) -> TrainResult:
    """Train the network ``layer_dims`` on ``X (n_x, m)``, ``Y (1, m)``.

    ``options`` are the fields of :class:`TrainConfig` (``lambd``, ``keep_prob``,
    ``learning_rate``, ``iterations``, ``optimizer``, ``weight_decay``, ``init``,
    ``masks``, ``log_every``, ``dtype``). ``key`` (or ``seed``, giving
    ``jax.random.key(seed)``) drives initialisation and masks. With ``checkpoint``,
    the state is saved atomically every ``checkpoint_every`` iterations (rounded up
    to a chunk end) and at the end; ``resume=True`` continues from it up to
    ``iterations``. ``on_chunk(step, total)`` is called after each chunk.

    Raises :class:`TrainingDiverged` when the cost turns NaN or infinite."""
    validate.train_and_test(X, Y, X_test, Y_test)
    config = make_config(layer_dims, n_x=X.shape[0], **options)
    key = _key_of(key, seed)
    if checkpoint_every is not None and (not isinstance(checkpoint_every, int) or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every: got {checkpoint_every!r}, expected an integer >= 1")
    dtype = jnp.dtype(config.dtype)
    Xj, Yj = jnp.asarray(X, dtype), jnp.asarray(Y, dtype)
    meta = {"config": config.to_json(), "data": data_fingerprint(X, Y)}

    state = init_state(config, key)
    history: dict[str, list] = {"iterations": [], "costs": [], "clean_costs": []}
    if resume:
        if checkpoint is None:
            raise ValueError("resume: got True without a checkpoint path, expected checkpoint=PATH")
        state, history = _resume(checkpoint, state, meta, config.iterations)

    hyper, program = hyper_of(config), Program.of(config)
    masks = fixed_masks(config, key, X.shape[1])
    start = int(state.step)
    last_saved = start
    for end in chunk_ends(start, config.iterations, config.log_every):
        new_state, costs, clean = run_chunk(
            state, hyper, masks, Xj, Yj, program=program, n_steps=end - int(state.step)
        )
        costs = np.asarray(costs)
        step0 = int(state.step)
        if step0 % config.log_every == 0 and np.isfinite(costs[0]):
            history["iterations"].append(step0)
            history["costs"].append(float(costs[0]))
            history["clean_costs"].append(float(clean))
        if not np.all(np.isfinite(costs)):
            bad = int(np.argmax(~np.isfinite(costs)))
            state = _replay(state, hyper, masks, Xj, Yj, program, bad)
            result = _result(state, history, config, X, Y, X_test, Y_test)
            if checkpoint is not None:
                _save(checkpoint, state, meta, history)
            raise TrainingDiverged(step0 + bad, float(costs[bad]), result)
        state = new_state
        if checkpoint is not None and (
            end == config.iterations or (checkpoint_every and end - last_saved >= checkpoint_every)
        ):
            _save(checkpoint, state, meta, history)
            last_saved = end
        if on_chunk is not None:
            on_chunk(end, config.iterations)
    return _result(state, history, config, X, Y, X_test, Y_test)


def _replay(state, hyper, masks, X, Y, program, bad: int) -> TrainState:
    """The state of the last iteration whose cost was finite, the chunk's step
    ``bad - 1`` (steps are deterministic, so they are simply redone)."""
    if bad <= 1:
        return state
    state, _, _ = run_chunk(state, hyper, masks, X, Y, program=program, n_steps=bad - 1)
    return state


def evaluate(params: dict, lambd, X, Y, X_test=None, Y_test=None) -> tuple[float, float, float | None]:
    """``(final_cost, train_accuracy, test_accuracy)`` of trained parameters: the full
    network's cost (L2 included, no dropout) and exact accuracies (None without a test set)."""
    dtype = params["W1"].dtype
    final_cost = float(loss(params, jnp.asarray(X, dtype), jnp.asarray(Y, dtype), lambd=lambd))
    test = None if X_test is None else exact_accuracy(params, X_test, Y_test)
    return final_cost, exact_accuracy(params, X, Y), test


def _result(state, history, config, X, Y, X_test, Y_test) -> TrainResult:
    final_cost, train_accuracy, test_accuracy = evaluate(state.params, config.lambd, X, Y, X_test, Y_test)
    return TrainResult(
        params=state.params,
        state=state,
        iterations=np.asarray(history["iterations"], np.int64),
        costs=np.asarray(history["costs"]),
        clean_costs=np.asarray(history["clean_costs"]),
        final_cost=final_cost,
        train_accuracy=train_accuracy,
        test_accuracy=test_accuracy,
        config=config,
    )


def exact_accuracy(params: dict, X, Y) -> float:
    """Fraction right, counted exactly (float64 on the host, whatever the run's dtype)."""
    dtype = params["W1"].dtype
    predictions = np.asarray(predict(params, jnp.asarray(X, dtype)))
    return float(np.mean(predictions == np.asarray(Y)))


def _save(path, state: TrainState, meta: dict, history: dict) -> None:
    from jaxreg import checkpoint

    checkpoint.save(path, state, {**meta, "history": history})


def _resume(path, template: TrainState, meta: dict, iterations: int):
    """Load a checkpoint written by :func:`train` and check it belongs to this run."""
    from jaxreg import checkpoint

    state, stored = checkpoint.load(path, like=template)
    mine, theirs = dict(meta["config"]), dict(stored.get("config", {}))
    mine.pop("iterations"), theirs.pop("iterations", None)
    differing = sorted(k for k in set(mine) | set(theirs) if _jsonable(mine.get(k)) != theirs.get(k))
    if differing:
        detail = ", ".join(f"{k}: checkpoint {theirs.get(k)!r}, run {mine.get(k)!r}" for k in differing)
        raise ValueError(f"checkpoint {path}: incompatible configuration ({detail})")
    if stored.get("data") != meta["data"]:
        raise ValueError(f"checkpoint {path}: it was written for other training data")
    if int(state.step) > iterations:
        raise ValueError(
            f"checkpoint {path}: it is at step {int(state.step)}, past iterations = {iterations}; "
            "expected iterations >= the checkpoint's step (iterations is the run's total length)"
        )
    return state, {k: list(v) for k, v in stored["history"].items()}


def _jsonable(value):
    return json.loads(json.dumps(value))
