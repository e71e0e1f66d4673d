"""What the commands share: flags, data, the run's configuration, JAX's start, progress, output.

Imports stay inside the functions that need them (JAX, plotting, tqdm): the flags and the
data are checked before JAX starts, so bad input is answered at once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from jaxreg.cli import interrupt
from jaxreg.config import check_seed

DEFAULT_HIDDEN = (20, 3)  # the reference network [n_x, 20, 3, 1]
FIGURE_POINTS = 300**2  # the grid a decision-boundary figure evaluates the network on (boundary())


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as for every other bad input
        raise UsageError(f"{self.prog}: {message}")


def floats(text: str) -> tuple[float, ...]:
    """``"0.9"`` or ``"0.9,0.6"`` (one value per hidden layer)."""
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or comma-separated numbers, got {text!r}") from None


def ints(text: str) -> tuple[int, ...]:
    """``"20,3"``: hidden widths."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


# ----------------------------------------------------------------------------- flags


def add_data_flags(p) -> None:
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="PATH", help="a .npz, .mat or .csv file (see jaxreg.data)")
    source.add_argument("--dataset", metavar="NAME", default="default",
                        help="a built-in dataset: default, moons, circles, spiral (default: default)")
    p.add_argument("--test-data", metavar="PATH", help="a second .csv as test set (with --data FILE.csv)")


def add_training_flags(p, *, regularization: bool = True, seed: bool = True) -> None:
    """The flags `train`, `compare` and `sweep` share (defaults: the textbook's)."""
    from jaxreg.config import INITS, MASK_SCHEDULES, OPTIMIZERS

    p.add_argument("--layers", type=ints, default=DEFAULT_HIDDEN, metavar="N1,N2,...",
                   help="hidden widths (default 20,3)")
    if regularization:
        p.add_argument("--lambd", type=float, default=0.0, help="L2 strength (default 0)")
        p.add_argument("--keep-prob", type=floats, default=(1.0,), metavar="P[,P...]",
                       help="probability of keeping a hidden unit, one value or one per hidden layer")
    p.add_argument("--learning-rate", type=float, default=0.3, help="(default 0.3)")
    p.add_argument("--iterations", type=int, default=30000, help="the run's total length (default 30000)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    p.add_argument("--weight-decay", type=float, default=0.0,
                   help="decoupled weight decay of the weights, apart from --lambd (default 0)")
    p.add_argument("--init", choices=INITS, default="he")
    p.add_argument("--masks", choices=MASK_SCHEDULES, default="per-step")
    if seed:
        p.add_argument("--seed", type=int, default=0, help="key for initialisation and dropout masks")
    p.add_argument("--precision", choices=("float32", "float64"), default="float32")
    p.add_argument("--log-every", type=int, default=1000, help="record the cost every N iterations")
    add_run_flags(p)


def add_validation_flags(p, *, folds: bool = False) -> None:
    """What a run is judged on while it trains (and early stopping, which watches it)."""
    group = p.add_argument_group("validation (never the test set)")
    held = group.add_mutually_exclusive_group()
    if folds:
        held.add_argument("--folds", type=int, default=None, metavar="K",
                          help="stratified K-fold cross-validation of the training set (default 5 when no other "
                          "validation is given; 0: none, and nothing is chosen)")
    held.add_argument("--validation-data", metavar="PATH",
                      help="a validation set: a .npz, .mat or .csv file (its training arrays)")
    held.add_argument("--validation-split", type=float, metavar="F",
                      help="hold out a stratified fraction F of the training set for validation")
    group.add_argument("--split-seed", type=int, default=0, metavar="S",
                       help="seed of the folds or the held-out fraction (default 0)")
    group.add_argument("--early-stopping", type=int, default=None, metavar="N",
                       help="stop after N validation checks (one every --log-every iterations) without "
                       "improvement, and keep the best check's parameters")


def validation_options(args) -> dict:
    """The library's validation keywords from the flags (the validation file loaded)."""
    from jaxreg import data

    options = {"split_seed": check_seed(args.split_seed, "--split-seed")}
    if args.validation_data:
        held = data.load(args.validation_data)
        options["validation"] = (held.X, held.Y)
    if args.validation_split is not None:
        options["validation_split"] = args.validation_split
    if getattr(args, "folds", None) is not None:
        options["folds"] = args.folds
    return options


