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

import numpy as np

from jaxreg.hosts import to_host

__all__ = ["History", "Outcome", "chunk_ends", "drive"]


class History(NamedTuple):
    """Costs at the logged iterations, NaN where a member had diverged or its cost was not finite."""

    iterations: np.ndarray  # (k,) int64: the logged iterations, 0, log_every, 2 * log_every, ...
    costs: np.ndarray  # (n, k) training cost (with dropout where on), before that iteration's update
    clean_costs: np.ndarray  # (n, k) cost of the full network, no dropout, same iterations
    valid_iterations: np.ndarray  # (j,) int64: the validation checks, after each chunk (log_every, ...)
    valid_costs: np.ndarray  # (n, j) validation cross-entropy there (members with a validation set)

    @classmethod
    def empty(cls, n: int) -> History:
        return cls(np.zeros(0, np.int64), np.zeros((n, 0)), np.zeros((n, 0)), np.zeros(0, np.int64), np.zeros((n, 0)))

    def up_to(self, member: int, stop: int) -> History:
        """Member ``member``'s rows before iteration ``stop`` (its history as a run alone)."""
        k = int(np.searchsorted(self.iterations, stop, side="left"))
        j = int(np.searchsorted(self.valid_iterations, stop, side="left"))
        one = slice(member, member + 1)
        return History(self.iterations[:k], self.costs[one, :k], self.clean_costs[one, :k],
                       self.valid_iterations[:j], self.valid_costs[one, :j])

    def extended(self, rows: list, valid_rows: list) -> History:
        """With ``rows`` ``(iteration, costs (n,), clean (n,))`` and ``valid_rows`` ``(iteration, costs (n,))``."""
        def grow(its, values, new):
            if not new:
                return its, *values
            extra, *columns = zip(*new, strict=True)
            return (np.concatenate([its, extra]),
                    *[np.concatenate([v, np.stack(c, axis=1)], axis=1) for v, c in zip(values, columns, strict=True)])

        its, costs, clean = grow(self.iterations, (self.costs, self.clean_costs), rows)
        valid_its, valid = grow(self.valid_iterations, (self.valid_costs,), valid_rows)
        return History(its, costs, clean, valid_its, valid)


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
    on_costs: Callable[[int, np.ndarray], None] | None = None,
    replay: Callable | None = None,
) -> Outcome:
    """Train ``n`` members from iteration ``start`` to ``total``.

    ``run(states, n_steps)`` returns ``(states, costs, log)`` with costs ``(n, n_steps)`` (or
    ``(n_steps,)`` for one member) and a :class:`~jaxreg.programs.ChunkLog` of ``(n,)`` values
    (or scalars). The loop ends early once every member has diverged or stopped. ``history``
    continues a resumed run's. ``save(outcome)`` is called every ``save_every``
    iterations (rounded up to a chunk end), at the end, and when every member has
    diverged or stopped (the loop then ends); ``on_chunk(step, total)`` after each chunk;
    ``on_costs(start, costs)`` with each chunk's training costs ``(n, n_steps)``, one per
    step from iteration ``start`` (before its update), as they reach the host.

    ``replay(states, member, n_steps)`` gives one member's state ``n_steps`` after
    ``states`` (those of a chunk's start), run alone: a diverged member's last finite
    state. Default, for one member: ``run`` itself."""
    if replay is None:
        if n != 1:
            raise ValueError(f"replay: got None for {n} members, expected a function")
        replay = _replay_alone(run)
    history = history or History.empty(n)
    rows: list[tuple] = []  # (iteration, costs (n,), clean costs (n,)) at chunk starts
    valid_rows: list[tuple] = []  # (iteration, validation costs (n,)) at chunk ends
    diverged_at = np.full(n, -1, np.int64)
    last_finite: dict[int, Any] = {}
    step, last_saved = start, start

    def outcome() -> Outcome:
        return Outcome(states, history.extended(rows, valid_rows), step, diverged_at.copy(), dict(last_finite))

    for end in chunk_ends(start, total, log_every):
        new_states, costs, log = run(states, end - step)
        costs, log = to_host((costs, log))
        costs = costs.reshape(n, end - step)
        if on_costs is not None:
            on_costs(step, costs)
        alive = diverged_at < 0
        if step % log_every == 0:
            finite_first = alive & np.isfinite(costs[:, 0])
            rows.append((step, np.where(finite_first, costs[:, 0], np.nan),
                         np.where(alive, _members(log.clean_cost, n), np.nan)))
        for r in np.flatnonzero(alive & ~np.all(np.isfinite(costs), axis=1)):
            bad = int(np.argmax(~np.isfinite(costs[r])))
            diverged_at[r] = step + bad
            # The state of the last finite cost: `bad - 1` steps into the chunk, redone.
            last_finite[r] = replay(states, r, max(bad - 1, 0))
        if log.valid_cost is not None:
            valid_rows.append((end, np.where(diverged_at < 0, _members(log.valid_cost, n), np.nan)))
        states, step = new_states, end
        stopped = diverged_at >= 0
        if log.stopped is not None:
            stopped |= _members(log.stopped, n).astype(bool)
        if np.all(stopped):  # every member has diverged or stopped early: nothing left to train
            if save is not None:
                save(outcome())
            return outcome()
        if save is not None and (end == total or (save_every and end - last_saved >= save_every)):
            save(outcome())
            last_saved = end
        if on_chunk is not None:
            on_chunk(end, total)
    return outcome()


def _members(values, n: int) -> np.ndarray:
    """A chunk's per-member values ``(n,)`` (one member's come as a scalar)."""
    return np.asarray(values, np.float64).reshape(n)


def _replay_alone(run: Callable) -> Callable:
    """The replay of a run of one member: its own ``run``."""
    return lambda states, member, n_steps: states if n_steps == 0 else run(states, n_steps)[0]
