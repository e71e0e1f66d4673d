"""What a command shows: progress while it trains, timings, the JSON report's parts, tables'
words and figures (drawn from plain arrays by :mod:`jaxreg.plotting`)."""

from __future__ import annotations

import json
import sys
import time

from jaxreg.cli import interrupt

FIGURE_RESOLUTION = 300  # a decision-boundary figure evaluates the network on this many points squared

class Progress:
    """What a run shows on stderr while it trains (the first process only; nothing with ``--json``):
    on a terminal a tqdm bar, started after the first chunk (which compiles) so its rate and ETA
    are the training's; elsewhere (logs, CI, pipes) one plain line per chunk, i.e. every
    ``--log-every`` iterations: iteration, training cost, seconds elapsed, iterations per second.

    With ``trace_every`` it also keeps the training cost every that many iterations
    (``trace``: iterations, costs), a curve as fine as a figure needs whatever ``--log-every``."""

    def __init__(self, total: int, quiet: bool, desc: str = "training", trace_every: int | None = None,
                 unit: str = "iteration", main=lambda: True):
        self.total, self.desc, self.trace_every, self.unit = total, desc, trace_every, unit
        self.silent, self.main = quiet, main
        self.tty = sys.stderr.isatty()
        self.bar, self.cost, self.first = None, None, None  # first: the iteration this process started at
        self.trace: tuple[list, list] = ([], [])
        self.started = self.since = time.perf_counter()
        self.since_step = None

    @property
    def quiet(self) -> bool:
        return self.silent or not self.main()  # asked when printing: the processes start after this is made

    def costs(self, start: int, costs) -> None:
        """``on_costs``: a chunk's training costs ``(n_steps,)`` from iteration ``start``."""
        import numpy as np

        costs = np.asarray(costs, np.float64).reshape(-1)
        if self.first is None:
            self.first = start
        self.cost = float(costs[-1])
        if self.trace_every:
            at = np.arange(-(-start // self.trace_every) * self.trace_every, start + costs.size, self.trace_every)
            self.trace[0].extend(at.tolist())
            self.trace[1].extend(costs[at - start].tolist())

    def __call__(self, step: int, total: int) -> None:
        interrupt.check()  # a safe point: after each compiled chunk
        now = time.perf_counter()
        if self.quiet:
            pass
        elif self.tty:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=total, initial=step, desc=self.desc, unit="it", delay=1.0, file=sys.stderr,
                                leave=False)
            self.bar.update(step - self.bar.n)
            if self.cost is not None:
                self.bar.set_postfix(cost=f"{self.cost:.6f}", refresh=False)
        else:
            done = step - (self.since_step if self.since_step is not None else (self.first or 0))
            rate = f"{done / max(now - self.since, 1e-9):,.0f} it/s"
            if self.since_step is None:
                rate += " (with compiling)"
            cost = "" if self.cost is None else f", cost {self.cost:.6f}"
            print(f"{self.desc}: {self.unit} {step}/{total}{cost}, {now - self.started:.1f} s, {rate}",
                  file=sys.stderr, flush=True)
        self.since, self.since_step = now, step

    def note(self, text: str) -> None:
        """One line on stderr, beside the bar (unless quiet)."""
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Timed:
    """Wall seconds of a ``with`` block, split into compile (``clock``) and run seconds."""

    def __init__(self, clock):
        self.clock = clock

    def __enter__(self):
        self.start, self.compile_start = time.perf_counter(), self.clock.seconds
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        self.compile_seconds = min(self.clock.seconds - self.compile_start, self.seconds)
        self.run_seconds = self.seconds - self.compile_seconds

    def to_json(self) -> dict:
        return {"seconds": round(self.seconds, 3), "compile_seconds": round(self.compile_seconds, 3),
                "run_seconds": round(self.run_seconds, 3)}


def run_name(config) -> str:
    parts = [f"lambd {config.lambd:g}"] if config.lambd else []
    if config.dropout:
        parts.append("keep_prob " + ",".join(f"{p:g}" for p in config.keep_prob))
    return ", ".join(parts) or "no regularization"


# ----------------------------------------------------------------------------- output


def histories(result) -> dict:
    """A TrainResult's cost histories for JSON: ``[[iteration, cost], ...]``."""
    return {name: [[int(i), float(c)] for i, c in zip(result.iterations, getattr(result, name), strict=True)]
            for name in ("costs", "clean_costs")}


def summary(result, timed: Timed) -> dict:
    validated = {} if result.valid_accuracy is None else {
        "valid_accuracy": result.valid_accuracy, "valid_cost": result.valid_cost,
        "valid_costs": [[int(i), float(c)] for i, c in zip(result.valid_iterations, result.valid_costs, strict=True)],
        "best_iteration": result.best_iteration, "stopped_at": result.stopped_at}
    return {
        "train_accuracy": result.train_accuracy,
        "test_accuracy": result.test_accuracy,
        "final_cost": result.final_cost,
        **validated,
        **histories(result),
        **timed.to_json(),
    }


def print_json(report: dict) -> None:
    print(json.dumps(report))


def preload_plotting() -> None:
    """Import matplotlib (~0.4 s) in a background thread while JAX compiles and trains: XLA
    releases the interpreter as it runs, so the figure's import costs no wall time."""
    import threading

    from jaxreg import plotting

    threading.Thread(target=plotting.load, daemon=True).start()


def boundary(result, dataset, resolution: int = FIGURE_RESOLUTION) -> dict:
    """Everything a decision-boundary plot needs, as plain arrays: ``P(y=1)`` on a grid
    over the training examples' first two features."""
    import numpy as np

    from jaxreg.model import predict_proba

    lo, hi = dataset.X[:2].min(axis=1), dataset.X[:2].max(axis=1)
    pad = 0.05 * (hi - lo)
    gx = np.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution)
    gy = np.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution)
    xx, yy = np.meshgrid(gx, gy)
    grid = np.stack([xx.ravel(), yy.ravel()]).astype(result.params["W1"].dtype)
    proba = np.asarray(predict_proba(result.params, grid)).reshape(xx.shape)
    return {"xx": xx, "yy": yy, "proba": proba}