def add_hosts_flags(p) -> None:
    """Several processes or hosts on JAX's runtime: every process runs the same command."""
    group = p.add_argument_group("several processes or hosts (every one runs this same command)")
    group.add_argument("--coordinator", metavar="HOST:PORT",
                       help="process 0's address (or $JAX_COORDINATOR_ADDRESS)")
    group.add_argument("--num-processes", type=int, metavar="N", help="how many processes (or $JAXREG_NUM_PROCESSES)")
    group.add_argument("--process-id", type=int, metavar="I", help="this process's index (or $JAXREG_PROCESS_ID)")
    group.add_argument("--distributed", action="store_true",
                       help="find the processes from SLURM, Open MPI or Kubernetes (jax.distributed.initialize())")


def add_run_flags(p) -> None:
    """Flags of every command that computes."""
    p.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
    p.add_argument("--no-cache", action="store_true",
                   help="do not use the compilation cache (default: on, in $JAXREG_CACHE_DIR or ~/.cache/jaxreg; "
                   "JAXREG_CACHE_DIR= turns it off)")


# ----------------------------------------------------------------------------- data and configuration


def dataset(args):
    from jaxreg import data

    if args.test_data and not args.data:
        raise UsageError("jaxreg: --test-data goes with --data")
    dataset = data.load(args.data, test_path=args.test_data) if args.data else data.make_dataset(args.dataset)
    _check_range(dataset, args, getattr(args, "precision", "float64"))
    interrupt.check()
    return dataset


def _check_range(dataset, args, dtype: str) -> None:
    """Features the run's dtype cannot hold (float32 overflows above 3.4e38) are bad input."""
    import numpy as np

    test = ("--test-data", args.test_data) if args.test_data else ("--data", args.data)
    for (flag, path), a in ((("--data", args.data), dataset.X), (test, dataset.X_test)):
        if a is not None and np.abs(a).max() > np.finfo(dtype).max:
            raise ValueError(f"{flag} {path}: got features up to {np.abs(a).max():.3g}, expected at most "
                             f"{np.finfo(dtype).max:.3g} ({dtype} overflows above): scale the features or use "
                             "--precision float64")


def check_paths(args, outputs: dict) -> None:
    """Every output path (``{flag: path}``) checked before anything runs: writable, a regular file
    or new, and not the same file as an input (--data, --test-data) or another output."""
    from jaxreg import files

    files.check_outputs(outputs, {"--data": args.data, "--test-data": args.test_data})


def check_figure(dataset, flag: str = "--plot") -> None:
    if dataset.X.shape[0] != 2:
        raise ValueError(f"{flag}: the data has {dataset.X.shape[0]} features, expected 2 to draw boundaries")


def check_memory(config, dataset, figure: bool = False) -> None:
    """Refuse a run whose network does not fit in the device's memory, before anything is compiled
    (a failed allocation can hang in XLA): one run of ``config`` on the dataset (and a figure's grid)."""
    import jax
    import numpy as np

    from jaxreg import resources
    from jaxreg.sweep import member_bytes

    sets = [a for a in (dataset.X, dataset.X_test) if a is not None]
    m = max([a.shape[1] for a in sets] + [FIGURE_POINTS if figure else 0])
    need = member_bytes(config.layer_dims, m, dtype=config.dtype, optimizer=config.optimizer,
                        n_steps=min(config.log_every, max(config.iterations, 1)))
    need += sum(a.size + a.shape[1] for a in sets) * np.dtype(config.dtype).itemsize
    limit, where = resources.device_memory(jax.devices()[0])
    resources.require(f"layers {list(config.layer_dims)} on {m} examples", need, limit, where,
                      "expected a smaller network (--layers) or fewer examples")


