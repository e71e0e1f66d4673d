"""The one training loop: chunks, cost history, divergence, checkpoints, progress.

A run is ``n >= 1`` members trained side by side by one compiled ``run(states,
n_steps) -> (states, costs, clean_costs)``: :func:`jaxreg.programs.run_chunk` for a
single run, :func:`jaxreg.programs.run_members` for a sweep. Chunks end at multiples
of ``log_every`` and at the end; between chunks the host records the history, finds
members whose cost turned NaN or infinite (redoing their chunk up to the last finite
step: steps are deterministic), writes checkpoints and reports progress.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

__all__ = ["History", "Outcome", "chunk_ends", "drive", "to_host"]


class History(NamedTuple):
    """Costs at the logged iterations, NaN where a member had diverged or its cost was not finite."""

    iterations: np.ndarray  # (k,) int64: the logged iterations, 0, log_every, 2 * log_every, ...
    costs: np.ndarray  # (n, k) training cost (with dropout where on), before that iteration's update
    clean_costs: np.ndarray  # (n, k) cost of the full network, no dropout, same iterations

    @classmethod
    def empty(cls, n: int) -> History:
        return cls(np.zeros(0, np.int64), np.zeros((n, 0)), np.zeros((n, 0)))

    def up_to(self, member: int, stop: int) -> History:
        """Member ``member``'s rows before iteration ``stop`` (its history as a run alone)."""
        k = int(np.searchsorted(self.iterations, stop, side="left"))
        return History(self.iterations[:k], self.costs[member:member + 1, :k],
                       self.clean_costs[member:member + 1, :k])


class Outcome(NamedTuple):
    """Where a run stands after its last chunk (or when every member has diverged)."""

    states: Any  # the states as ``run`` returns them, every member
    history: History
    step: int  # the iteration the states are at
    diverged_at: np.ndarray  # (n,) int64: the first iteration whose cost was not finite, -1 where none
    last_finite: dict[int, Any]  # member -> its last state with a finite cost, for each diverged member


def chunk_ends(start: int, total: int, log_every: int) -> list[int]:
    """Chunk boundaries after ``start``: multiples of ``log_every``, and ``total``."""
    first = (start // log_every + 1) * log_every
    return [*range(first, total, log_every)] + ([total] if total > start else [])


def to_host(tree):
    """Host NumPy copies of a (possibly sharded, possibly multi-host) pytree of arrays."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return jax.tree_util.tree_map(lambda a: np.asarray(multihost_utils.process_allgather(a, tiled=True)),
                                      tree)
    return jax.tree_util.tree_map(np.asarray, tree)


def drive(
    run: Callable,
    states,
    *,
    n: int,
    start: int,
    total: int,
    log_every: int,
    history: History | None = None,
    save: Callable[[Outcome], None] | None = None,
    save_every: int | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
    replay: Callable | None = None,
) -> Outcome:
    """Train ``n`` members from iteration ``start`` to ``total``.

    ``run(states, n_steps)`` returns ``(states, costs, clean)`` with costs ``(n, n_steps)``
    (or ``(n_steps,)`` for one member) and clean costs ``(n,)`` (or a scalar). ``history``
    continues a resumed run's. ``save(outcome)`` is called every ``save_every``
    iterations (rounded up to a chunk end), at the end, and when every member has
    diverged (the loop then stops); ``on_chunk(step, total)`` after each chunk.

    ``replay(states, member, n_steps)`` gives one member's state ``n_steps`` after
    ``states`` (those of a chunk's start), run alone: a diverged member's last finite
    state. Default, for one member: ``run`` itself."""
    if replay is None:
        if n != 1:
            raise ValueError(f"replay: got None for {n} members, expected a function")
        replay = _replay_alone(run)
    history = history or History.empty(n)
    rows: list[tuple[int, np.ndarray, np.ndarray]] = []
    diverged_at = np.full(n, -1, np.int64)
    last_finite: dict[int, Any] = {}
    step, last_saved = start, start

    def outcome() -> Outcome:
        if rows:
            its, costs, clean = zip(*rows, strict=True)
            logged = History(np.concatenate([history.iterations, its]),
                             np.concatenate([history.costs, np.stack(costs, axis=1)], axis=1),
                             np.concatenate([history.clean_costs, np.stack(clean, axis=1)], axis=1))
        else:
            logged = history
        return Outcome(states, logged, step, diverged_at.copy(), dict(last_finite))

    for end in chunk_ends(start, total, log_every):
        new_states, costs, clean = run(states, end - step)
        costs, clean = to_host((costs, clean))
        costs, clean = costs.reshape(n, end - step), clean.reshape(n).astype(np.float64)
        alive = diverged_at < 0
        if step % log_every == 0:
            finite_first = alive & np.isfinite(costs[:, 0])
            rows.append((step, np.where(finite_first, costs[:, 0], np.nan), np.where(alive, clean, np.nan)))
        for r in np.flatnonzero(alive & ~np.all(np.isfinite(costs), axis=1)):
            bad = int(np.argmax(~np.isfinite(costs[r])))
            diverged_at[r] = step + bad
            # The state of the last finite cost: `bad - 1` steps into the chunk, redone.
            last_finite[r] = replay(states, r, max(bad - 1, 0))
        states, step = new_states, end
        if np.all(diverged_at >= 0):
            if save is not None:
                save(outcome())
            return outcome()
        if save is not None and (end == total or (save_every and end - last_saved >= save_every)):
            save(outcome())
            last_saved = end
        if on_chunk is not None:
            on_chunk(end, total)
    return outcome()


def _replay_alone(run: Callable) -> Callable:
    """The replay of a run of one member: its own ``run``."""
    return lambda states, member, n_steps: states if n_steps == 0 else run(states, n_steps)[0]