def trace_every(iterations: int, points: int = 500) -> int:
    """The interval of a figure's cost curve: about ``points`` points over the run."""
    return max(1, iterations // points)


def figure(runs: dict, dataset) -> bytes:
    """The PNG of decision boundaries and cost curves of ``runs`` (name -> ``(TrainResult, trace)``,
    ``trace`` the training cost at a fine interval: :attr:`Progress.trace`)."""
    from jaxreg import plotting

    check_figure(dataset)
    panels = []
    for name, (result, (trace_iterations, trace_costs)) in runs.items():
        end = result.best_iteration if result.best_iteration is not None else int(result.state.step)
        if trace_iterations:  # a resumed run's trace starts where it resumed: the history before it
            before = [i for i, it in enumerate(result.iterations) if it < trace_iterations[0]]
            trace_iterations = [int(result.iterations[i]) for i in before] + list(trace_iterations)
            trace_costs = [float(result.costs[i]) for i in before] + list(trace_costs)
        panels.append({
            "title": name, **boundary(result, dataset), "iterations": result.iterations, "costs": result.costs,
            "clean_costs": result.clean_costs, "train_accuracy": result.train_accuracy,
            "test_accuracy": result.test_accuracy, "final": (end, result.final_cost), "lambd": result.config.lambd,
            **({"trace_iterations": trace_iterations, "trace_costs": trace_costs} if trace_iterations else {}),
        })
    return plotting.compare_figure(panels, dataset.X, dataset.Y, title=describe(dataset))


def check_figure(dataset, flag: str = "--plot") -> None:
    if dataset.X.shape[0] != 2:
        raise ValueError(f"{flag}: the data has {dataset.X.shape[0]} features, expected 2 to draw boundaries")


def describe(dataset) -> str:
    """The data in words, for a figure's title."""
    test = "" if dataset.X_test is None else f", {dataset.X_test.shape[1]} test"
    return f"{dataset.name} ({dataset.X.shape[1]} training examples{test})"
