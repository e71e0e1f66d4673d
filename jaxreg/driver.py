"""The one training loop: chunks, cost history, divergence, checkpoints, progress.

A run is ``n >= 1`` members trained side by side by the compiled functions of a :class:`Loop`
(:func:`jaxreg.programs.run_chunk` for a single run, :func:`jaxreg.programs.run_members`
for a sweep's members), as far as a :class:`Schedule` says. Chunks end at multiples of
``log_every`` and at the end; between chunks the host records the history, finds members
whose cost turned NaN or infinite (redoing their chunk up to the last finite step: steps
are deterministic), and tells the caller through :class:`Events` (progress, costs, saves).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from jaxreg.hosts import to_host

__all__ = ["History", "Outcome", "Loop", "Schedule", "Events", "chunk_ends", "drive", "replay_alone"]


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

    def up_to(self, member: int, stop, valid_stop=None) -> History:
        """Member ``member``'s rows before iteration ``stop`` (validation checks before ``valid_stop``,
        default ``stop``): its history as a run of it alone records it."""
        k = int(np.searchsorted(self.iterations, stop, side="left"))
        j = int(np.searchsorted(self.valid_iterations, stop if valid_stop is None else valid_stop, side="left"))
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
    """Where a run stands after its last chunk (or when every member has diverged or stopped)."""

    states: Any  # the states as ``loop.run`` returns them, every member
    history: History
    step: int  # the iteration the states are at
    diverged_at: np.ndarray  # (n,) int64: the first iteration whose cost was not finite, -1 where none
    last_finite: dict[int, Any]  # member -> its last state with a finite cost, for each diverged member


class Loop(NamedTuple):
    """The compiled functions a run of ``n`` members is driven by (a contract, as optax's
    ``GradientTransformation`` is one)."""

    run: Callable  # run(states, n_steps) -> (states, costs (n, n_steps) or (n_steps,), ChunkLog of (n,) or scalars)
    replay: Callable  # replay(states, member, n_steps) -> that member's state n_steps after ``states``, run alone


class Schedule(NamedTuple):
    """How far the members go, and how often the host looks at them."""

    n: int  # members
    start: int  # the iteration the states are at
    total: int  # the iteration to reach
    log_every: int  # chunks end at its multiples: the history's and the progress's interval
    save_every: int | None = None  # iterations between saves (rounded up to a chunk end); None: at the end only


class Events(NamedTuple):
    """What the caller is told as the run goes (each optional)."""

    on_chunk: Callable[[int, int], None] | None = None  # (step, total) after each chunk
    on_costs: Callable[[int, np.ndarray], None] | None = None  # (start, costs (n, n_steps)) as they reach the host
    save: Callable[[Outcome], None] | None = None  # the run so far, to keep (a checkpoint)


def chunk_ends(start: int, total: int, log_every: int) -> list[int]:
    """Chunk boundaries after ``start``: multiples of ``log_every``, and ``total``."""
    first = (start // log_every + 1) * log_every
    return [*range(first, total, log_every)] + ([total] if total > start else [])


def drive(loop: Loop, states, schedule: Schedule, history: History | None = None,
          events: Events | None = None) -> Outcome:
    """Train ``schedule.n`` members from ``states`` (at ``schedule.start``) to ``schedule.total``,
    continuing ``history`` (a resumed run's). The loop ends early once every member has
    diverged or stopped. ``events.save`` is called every ``save_every`` iterations, at the end,
    and when every member has diverged or stopped; a diverged member's last finite state comes
    from ``loop.replay`` (steps are deterministic)."""
    n, log_every = schedule.n, schedule.log_every
    history, events = history or History.empty(n), events or Events()
    rows: list[tuple] = []  # (iteration, costs (n,), clean costs (n,)) at chunk starts
    valid_rows: list[tuple] = []  # (iteration, validation costs (n,)) at chunk ends
    diverged_at = np.full(n, -1, np.int64)
    last_finite: dict[int, Any] = {}
    step, last_saved = schedule.start, schedule.start
    previous = None  # the states and step of the previous chunk's start

    def outcome() -> Outcome:
        return Outcome(states, history.extended(rows, valid_rows), step, diverged_at.copy(), dict(last_finite))

    ends = chunk_ends(schedule.start, schedule.total, log_every)
    ahead = loop.run(states, ends[0] - step) if ends else None
    for k, end in enumerate(ends):
        new_states, costs, log = ahead
        # The next chunk is dispatched before this one's costs are read: the device never waits for the
        # host (a chunk not needed, after every member stopped or diverged, is computed and dropped).
        ahead = loop.run(new_states, ends[k + 1] - end) if k + 1 < len(ends) else None
        costs, log = to_host((costs, log))
        costs = costs.reshape(n, end - step)
        if events.on_costs is not None:
            events.on_costs(step, costs)
        alive = diverged_at < 0
        if step % log_every == 0:
            rows.append((step, np.where(alive & np.isfinite(costs[:, 0]), costs[:, 0], np.nan),
                         np.where(alive, _members(log.clean_cost, n), np.nan)))
        for r in np.flatnonzero(alive & ~np.all(np.isfinite(costs), axis=1)):
            bad = int(np.argmax(~np.isfinite(costs[r])))
            diverged_at[r] = step + bad
            last_finite[r] = _last_finite(loop, states, step, previous, r, bad)
        if log.valid_cost is not None:
            valid_rows.append((end, np.where(diverged_at < 0, _members(log.valid_cost, n), np.nan)))
        previous, states, step = (states, step), new_states, end
        stopped = diverged_at >= 0
        if log.stopped is not None:
            stopped |= _members(log.stopped, n).astype(bool)
        done = bool(np.all(stopped))  # every member has diverged or stopped early: nothing left to train
        due = end == schedule.total or bool(schedule.save_every and end - last_saved >= schedule.save_every)
        if events.save is not None and (done or due):
            events.save(outcome())
            last_saved = end
        if done:
            return outcome()
        if events.on_chunk is not None:
            events.on_chunk(end, schedule.total)
    return outcome()


def _last_finite(loop: Loop, states, step: int, previous, r: int, bad: int):
    """Member ``r``'s state at iteration ``step + bad - 1``, the last whose cost was finite, redone from
    the chunk's start (``states`` at ``step``) or, where the chunk's first cost was not finite, from
    the previous chunk's; the run's first state where no state of this run had a finite cost."""
    if bad > 0:
        return loop.replay(states, r, bad - 1)
    if previous is None:
        return loop.replay(states, r, 0)
    previous_states, previous_step = previous
    return loop.replay(previous_states, r, step - previous_step - 1)


def _members(values, n: int) -> np.ndarray:
    """A chunk's per-member values ``(n,)`` (one member's come as a scalar)."""
    return np.asarray(values, np.float64).reshape(n)


def replay_alone(run: Callable) -> Callable:
    """The replay of a run of one member: its own ``run``."""
    return lambda states, member, n_steps: states if n_steps == 0 else run(states, n_steps)[0]
