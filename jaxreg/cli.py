"""The ``jaxreg`` command line: ``train``, ``compare``, ``sweep``, ``gradcheck``.

Nothing imports this module. Bad input ends with one line on stderr and exit
status 2, never a traceback; results go to stdout.
"""

from __future__ import annotations

import argparse
import sys

from jaxreg.train import TrainingDiverged


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as for every other bad input
        raise UsageError(f"{self.prog}: {message}")


def _floats(text: str) -> tuple[float, ...]:
    """``"0.9"`` or ``"0.9,0.6"`` (one value per hidden layer)."""
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number or comma-separated numbers, got {text!r}"
        ) from None


def _ints(text: str) -> tuple[int, ...]:
    """``"20,3"``: hidden widths."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxreg", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for register in COMMANDS:
        register(sub)
    return parser


# Each command module adds itself here: a function taking the subparsers object,
# adding its parser and setting ``func`` (args -> exit status) as a default.
COMMANDS: list = []


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UsageError as err:
        print(err, file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError, ImportError) as err:
        print(f"jaxreg: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jaxreg: interrupted", file=sys.stderr)
        return 130
    except TrainingDiverged as err:
        print(f"jaxreg: error: {err}", file=sys.stderr)
        return 1


# --- train and compare ---------------------------------------------------------------------------

DEFAULT_HIDDEN = (20, 3)  # the reference network [n_x, 20, 3, 1]
COMPARE_OUT = "out/compare.png"


def _add_data_flags(p) -> None:
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="PATH", help="a .npz, .mat or .csv file (see jaxreg.data)")
    source.add_argument("--dataset", metavar="NAME", default="default",
                        help="a built-in dataset: default, moons, circles, spiral (default: default)")
    p.add_argument("--test-data", metavar="PATH", help="a second .csv as test set (with --data FILE.csv)")


def _add_training_flags(p, *, regularization: bool = True, seed: bool = True) -> None:
    """The flags `train`, `compare` and `sweep` share (defaults: the textbook's)."""
    from jaxreg.train import INITS, MASK_SCHEDULES, OPTIMIZERS

    p.add_argument("--layers", type=_ints, default=DEFAULT_HIDDEN, metavar="N1,N2,...",
                   help="hidden widths (default 20,3)")
    if regularization:
        p.add_argument("--lambd", type=float, default=0.0, help="L2 strength (default 0)")
        p.add_argument("--keep-prob", type=_floats, default=(1.0,), metavar="P[,P...]",
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
    p.add_argument("--json", action="store_true", help="print one JSON object and nothing else")


def _dataset(args):
    from jaxreg import data

    if args.test_data and not args.data:
        raise UsageError("jaxreg: --test-data goes with --data")
    if args.data:
        return data.load(args.data, test_path=args.test_data)
    return data.make_dataset(args.dataset)


def _set_precision(args) -> None:
    if args.precision == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)


def _training_options(args, **overrides) -> dict:
    """The TrainConfig options the shared flags give (the regularization is the caller's)."""
    options = dict(
        learning_rate=args.learning_rate, iterations=args.iterations, optimizer=args.optimizer,
        weight_decay=args.weight_decay, init=args.init, masks=args.masks, dtype=args.precision,
        log_every=args.log_every,
    )
    return {**options, **overrides}


class _Progress:
    """A tqdm bar on an interactive stderr for runs longer than a second; else nothing."""

    def __init__(self, total: int, quiet: bool, desc: str = "training"):
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="it", delay=1.0, file=sys.stderr, leave=False)

    def __call__(self, step: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _fit(dataset, layer_dims, seed, progress, **options):
    from jaxreg.train import train

    try:
        return train(dataset.X, dataset.Y, layer_dims, seed=seed, X_test=dataset.X_test,
                     Y_test=dataset.Y_test, on_chunk=progress, **options)
    finally:
        progress.close()


def _histories(result) -> dict:
    """A TrainResult's cost histories for JSON: ``[[iteration, cost], ...]``."""
    return {name: [[int(i), float(c)] for i, c in zip(result.iterations, getattr(result, name), strict=True)]
            for name in ("costs", "clean_costs")}


def _summary(result, seconds: float) -> dict:
    return {
        "train_accuracy": result.train_accuracy,
        "test_accuracy": result.test_accuracy,
        "final_cost": result.final_cost,
        **_histories(result),
        "seconds": round(seconds, 3),
    }


def _boundary(result, dataset, resolution: int = 300) -> dict:
    """Everything a decision-boundary plot needs, as plain arrays: ``P(y=1)`` on a grid
    over the training examples' first two features."""
    import jax.numpy as jnp
    import numpy as np

    from jaxreg.model import predict_proba

    lo, hi = dataset.X[:2].min(axis=1), dataset.X[:2].max(axis=1)
    pad = 0.05 * (hi - lo)
    gx = np.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution)
    gy = np.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution)
    xx, yy = np.meshgrid(gx, gy)
    grid = np.stack([xx.ravel(), yy.ravel()])
    dtype = result.params["W1"].dtype
    proba = np.asarray(predict_proba(result.params, jnp.asarray(grid, dtype))).reshape(xx.shape)
    return {"xx": xx, "yy": yy, "proba": proba}


