"""What the commands share: flags, data, the run's configuration, JAX's start, progress, output.

Imports stay inside the functions that need them (JAX, plotting, tqdm): the flags and the
data are checked before JAX starts, so bad input is answered at once.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time

from jaxreg.cli import interrupt
from jaxreg.config import check_seed

DEFAULT_HIDDEN = (20, 3)  # the reference network [n_x, 20, 3, 1]
FIGURE_POINTS = 300**2  # the grid a decision-boundary figure evaluates the network on (boundary())


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


class HelpFormatter(argparse.HelpFormatter):
    """Help that shows each option's default where it has one (and does not say it already)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if "(default" in text or default is None or default is False or default is argparse.SUPPRESS \
                or not action.option_strings:
            return text
        return f"{text} (default {_typed(default).replace('%', '%%')})".lstrip()


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

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
    from jaxreg.data import DATASETS

    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="PATH",
                        help="a data file, one example per row: .npz or .mat with arrays X (m, n_x) and y (m, 1) "
                        "of 0/1, and optionally a test set Xval, yval; or .csv with the label in the last column "
                        "(a header row is allowed)")
    source.add_argument("--dataset", choices=DATASETS, default="default",
                        help="a built-in 2-D dataset, made from --data-seed: default (200 training and 1000 test "
                        "points split by a curved line, 14%% of each class strays near it), moons, circles, spiral")
    p.add_argument("--test-data", metavar="PATH", help="a second .csv as test set (with --data FILE.csv)")
    p.add_argument("--data-seed", type=int, default=None, metavar="S",
                   help="seed of the built-in dataset and of --test-split (default 0)")
    p.add_argument("--test-split", type=float, default=None, metavar="F",
                   help="hold out a stratified fraction F of the training examples as the test set (for data "
                   "without one; seeded by --data-seed)")


def add_training_flags(p, *, regularization: bool = True, seed: bool = True) -> None:
    """The flags `train`, `compare` and `sweep` share (defaults: the textbook's)."""
    from jaxreg.config import INITS, MASK_SCHEDULES, OPTIMIZERS

    p.add_argument("--layers", type=ints, default=DEFAULT_HIDDEN, metavar="N1,N2,...",
                   help="hidden widths: the network is [n_x, N1, N2, ..., 1]")
    if regularization:
        p.add_argument("--lambd", type=float, default=0.0, metavar="L",
                       help="L2 strength: the cost adds lambd/(2m) * sum of squared weights")
        p.add_argument("--keep-prob", type=floats, default=(1.0,), metavar="P[,P...]",
                       help="probability of KEEPING a hidden unit (inverted dropout; 1: none), one value or one "
                       "per hidden layer")
    p.add_argument("--learning-rate", type=float, default=0.3, metavar="LR", help="the step size")
    p.add_argument("--iterations", type=int, default=30000, metavar="N",
                   help="the run's total length (full-batch gradient steps)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd",
                   help="sgd: plain gradient descent, as the textbook; momentum: heavy ball, 0.9; adam: Adam with "
                   "optax's defaults")
    p.add_argument("--weight-decay", type=float, default=0.0, metavar="D",
                   help="decoupled weight decay of the weights, apart from --lambd")
    p.add_argument("--init", choices=INITS, default="he",
                   help="initial weights: he, normal with variance 2/n_in (for ReLU); lecun, 1/n_in; zeros (every "
                   "unit alike: the symmetry problem); course, the textbook's own draw (NumPy, seed 3), to "
                   "reproduce its numbers")
    p.add_argument("--masks", choices=MASK_SCHEDULES, default="per-step",
                   help="dropout masks: per-step, new masks every step from --seed (a run's result never depends "
                   "on how it was chunked or resumed); fixed, one mask for every step; course, the textbook's "
                   "masks (NumPy, seed 1), the same at every step, to reproduce its numbers")
    if seed:
        p.add_argument("--seed", type=int, default=0, metavar="S", help="key for initialisation and dropout masks")
    p.add_argument("--precision", choices=("float32", "float64"), default="float32")
    p.add_argument("--log-every", type=int, default=1000, metavar="N",
                   help="record the cost (and check validation, and report progress) every N iterations")
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


def validation_options(args, m: int) -> dict:
    """The library's validation keywords from the flags (the validation file loaded), checked
    for a training set of ``m`` examples before JAX starts (errors: :func:`renamed` names the flags)."""
    from jaxreg import data, splits

    options = {"split_seed": check_seed(args.split_seed, "--split-seed")}
    if args.validation_data:
        held = data.load(args.validation_data)
        options["validation"] = (held.X, held.Y)
    if args.validation_split is not None:
        options["validation_split"] = splits.check_fraction(args.validation_split)
    if getattr(args, "folds", None) is not None:
        options["folds"] = args.folds
        if args.folds != 0:
            splits.check_folds(args.folds, m)
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


