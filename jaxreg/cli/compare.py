"""``jaxreg compare``: no regularization, L2 and dropout side by side (the demo)."""

from __future__ import annotations

from jaxreg import validate
from jaxreg.cli import flags, interrupt, output, session

COMPARE_OUT = "out/compare.png"
DEFAULT_TEST_SPLIT = 0.25  # held out as the test set from data without one (the comparison is about the test set)


def add(sub) -> None:
    p = sub.add_parser(
        "compare", help="no regularization vs L2 vs dropout, side by side (the demo)",
        description="Train the same network three ways (no regularization, L2, dropout) on the same data, "
        "print their accuracies and write one figure with the decision boundaries and cost curves. Data without a "
        f"test set gets one: --test-split {DEFAULT_TEST_SPLIT:g} unless given.")
    flags.add_data_flags(p)
    flags.add_settings(p, exclude=("early_stopping",), lambd={"default": 0.7, "help": "L2 strength of the L2 run"},
                       keep_prob={"default": (0.86,), "help": "keep_prob of the dropout run"})
    p.add_argument("--seed", type=int, default=0, metavar="S", help="key for initialisation and dropout masks")
    flags.add_run_flags(p)
    p.add_argument("--plot", metavar="PATH", type=flags.path, default=None,
                   help=f"the figure (default {COMPARE_OUT}, for data with 2 features: boundaries need a plane)")
    p.set_defaults(func=run)


def run(args, s: session.Session) -> int:
    validate.seed(args.seed)
    session.check_paths(args, {"--plot": args.plot or COMPARE_OUT})
    dataset = session.dataset(args, test_split=DEFAULT_TEST_SPLIT)
    n_x = dataset.X.shape[0]
    if args.plot:  # asked for: it must be drawn (the default is drawn where it can be)
        output.check_figure(dataset)
    none = {"lambd": 0.0, "keep_prob": (1.0,)}
    configs = {
        "no regularization": flags.config(args, n_x, **none),
        f"L2, lambd {args.lambd:g}": flags.config(args, n_x, **{**none, "lambd": args.lambd}),
        "dropout, keep_prob " + ",".join(f"{p:g}" for p in args.keep_prob): flags.config(
            args, n_x, **{**none, "keep_prob": args.keep_prob}),
    }
    figure = args.plot or (COMPARE_OUT if n_x == 2 else None)
    clock = s.start_jax(figure=bool(figure))
    session.check_memory(configs[next(reversed(configs))], dataset, figure=bool(figure))  # the dropout run
    if figure:
        output.preload_plotting()
    runs, timing = {}, {}
    for name, config in configs.items():
        with output.Timed(clock) as timing[name]:
            progress = output.Progress(args.iterations, args.json, name, main=s.is_main,
                                       trace_every=output.trace_every(args.iterations) if figure else None)
            runs[name] = session.fit(dataset, config, args.seed, progress), progress.trace
    if figure:
        from jaxreg.files import atomic_write

        png = output.figure(runs, dataset)
        interrupt.check()
        atomic_write(figure, png)
    runs = {name: result for name, (result, _) in runs.items()}
    if args.json:
        output.print_json({"data": dataset.name, "layer_dims": list(configs[next(iter(configs))].layer_dims),
                           "seed": args.seed, "figure": figure,
                           "runs": {name: {**output.summary(r, timing[name]), "config": r.config.to_json()}
                                    for name, r in runs.items()}})
        return 0
    layer_dims = list(runs[next(iter(runs))].config.layer_dims)
    print(f"{dataset.name}: {dataset.X.shape[1]} training examples"
          + (f", {dataset.X_test.shape[1]} test examples" if dataset.X_test is not None else "")
          + f"; layers {layer_dims}, lr {args.learning_rate}, {args.iterations} iterations, {args.precision}")
    print(f"\n{'run':<28} {'train acc':>9} {'test acc':>9} {'final cost':>11}  {'compile s':>9} {'run s':>6}")
    for name, r in runs.items():
        test = "n/a" if r.test_accuracy is None else f"{r.test_accuracy:.4f}"
        t = timing[name]
        print(f"{name:<28} {r.train_accuracy:>9.4f} {test:>9} {r.final_cost:>11.6f} "
              f" {t.compile_seconds:>9.2f} {t.run_seconds:>6.2f}")
    print("final cost: the full network's (L2 term included, no dropout) at the final parameters;\n"
          "compile s: tracing and compiling (or loading from the cache), run s: the rest")
    if figure:
        print(f"\nfigure written to {figure}")
    else:
        print(f"\nno figure: the data has {n_x} features, and a decision boundary is drawn over 2")
    return 0