def _write_figure(path, runs: dict, dataset) -> None:
    from jaxreg import plotting
    from jaxreg.files import atomic_write

    if dataset.X.shape[0] != 2:
        raise ValueError(f"--plot: the data has {dataset.X.shape[0]} features, expected 2 to draw boundaries")
    panels = [
        {"title": name, **_boundary(result, dataset), "iterations": result.iterations,
         "costs": result.costs, "clean_costs": result.clean_costs,
         "train_accuracy": result.train_accuracy, "test_accuracy": result.test_accuracy}
        for name, result in runs.items()
    ]
    atomic_write(path, plotting.compare_figure(panels, dataset.X, dataset.Y, title=dataset.name))


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train one regularized network",
                       description="Train one network and report its accuracies and cost history.")
    _add_data_flags(p)
    _add_training_flags(p)
    p.add_argument("--save", metavar="PATH", help="write the trained parameters (.npz with W1, b1, ...)")
    p.add_argument("--plot", metavar="PATH", help="write a figure: decision boundary and cost curve")
    p.add_argument("--checkpoint", metavar="PATH", help="save the training state here (atomically)")
    p.add_argument("--checkpoint-every", type=int, metavar="N", help="iterations between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint up to --iterations")
    p.set_defaults(func=run_train)


def run_train(args) -> int:
    import json
    import signal
    import time

    from jaxreg.checkpoint import save_params
    from jaxreg.train import TrainingDiverged

    _set_precision(args)
    if (args.resume or args.checkpoint_every) and not args.checkpoint:
        raise UsageError("jaxreg train: --resume and --checkpoint-every need --checkpoint PATH")
    dataset = _dataset(args)
    layer_dims = [dataset.X.shape[0], *args.layers, 1]
    signal.signal(signal.SIGTERM, _on_sigterm)
    start = time.perf_counter()
    try:
        result = _fit(dataset, layer_dims, args.seed, _Progress(args.iterations, args.json),
                      checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every,
                      resume=args.resume, **_training_options(args, lambd=args.lambd, keep_prob=args.keep_prob))
    except TrainingDiverged as err:
        kept = f"; the last finite state is in {args.checkpoint}" if args.checkpoint else ""
        print(f"jaxreg: error: {err}{kept}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        kept = f"; the last complete checkpoint is kept in {args.checkpoint}" if args.checkpoint else ""
        print(f"jaxreg: interrupted{kept}", file=sys.stderr)
        return 130
    seconds = time.perf_counter() - start
    if args.save:
        save_params(args.save, result.params)
    if args.plot:
        _write_figure(args.plot, {_run_name(result.config): result}, dataset)
    if args.json:
        report = {**_summary(result, seconds), "config": result.config.to_json(), "seed": args.seed,
                  "data": dataset.name}
        print(json.dumps(report))
        return 0
    c = result.config
    print(f"{dataset.name}: layers {list(c.layer_dims)}, lambd {c.lambd}, keep_prob {list(c.keep_prob)}, "
          f"{c.optimizer} lr {c.learning_rate}, {c.iterations} iterations, {c.dtype} ({seconds:.1f} s)")
    for i, cost, clean in zip(result.iterations, result.costs, result.clean_costs, strict=True):
        note = "" if cost == clean else f"  (without dropout {clean:.6f})"
        print(f"  cost after iteration {i:>6}: {cost:.6f}{note}")
    test = "n/a" if result.test_accuracy is None else f"{result.test_accuracy:.4f}"
    print(f"final cost {result.final_cost:.6f} (full network, no dropout), "
          f"train accuracy {result.train_accuracy:.4f}, test accuracy {test}")
    for what, path in (("parameters", args.save), ("figure", args.plot)):
        if path:
            print(f"{what} written to {path}")
    return 0


def _run_name(config) -> str:
    parts = [f"lambd {config.lambd:g}"] if config.lambd else []
    if config.dropout:
        parts.append("keep_prob " + ",".join(f"{p:g}" for p in config.keep_prob))
    return ", ".join(parts) or "no regularization"


def add_compare(sub) -> None:
    p = sub.add_parser(
        "compare", help="no regularization vs L2 vs dropout, side by side (the demo)",
        description="Train the same network three ways (no regularization, L2, dropout) on the same data, "
        "print their accuracies and write one figure with the decision boundaries and cost curves.")
    _add_data_flags(p)
    _add_training_flags(p, regularization=False)
    p.add_argument("--lambd", type=float, default=0.7, help="L2 strength of the L2 run (default 0.7)")
    p.add_argument("--keep-prob", type=_floats, default=(0.86,), metavar="P[,P...]",
                   help="keep_prob of the dropout run (default 0.86)")
    p.add_argument("--plot", metavar="PATH", default=COMPARE_OUT, help=f"the figure (default {COMPARE_OUT})")
    p.set_defaults(func=run_compare)


def run_compare(args) -> int:
    import json
    import time

    _set_precision(args)
    dataset = _dataset(args)
    layer_dims = [dataset.X.shape[0], *args.layers, 1]
    regimes = {
        "no regularization": {"lambd": 0.0, "keep_prob": 1.0},
        f"L2, lambd {args.lambd:g}": {"lambd": args.lambd, "keep_prob": 1.0},
        "dropout, keep_prob " + ",".join(f"{p:g}" for p in args.keep_prob): {
            "lambd": 0.0, "keep_prob": args.keep_prob},
    }
    runs, seconds = {}, {}
    for name, regime in regimes.items():
        start = time.perf_counter()
        runs[name] = _fit(dataset, layer_dims, args.seed, _Progress(args.iterations, args.json, name),
                          **_training_options(args, **regime))
        seconds[name] = time.perf_counter() - start
    if dataset.X.shape[0] == 2:
        _write_figure(args.plot, runs, dataset)
    if args.json:
        print(json.dumps({"data": dataset.name, "layer_dims": layer_dims, "seed": args.seed,
                          "figure": args.plot if dataset.X.shape[0] == 2 else None,
                          "runs": {name: {**_summary(r, seconds[name]), "config": r.config.to_json()}
                                   for name, r in runs.items()}}))
        return 0
    print(f"{dataset.name}: {dataset.X.shape[1]} training examples"
          + (f", {dataset.X_test.shape[1]} test examples" if dataset.X_test is not None else "")
          + f"; layers {layer_dims}, lr {args.learning_rate}, {args.iterations} iterations, {args.precision}")
    print(f"\n{'run':<28} {'train acc':>9} {'test acc':>9} {'final cost':>11} {'seconds':>8}")
    for name, r in runs.items():
        test = "n/a" if r.test_accuracy is None else f"{r.test_accuracy:.4f}"
        print(f"{name:<28} {r.train_accuracy:>9.4f} {test:>9} {r.final_cost:>11.6f} {seconds[name]:>8.2f}")
    print("final cost: the full network's (L2 term included, no dropout) at the final parameters")
    if dataset.X.shape[0] == 2:
        print(f"\nfigure written to {args.plot}")
    return 0


COMMANDS.extend([add_train, add_compare])


def add_gradcheck(sub) -> None:
    """``jaxreg gradcheck``: finite differences vs jax.grad vs the NumPy reference backprop."""
    p = sub.add_parser(
        "gradcheck",
        help="check the network's gradients three ways",
        description="Check gradients three ways (finite differences, jax.grad(jaxreg.loss), the textbook's "
        "NumPy backprop) for seeded random parameters on seeded random data or --data. Exit status 0 when "
        "the check passes under --rule, 1 when it fails, 2 on bad input.",
    )
    p.add_argument("--layers", type=_ints, default=(5, 3),
                   help="hidden widths (default 5,3: the textbook's [4, 5, 3, 1] check network)")
    p.add_argument("--n-x", type=int, default=None, help="features of the random data (default 4)")
    p.add_argument("--m", type=int, default=None,
                   help="examples (default 3; with --data all training examples, or the first M)")
    p.add_argument("--data", metavar="PATH", default=None, help="a dataset file instead of random data")
    p.add_argument("--lambd", type=float, default=0.0, help="L2 strength (default 0)")
    p.add_argument("--keep-prob", type=_floats, default=(1.0,),
                   help="probability of KEEPING a unit, one value or one per hidden layer (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seeds parameters, data, masks, directions")
    p.add_argument("--epsilon", type=float, default=1e-7, help="finite-difference step (default 1e-7)")
    p.add_argument("--rule", choices=("error-model", "textbook"), default="error-model",
                   help="the verdict: every value within 10x its own finite-difference error bound "
                   "(error-model, the default) or the textbook's difference <= --threshold")
    p.add_argument("--threshold", type=float, default=2e-7,
                   help="the textbook rule's largest passing difference (default 2e-7)")
    p.add_argument("--directions", type=int, default=None, metavar="K",
                   help="check K random directions per parameter array instead of every coordinate")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_gradcheck)


