"""The one member-run core: members of one compiled program, from their first state to their results.

A :class:`Group` is members that share a :class:`~jaxreg.config.Program`: configurations that
differ in traced settings only, each with its own key and (with validation) its own 0/1
split weights. :func:`jaxreg.train` runs a group of one member with the unbatched programs
(``init_state``, ``run_chunk``, ``evaluate``); :func:`jaxreg.sweep.sweep` runs groups of many
with their vmapped, sharded twins (``init_members``, ``run_members``, ``evaluate_members``).
Either way the same steps make a run:

1. :func:`start`: the members' initial states and the :class:`~jaxreg.driver.Loop` that trains them;
2. :func:`jaxreg.driver.drive`: the chunks, histories, divergence and checkpoints;
3. :func:`finish`: each member's final state (its last finite one after a divergence) and its
   history, ending where a run alone ends (at its divergence, or the check that stopped it);
4. :func:`judge` and :func:`result`: the trained parameters evaluated, and a :class:`TrainResult`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from jaxreg import reference
from jaxreg.config import Program, TrainConfig, hyper_of
from jaxreg.driver import History, Loop, Outcome, replay_alone
from jaxreg.hosts import to_host
from jaxreg.programs import (
    Split,
    TrainState,
    evaluate,
    evaluate_members,
    init_members,
    init_state,
    key_data,
    run_chunk,
    run_members,
)

__all__ = ["TrainResult", "Group", "Member", "bucket", "group", "start", "finish", "judge", "accuracies", "result"]


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
    diverged_at: int | None = None  # the first iteration whose cost was not finite (then: the last finite state)


class Group(NamedTuple):
    """Members sharing one compiled program."""

    program: Program
    configs: tuple[TrainConfig, ...]  # each member's
    keys: np.ndarray  # key data: (2,) words for one member, (n, words) for a stack
    impl: str  # the keys' PRNG implementation
    split: Split | None  # 0/1 weights: (1, m) each for one member, (n, 1, m) for a stack
    stacked: bool  # a stack of members (vmapped programs), or one member


class Member(NamedTuple):
    """One member after :func:`jaxreg.driver.drive`."""

    state: TrainState  # its final state; its last finite one after a divergence
    history: History  # its rows (1, k), ending where a run of it alone ends
    diverged_at: int  # the first iteration whose cost was not finite, -1 where none


MIN_BUCKET = 1024  # examples every run of fewer is padded to, with bucket=True: one program serves them all
BUCKET_GROWTH = 1.25  # above it, each bucket is this much larger than the one before (rounded to 128)


def bucket(m: int) -> int:
    """The number of examples a run of ``m`` is padded to, so that runs of nearby sizes (the folds of a
    cross-validation and its refit) share one compiled program: ``MIN_BUCKET``, or the first of the
    series growing by ``BUCKET_GROWTH`` that holds ``m``."""
    size = MIN_BUCKET
    while size < m:
        size = -(-int(size * BUCKET_GROWTH) // 128) * 128
    return size


def course_masks(config: TrainConfig, m: int, width: int | None = None):
    """The textbook's masks for the ``course`` schedule (with dropout), else None: drawn for the first
    ``width`` examples (default ``m``), False on the padding beyond."""
    if config.masks != "course" or not config.dropout:
        return None
    width = m if width is None else int(width)
    masks = reference.course_masks(config.layer_dims, width, config.keep_prob)
    return tuple(np.pad(np.asarray(d, bool), ((0, 0), (0, m - width))) for d in masks)


def group(configs: list[TrainConfig], keys: np.ndarray, impl: str, split: Split | None, stacked: bool) -> Group:
    """The group of ``configs`` (one compiled program: they differ in traced settings only)."""
    return Group(Program.of(configs[0], split=split is not None), tuple(configs), keys, impl, split, stacked)


def _stack(trees: list):
    return jax.tree_util.tree_map(lambda *a: np.stack(a), *trees)


def start(g: Group, X, Y, *, place=None, mesh=None) -> tuple[Any, Loop]:
    """The members' states at step 0 and the loop that trains them on ``X``, ``Y`` (placed on
    their devices). A stack's per-member inputs are laid out by ``place(host array)`` over the
    ``mesh`` (None: one device)."""
    m, width = X.shape[1], None if g.split is None else g.split.width
    if not g.stacked:
        hyper, masks = hyper_of(g.configs[0]), course_masks(g.configs[0], m, width)
        states = init_state(g.keys, impl=g.impl, program=g.program.for_init())

        def run(states, n_steps):
            return run_chunk(states, hyper, masks, g.split, X, Y, program=g.program, n_steps=n_steps)

        return states, Loop(run, replay_alone(run))
    masks = [course_masks(c, m, None if width is None else np.reshape(width, -1)[0]) for c in g.configs]
    inputs = (g.keys, _stack([hyper_of(c) for c in g.configs]), None if masks[0] is None else _stack(masks), g.split)
    keys, hyper, masks, split = (jax.tree_util.tree_map(place, t) for t in inputs)
    states = init_members(keys, impl=g.impl, program=g.program.for_init())  # laid out as its key data

    def run(states, n_steps):
        return run_members(states, hyper, masks, split, X, Y, program=g.program, n_steps=n_steps, mesh=mesh)

    def replay(states, r, n_steps):  # a diverged member alone, as train runs it: the same program
        state, one = _host_member(states, r), _host_member((hyper, masks, split), r)
        return state if n_steps == 0 else run_chunk(state, *one, X, Y, program=g.program, n_steps=n_steps)[0]

    return states, Loop(run, replay)


def _host_member(tree, r: int):
    """Member ``r`` of stacked arrays, on the host (typed keys kept as keys): no device work."""
    def take(a):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(to_host(jax.random.key_data(a))[r], impl=str(jax.random.key_impl(a)))
        return to_host(a)[r]

    return jax.tree_util.tree_map(take, tree)


def finish(outcome: Outcome, g: Group) -> list[Member]:
    """Every member's final state and history: a stack's on the host (keys dropped: they are the
    group's ``keys``), one member's as the loop left them (on every host)."""
    if not g.stacked:
        state = outcome.states if outcome.diverged_at[0] < 0 else outcome.last_finite[0]
        state = to_host(state) if jax.process_count() > 1 else state  # arrays across hosts: the same on each
        return [_member(outcome, 0, state)]
    host = to_host(outcome.states._replace(key=None))
    members = []
    for r in range(len(g.configs)):
        diverged = outcome.diverged_at[r] >= 0
        state = to_host(outcome.last_finite[r]._replace(key=None)) if diverged else \
            jax.tree_util.tree_map(lambda a: a[r], host)  # noqa: B023 (used at once)
        members.append(_member(outcome, r, state))
    return members


def _member(outcome: Outcome, r: int, state: TrainState) -> Member:
    """Member ``r``'s history as its run alone records it: up to its divergence, or up to the
    check that stopped it (its later rows, computed and dropped, are cut)."""
    diverged_at = int(outcome.diverged_at[r])
    stop = diverged_at if diverged_at >= 0 else np.inf
    stopped_at = -1 if state.best is None else int(state.best.stopped_at)
    history = outcome.history.up_to(r, min(stop, stopped_at) if stopped_at >= 0 else stop,
                                    stopped_at + 1 if stopped_at >= 0 else stop)
    return Member(state, history, diverged_at)


def judge(params: dict, lambd: np.ndarray, split: Split | None, X, Y, X_test=None, Y_test=None, *,
          stacked: bool) -> dict[str, np.ndarray | None]:
    """Trained parameters in one compiled call (``params`` and ``lambd`` ``(n,)`` with a leading
    member axis where ``stacked``): ``final_cost`` (the full network's, L2 included, no dropout,
    on each member's training examples), the :func:`accuracies` and ``valid_cost`` (None
    without validation); each an array ``(n,)`` (``(1,)`` for one member)."""
    dtype = jax.tree_util.tree_leaves(params)[0].dtype
    Xt = None if X_test is None else np.asarray(X_test, dtype)
    lambd = np.asarray(lambd, dtype)
    X_, Y_ = np.asarray(X, dtype), np.asarray(Y, dtype)
    if stacked:
        out = to_host(evaluate_members(params, lambd, split, X_, Y_, Xt))
    else:
        out = to_host(evaluate(params, lambd, X_, Y_, Xt, split))
    judged = {"final_cost": out.final_cost, "valid_cost": out.valid_cost,
              **accuracies(out.predictions, Y, split, out.test_predictions, Y_test)}
    return {k: None if v is None else np.asarray(v, np.float64).reshape(-1) for k, v in judged.items()}


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


def kept_params(state: TrainState) -> dict:
    """The parameters a run keeps: the best check's with early stopping, else the last."""
    return state.params if state.best is None else state.best.params


def result(member: Member, config: TrainConfig, judged: dict, r: int = 0) -> TrainResult:
    """Member ``r`` of :func:`judge`'s arrays as a :class:`TrainResult`."""
    state, h, best = member.state, member.history, member.state.best

    def at(name):
        return None if judged[name] is None else float(judged[name][r])

    return TrainResult(
        params=kept_params(state),
        state=state,
        iterations=h.iterations,
        costs=h.costs[0],
        clean_costs=h.clean_costs[0],
        final_cost=at("final_cost"),
        train_accuracy=at("train_accuracy"),
        test_accuracy=at("test_accuracy"),
        config=config,
        valid_accuracy=at("valid_accuracy"),
        valid_cost=at("valid_cost"),
        valid_iterations=h.valid_iterations,
        valid_costs=h.valid_costs[0],
        best_iteration=None if best is None or int(best.step) < 0 else int(best.step),
        stopped_at=None if best is None or int(best.stopped_at) < 0 else int(best.stopped_at),
        diverged_at=None if member.diverged_at < 0 else member.diverged_at,
    )


def seed_keys(seeds) -> np.ndarray:
    """``jax.random.key(seed)``'s key data for each seed, ``(n, 2)``, computed on the host."""
    return np.stack([key_data(seed=int(s))[0] for s in seeds])