def check_sweep(args, config, dataset, members: int, mc_points: int) -> None:
    """A sweep's memory, before anything is compiled: its results on the host (``members`` runs),
    one member on the device, ``--memory-budget`` and the Monte Carlo figure (``mc_points``)."""
    import jax
    import numpy as np

    from jaxreg import resources
    from jaxreg.sweep import member_bytes

    state = member_bytes(config.layer_dims, 0, dtype=config.dtype, optimizer=config.optimizer, n_steps=0)
    logged = -(-config.iterations // config.log_every) + 1
    resources.require(f"a sweep of {members} runs", resources.sweep_host_bytes(members, state, logged),
                      resources.host_memory(), "the host's memory", "expected fewer seeds or grid values")
    check_memory(config, dataset)
    limit, where = resources.device_memory(jax.devices()[0])
    if limit is not None and args.memory_budget is not None and args.memory_budget * 2**20 > limit:
        raise ValueError(f"--memory-budget: got {args.memory_budget:g} MiB, expected at most {limit // 2**20} MiB "
                         f"({where})")
    resources.require(f"--mc-samples {args.mc_samples}", 2 * args.mc_samples * mc_points *
                      np.dtype(config.dtype).itemsize, limit, where, "expected fewer samples")


def config(args, n_x: int, **overrides):
    """The :class:`~jaxreg.config.TrainConfig` the shared flags give (validated, no JAX)."""
    from jaxreg.config import TrainConfig

    options = dict(
        learning_rate=args.learning_rate, iterations=args.iterations, optimizer=args.optimizer,
        weight_decay=args.weight_decay, init=args.init, masks=args.masks, dtype=args.precision,
        log_every=args.log_every, early_stopping=getattr(args, "early_stopping", None),
    )
    return TrainConfig(layer_dims=(n_x, *args.layers, 1), **{**options, **overrides})


def start_jax(args, *, device_per_core: bool = False):
    """Start JAX for the command: one host device per CPU core where asked (a sweep's members
    then run side by side, see :mod:`jaxreg.cores`), float64 where asked, the compilation
    cache unless ``--no-cache``. Returns a :class:`~jaxreg.compilation.CompileClock`."""
    import warnings

    from jaxreg import cores

    if device_per_core:
        cores.host_device_per_core()
    import jax

    from jaxreg import compilation

    if getattr(args, "precision", None) == "float64":
        jax.config.update("jax_enable_x64", True)
    if hasattr(args, "coordinator"):
        from jaxreg import hosts

        hosts.initialize(args.coordinator, args.num_processes, args.process_id, auto=args.distributed)
    if not args.no_cache:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            compilation.enable_cache()
        for w in caught:
            print(f"jaxreg: warning: {w.message}", file=sys.stderr)
    interrupt.check()
    return compilation.CompileClock()


# ----------------------------------------------------------------------------- running


class Progress:
    """A tqdm bar on an interactive stderr for runs longer than a second (in the first process);
    else nothing."""

    def __init__(self, total: int, quiet: bool, desc: str = "training"):
        self.bar = None
        if not quiet and sys.stderr.isatty() and is_main():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="it", delay=1.0, file=sys.stderr, leave=False)

    def __call__(self, step: int, total: int) -> None:
        interrupt.check()  # a safe point: after each compiled chunk
        if self.bar is not None:
            self.bar.update(step - self.bar.n)

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


def fit(dataset, config, seed, progress, data_parallel: bool = False, **options):
    """:func:`jaxreg.train` on the dataset (``options``: its other keywords; with ``data_parallel``
    the examples split over every device), closing the progress bar however it ends; its user
    warnings (e.g. a learning rate changed on resuming) on stderr, one line each. A cost that is not
    finite before any update is bad input: no learning rate could help."""
    import warnings

    from jaxreg.sweep import train_data_parallel
    from jaxreg.training import TrainingDiverged, train

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            run = train_data_parallel if data_parallel else train
            return run(dataset.X, dataset.Y, config, seed=seed, X_test=dataset.X_test, Y_test=dataset.Y_test,
                       on_chunk=progress, **options)
    except TrainingDiverged as err:
        if err.iteration != 0:
            raise
        raise ValueError(
            f"the cost of the initial network is not finite (at iteration 0, before any update): the data or the "
            f"regularization overflow {config.dtype}; expected values it represents (scale the features, use a "
            "smaller --lambd or --precision float64)") from None
    finally:
        progress.close()
        for w in caught:
            if issubclass(w.category, UserWarning):
                print(f"jaxreg: warning: {w.message}", file=sys.stderr)


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


def is_main() -> bool:
    """True unless this is one of several processes and not the first (which alone prints and writes)."""
    hosts = sys.modules.get("jaxreg.hosts")
    return hosts is None or hosts.is_main()


def boundary(result, dataset, resolution: int = 300) -> dict:
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


def figure(runs: dict, dataset) -> bytes:
    """The PNG of decision boundaries and cost curves of ``runs`` (name -> TrainResult)."""
    from jaxreg import plotting

    check_figure(dataset)
    panels = [
        {"title": name, **boundary(result, dataset), "iterations": result.iterations,
         "costs": result.costs, "clean_costs": result.clean_costs,
         "train_accuracy": result.train_accuracy, "test_accuracy": result.test_accuracy}
        for name, result in runs.items()
    ]
    return plotting.compare_figure(panels, dataset.X, dataset.Y, title=dataset.name)