def run_gradcheck(args) -> int:
    """Build the network and data, run the three-way check, print it; 0 passed, 1 failed (under --rule)."""
    import functools
    import json

    import jax
    import numpy as np

    from jaxreg import gradcheck, model, validate

    for name, value, least in (("--seed", args.seed, 0), ("--n-x", args.n_x, 1), ("--m", args.m, 1)):
        if value is not None and value < least:
            raise ValueError(f"{name}: got {value}, expected an integer >= {least}")
    X = Y = None
    if args.data is not None:
        from jaxreg import data

        dataset = data.load(args.data)
        X, Y = np.asarray(dataset.X, np.float64), np.asarray(dataset.Y, np.float64)
        if args.n_x is not None and args.n_x != X.shape[0]:
            raise ValueError(f"--n-x: got {args.n_x}, expected {X.shape[0]}, the features in {args.data}")
        if args.m is not None:
            if args.m > X.shape[1]:
                raise ValueError(f"--m: got {args.m}, expected at most {X.shape[1]}, the examples in {args.data}")
            X, Y = X[:, : args.m], Y[:, : args.m]
    n_x, m = (args.n_x or 4, args.m or 3) if X is None else X.shape
    dims = validate.layer_dims([n_x, *args.layers, 1])
    kps = validate.keep_prob(args.keep_prob, len(dims) - 2)

    @functools.partial(jax.jit, static_argnums=(1, 2))
    def draw(seed, dims, m):  # everything random in one compiled program (op by op: dozens of compilations)
        k_params, k_bias, k_x, k_y, k_masks, k_dirs = jax.random.split(jax.random.PRNGKey(seed), 6)
        params = model.init_params(k_params, dims, "he")
        # init_params starts the biases at zero; random ones check the biases away from that special point.
        for l, bias_key in enumerate(jax.random.split(k_bias, len(dims) - 1), start=1):
            params[f"b{l}"] = 0.1 * jax.random.normal(bias_key, params[f"b{l}"].shape)
        masks = model.dropout_masks(k_masks, dims, m, kps) if min(kps) < 1 else None
        X = jax.random.normal(k_x, (dims[0], m))
        return params, X, jax.random.bernoulli(k_y, 0.5, (1, m)).astype(X.dtype), masks, k_dirs

    with jax.enable_x64(True):  # the check runs in float64; draw the data and parameters in it too
        params, X_drawn, Y_drawn, masks, k_dirs = draw(args.seed, dims, m)
        X, Y = (np.asarray(X_drawn), np.asarray(Y_drawn)) if X is None else (X, Y)
        report = gradcheck.check_network(
            params, X, Y, lambd=args.lambd, keep_prob=kps, masks=masks, epsilon=args.epsilon,
            threshold=args.threshold, directions=args.directions, direction_key=k_dirs,
        )
    setting = {"layer_dims": list(dims), "m": int(X.shape[1]), "data": args.data or "random data",
               "lambd": args.lambd, "keep_prob": list(args.keep_prob), "seed": args.seed}
    passed = report.verdict(args.rule)
    if args.json:
        print(json.dumps({**setting, "rule": args.rule, **report.to_dict(), "passed": passed}, indent=2))
    else:
        print("gradcheck: " + ", ".join(f"{k} {v}" for k, v in setting.items()))
        print(report.summary(args.rule))
    return 0 if passed else 1