def dataset(args, test_split: float | None = None):
    """The data the flags name, with ``--test-split`` (or ``test_split``, a command's default for data
    without a test set) held out as the test set."""
    from jaxreg import data

    if args.test_data and not args.data:
        raise UsageError("jaxreg: --test-data goes with --data")
    if args.data and args.data_seed is not None and args.test_split is None:
        raise UsageError("jaxreg: --data-seed seeds a built-in --dataset or --test-split, expected one of them "
                         "with --data")
    seed = check_seed(0 if args.data_seed is None else args.data_seed, "--data-seed")
    dataset = data.load(args.data, test_path=args.test_data) if args.data else data.make_dataset(args.dataset,
                                                                                                 seed=seed)
    if args.test_split is not None or (test_split is not None and dataset.X_test is None):
        fraction = args.test_split if args.test_split is not None else test_split
        dataset = data.test_split(dataset, fraction, seed)
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


FLAGS = {"layer_dims": "--layers", "lambd": "--lambd", "keep_prob": "--keep-prob", "learning_rate": "--learning-rate",
         "iterations": "--iterations", "weight_decay": "--weight-decay", "log_every": "--log-every",
         "early_stopping": "--early-stopping", "dtype": "--precision", "checkpoint_every": "--checkpoint-every",
         "epsilon": "--epsilon", "threshold": "--threshold", "directions": "--directions",
         "validation_split": "--validation-split", "folds": "--folds", "test_split": "--test-split"}


def config(args, n_x: int, **overrides):
    """The :class:`~jaxreg.config.TrainConfig` the shared flags give (validated, no JAX); its
    errors name the flag and the value typed (:func:`renamed`)."""
    from jaxreg.config import TrainConfig

    options = dict(
        learning_rate=args.learning_rate, iterations=args.iterations, optimizer=args.optimizer,
        weight_decay=args.weight_decay, init=args.init, masks=args.masks, dtype=args.precision,
        log_every=args.log_every, early_stopping=getattr(args, "early_stopping", None),
    )
    options = {**options, **overrides}
    try:
        return TrainConfig(layer_dims=(n_x, *args.layers, 1), **options)
    except (ValueError, TypeError) as err:
        raise renamed(err, {**options, "layer_dims": args.layers}) from None


def renamed(err: Exception, typed: dict) -> Exception:
    """A library error for the command line: ``keep_prob: got [0.0, 0.0], ...`` becomes ``--keep-prob:
    got 0, ...``: the flag the user typed (:data:`FLAGS`) and the value as typed (``typed``: by the
    library's argument name; a value not there keeps the library's rendering). Others: ``err``."""
    field, _, rest = str(err).partition(": ")
    if field not in FLAGS:
        return err
    value = typed.get(field)
    if value is not None and rest.startswith("got "):
        rest = re.sub(r"^got .*?(, expected)", lambda m: f"got {_typed(value)}{m.group(1)}", rest, count=1)
    return type(err)(f"{FLAGS[field]}: {rest}")


def typed_values(args) -> dict:
    """The flags' values by the library's argument names (:data:`FLAGS`), as parsed."""
    return {field: getattr(args, flag[2:].replace("-", "_")) for field, flag in FLAGS.items()
            if hasattr(args, flag[2:].replace("-", "_"))}


def _typed(value) -> str:
    """A value as the user would have typed it: 0 rather than 0.0, 1e-320 rather than 9.99989e-321,
    20,3 for a tuple (a flag of comma-separated values)."""
    if isinstance(value, tuple):
        return ",".join(map(_typed, value))
    if isinstance(value, float):
        short, exact = f"{value:g}", repr(value)
        return short if float(short) == value and len(short) <= len(exact) else exact
    return str(value)


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
    """What a run shows on stderr while it trains (the first process only; nothing with ``--json``):
    on a terminal a tqdm bar, started after the first chunk (which compiles) so its rate and ETA
    are the training's; elsewhere (logs, CI, pipes) one plain line per chunk, i.e. every
    ``--log-every`` iterations: iteration, training cost, seconds elapsed, iterations per second.

    With ``trace_every`` it also keeps the training cost every that many iterations
    (``trace``: iterations, costs), a curve as fine as a figure needs whatever ``--log-every``."""

    def __init__(self, total: int, quiet: bool, desc: str = "training", trace_every: int | None = None,
                 unit: str = "iteration"):
        self.total, self.desc, self.trace_every, self.unit = total, desc, trace_every, unit
        self.silent = quiet
        self.tty = sys.stderr.isatty()
        self.bar, self.cost, self.first = None, None, None  # first: the iteration this process started at
        self.trace: tuple[list, list] = ([], [])
        self.started = self.since = time.perf_counter()
        self.since_step = None

    @property
    def quiet(self) -> bool:
        return self.silent or not is_main()  # asked when printing: the processes start after this is made

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
                       on_chunk=progress, on_costs=progress.costs, **options)
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


def describe(dataset) -> str:
    """The data in words, for a figure's title."""
    test = "" if dataset.X_test is None else f", {dataset.X_test.shape[1]} test"
    return f"{dataset.name} ({dataset.X.shape[1]} training examples{test})"