COMMANDS.append(add_gradcheck)


# --- sweep -----------------------------------------------------------------------------------------

SWEEP_OUT = "out"


def _seed_list(values: list[str]) -> list[int]:
    """``--seeds N`` (seeds 0..N-1), ``--seeds A:B`` (A..B-1) or ``--seeds S1 S2 ...`` (those)."""
    try:
        if len(values) == 1 and ":" in values[0]:
            start, stop = (int(v) for v in values[0].split(":"))
            seeds = list(range(start, stop))
        elif len(values) == 1:
            count = int(values[0])
            if count < 1:
                raise ValueError(f"--seeds: got {count}, expected a count >= 1, A:B or a list of seeds")
            seeds = list(range(count))
        else:
            seeds = [int(v) for v in values]
    except ValueError as err:
        if str(err).startswith("--seeds"):
            raise
        raise ValueError(f"--seeds: got {' '.join(values)}, expected a count N, A:B or integers") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds: got {' '.join(values)}, expected distinct seeds >= 0 (A:B with A < B)")
    return seeds


def _kp_label(keep_prob) -> str:
    return ",".join(f"{p:g}" for p in (keep_prob[:1] if len(set(keep_prob)) == 1 else keep_prob))


def add_sweep(sub) -> None:
    p = sub.add_parser(
        "sweep", help="train a grid of lambd x keep_prob x seeds at once (vmapped, sharded over devices)",
        description="Train every lambd x keep_prob x seed configuration in one compiled, vmapped loop "
        "(sharded over all devices; in chunks when the grid exceeds --memory-budget). Each member is the run "
        "`jaxreg train --seed S` does alone. Prints mean ± std over seeds per configuration, names the best "
        "by test accuracy and writes DIR/sweep.csv, DIR/sweep.json and DIR/sweep.png.")
    _add_data_flags(p)
    _add_training_flags(p, regularization=False, seed=False)
    p.add_argument("--lambd", type=float, nargs="+", default=[0.0], metavar="L",
                   help="L2 strengths to try, separated by spaces (default 0)")
    p.add_argument("--keep-prob", type=_floats, nargs="+", default=[(1.0,)], metavar="P[,P...]",
                   help="keep probabilities to try, separated by spaces; 0.9,0.6 is one value per hidden "
                   "layer (default 1)")
    p.add_argument("--seeds", nargs="+", default=["1"], metavar="S",
                   help="N: seeds 0..N-1; A:B: seeds A..B-1; or several seeds (default 1: seed 0)")
    p.add_argument("--memory-budget", type=float, default=None, metavar="MiB",
                   help="device memory per device for the grid; larger grids run in chunks "
                   "(default: half the device's memory, 2048 where unknown)")
    p.add_argument("--mc-samples", type=int, default=0, metavar="N",
                   help="also draw the best configuration's Monte Carlo dropout uncertainty from N "
                   "samples (2-D data, keep_prob < 1) to DIR/sweep_uncertainty.png")
    p.add_argument("--out", metavar="DIR", default=SWEEP_OUT, help=f"output folder (default {SWEEP_OUT})")
    p.set_defaults(func=run_sweep)


def _sweep_table(result) -> list[str]:
    has_test = result.test_accuracy is not None
    lines = [f"{'lambd':>8} {'keep_prob':>10}  {'train accuracy':>17}  {'test accuracy':>17}  "
             f"{'final cost':>19}"]
    for row in result.summary():
        test = (f"{row['test_accuracy_mean']:.4f} ± {row['test_accuracy_std']:.4f}" if has_test else "n/a")
        cost = ("n/a" if row["final_cost_mean"] is None
                else f"{row['final_cost_mean']:.5f} ± {row['final_cost_std']:.5f}")
        note = f"  ({row['diverged']} of {row['seeds']} seeds diverged)" if row["diverged"] else ""
        lines.append(f"{row['lambd']:>8g} {_kp_label(row['keep_prob']):>10}  "
                     f"{row['train_accuracy_mean']:.4f} ± {row['train_accuracy_std']:.4f}  {test:>17}  "
                     f"{cost:>19}{note}")
    return lines


def _sweep_figure(result, lambds, keep_probs, title: str) -> bytes:
    import numpy as np

    from jaxreg import plotting

    rows = {(r["lambd"], tuple(r["keep_prob"])): r for r in result.summary()}

    def grid(name):
        if f"{name}_mean" not in next(iter(rows.values())):
            return None, None
        return tuple(np.array([[rows[lam, kp][f"{name}_{s}"] for lam in lambds] for kp in keep_probs],
                              dtype=float) for s in ("mean", "std"))

    (train_mean, train_std), (test_mean, test_std) = grid("train_accuracy"), grid("test_accuracy")
    return plotting.sweep_figure(lambds, [_kp_label(kp) for kp in keep_probs], train_mean, train_std,
                                 test_mean, test_std, title=title)


def _uncertainty_figure(result, index: int, dataset, samples: int) -> bytes:
    import jax
    import numpy as np

    from jaxreg import plotting
    from jaxreg.uncertainty import predict_mc

    member = result.member(index)
    grid = _boundary(member, dataset, resolution=150)
    points = np.stack([grid["xx"].ravel(), grid["yy"].ravel()])
    mean, std = predict_mc(member.params, points, jax.random.key(int(result.seed[index])),
                           member.config.keep_prob, samples=samples)
    shape = grid["xx"].shape
    c = member.config
    title = (f"{dataset.name}: lambd {c.lambd:g}, keep_prob {_kp_label(c.keep_prob)}, seed "
             f"{int(result.seed[index])}, {samples} dropout samples")
    return plotting.uncertainty_figure(grid["xx"], grid["yy"], np.asarray(mean).reshape(shape),
                                       np.asarray(std).reshape(shape), dataset.X, dataset.Y, title=title)


def run_sweep(args) -> int:
    import csv
    import io
    import json
    import os
    import time

    from jaxreg.files import atomic_open, atomic_write
    from jaxreg.sweep import sweep

    seeds = _seed_list(args.seeds)
    if args.memory_budget is not None and not args.memory_budget > 0:
        raise ValueError(f"--memory-budget: got {args.memory_budget}, expected a number of MiB > 0")
    if args.mc_samples < 0:
        raise ValueError(f"--mc-samples: got {args.mc_samples}, expected an integer >= 0")
    _set_precision(args)
    dataset = _dataset(args)
    layer_dims = [dataset.X.shape[0], *args.layers, 1]
    options = _training_options(args)
    budget = None if args.memory_budget is None else max(1, int(args.memory_budget * 2**20))
    n_runs = len(args.lambd) * len(args.keep_prob) * len(seeds)
    progress = _Progress(n_runs * args.iterations, args.json, "sweep")
    start = time.perf_counter()
    try:
        result = sweep(dataset.X, dataset.Y, layer_dims, lambd=args.lambd, keep_prob=args.keep_prob,
                       seeds=seeds, X_test=dataset.X_test, Y_test=dataset.Y_test, memory_budget=budget,
                       on_progress=progress, **options)
    finally:
        progress.close()
    seconds = time.perf_counter() - start

    records = result.records()
    for i, record in enumerate(records):
        record.update(_histories(result.member(i)))
    best = result.best()
    lambds = list(dict.fromkeys(float(v) for v in result.lambd))
    keep_probs = list(dict.fromkeys(result.keep_prob))
    files = {name: os.path.join(args.out, f"sweep.{name}") for name in ("csv", "json", "png")}
    report = {
        "data": dataset.name, "layer_dims": layer_dims, "lambd": lambds,
        "keep_prob": [list(kp) for kp in keep_probs], "seeds": seeds, "config": {**options},
        "devices": result.n_devices, "chunks": result.n_chunks, "seconds": round(seconds, 3),
        "metric": "test_accuracy" if result.test_accuracy is not None else "train_accuracy",
        "best": best, "summary": result.summary(), "results": records, "files": files,
    }
    best_index = next(i for i in range(len(records)) if result.lambd[i] == best["lambd"]
                      and list(result.keep_prob[i]) == best["keep_prob"])
    uncertainty_note = None
    if args.mc_samples:
        if dataset.X.shape[0] != 2:
            uncertainty_note = f"no uncertainty figure: the data has {dataset.X.shape[0]} features, not 2"
        elif not result.configs[best_index].dropout:
            uncertainty_note = "no uncertainty figure: the best configuration has no dropout (keep_prob 1)"
        else:
            files["uncertainty"] = os.path.join(args.out, "sweep_uncertainty.png")
    title = (f"{dataset.name}: layers {layer_dims}, {args.iterations} iterations, "
             f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}")

    with atomic_open(files["csv"], "w", newline="") as f:
        fields = ["lambd", "keep_prob", "seed", "train_accuracy", "test_accuracy", "final_cost",
                  "diverged_at"]
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow({**record, "keep_prob": ",".join(f"{p:g}" for p in record["keep_prob"])})
    atomic_write(files["png"], _sweep_figure(result, lambds, keep_probs, title))
    if "uncertainty" in files:
        atomic_write(files["uncertainty"], _uncertainty_figure(result, best_index, dataset, args.mc_samples))
    text = io.StringIO()
    json.dump(report, text)
    with atomic_open(files["json"], "w") as f:
        f.write(text.getvalue())
    if args.json:
        print(text.getvalue())
        return 0
    test = f", {dataset.X_test.shape[1]} test" if dataset.X_test is not None else ""
    print(f"{dataset.name} ({dataset.X.shape[1]} training examples{test}): layers {layer_dims}, "
          f"{len(lambds)} lambd x {len(keep_probs)} keep_prob x {len(seeds)} seeds = {len(records)} runs, "
          f"{args.iterations} iterations, {args.precision}, {result.n_devices} device(s)"
          + (f", {result.n_chunks} chunks (memory budget)" if result.n_chunks > result.n_programs else "")
          + f" ({seconds:.1f} s)")
    print("mean ± std over seeds; final cost: the full network's (L2 included, no dropout)\n")
    for line in _sweep_table(result):
        print(line)
    metric = report["metric"].replace("_", " ")
    print(f"\nbest by {metric}: lambd {best['lambd']:g}, keep_prob {_kp_label(best['keep_prob'])} "
          f"({best[report['metric'] + '_mean']:.4f} ± {best[report['metric'] + '_std']:.4f})")
    if uncertainty_note:
        print(uncertainty_note)
    print("written: " + ", ".join(files.values()))
    return 0


COMMANDS.append(add_sweep)


if __name__ == "__main__":
    sys.exit(main())
