"""``jaxreg train``: one regularized network, its accuracies and cost history."""

from __future__ import annotations

import sys

from jaxreg.cli import common
from jaxreg.cli.common import UsageError
from jaxreg.config import check_seed


def add(sub) -> None:
    p = sub.add_parser("train", help="train one regularized network",
                       description="Train one network and report its accuracies and cost history.")
    common.add_data_flags(p)
    common.add_training_flags(p)
    common.add_validation_flags(p)
    p.add_argument("--data-parallel", action="store_true",
                   help="split the examples over every device (of every process: see below)")
    common.add_hosts_flags(p)
    p.add_argument("--save", metavar="PATH", help="write the trained parameters (.npz with W1, b1, ...)")
    p.add_argument("--plot", metavar="PATH", help="write a figure: decision boundary and cost curve")
    p.add_argument("--checkpoint", metavar="PATH", help="save the training state here (atomically)")
    p.add_argument("--checkpoint-every", type=int, metavar="N", help="iterations between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint up to --iterations")
    p.set_defaults(func=run)


def run(args) -> int:
    if (args.resume or args.checkpoint_every) and not args.checkpoint:
        raise UsageError("jaxreg train: --resume and --checkpoint-every need --checkpoint PATH")
    check_seed(args.seed, "--seed")
    dataset = common.dataset(args)
    config = common.config(args, dataset.X.shape[0], lambd=args.lambd, keep_prob=args.keep_prob)
    validation = common.validation_options(args)
    clock = common.start_jax(args)
    if args.plot:
        common.preload_plotting()
    from jaxreg.checkpoint import save_params
    from jaxreg.training import TrainingDiverged

    try:
        with common.Timed(clock) as timed:
            result = common.fit(dataset, config, args.seed, common.Progress(args.iterations, args.json),
                                checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every,
                                resume=args.resume, data_parallel=args.data_parallel, **validation)
    except TrainingDiverged as err:
        kept = f"; the last finite state is in {args.checkpoint}" if args.checkpoint else ""
        print(f"jaxreg: error: {err}{kept}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        kept = f"; the last complete checkpoint is kept in {args.checkpoint}" if args.checkpoint else ""
        print(f"jaxreg: interrupted{kept}", file=sys.stderr)
        return 130
    if not common.is_main():
        return 0
    if args.save:
        save_params(args.save, result.params)
    if args.plot:
        common.write_figure(args.plot, {common.run_name(result.config): result}, dataset)
    if args.json:
        common.print_json({**common.summary(result, timed), "config": result.config.to_json(), "seed": args.seed,
                           "data": dataset.name})
        return 0
    c = result.config
    print(f"{dataset.name}: layers {list(c.layer_dims)}, lambd {c.lambd}, keep_prob {list(c.keep_prob)}, "
          f"{c.optimizer} lr {c.learning_rate}, {c.iterations} iterations, {c.dtype} "
          f"({timed.compile_seconds:.1f} s compiling, {timed.run_seconds:.1f} s running)")
    for i, cost, clean in zip(result.iterations, result.costs, result.clean_costs, strict=True):
        note = "" if cost == clean else f"  (without dropout {clean:.6f})"
        print(f"  cost after iteration {i:>6}: {cost:.6f}{note}")
    test = "n/a" if result.test_accuracy is None else f"{result.test_accuracy:.4f}"
    if result.valid_accuracy is not None:
        kept = "" if result.best_iteration is None else (
            f"; early stopping kept iteration {result.best_iteration}"
            + (f" (stopped at {result.stopped_at})" if result.stopped_at is not None else ""))
        print(f"validation accuracy {result.valid_accuracy:.4f}, validation cost {result.valid_cost:.6f}{kept}")
    print(f"final cost {result.final_cost:.6f} (full network, no dropout), "
          f"train accuracy {result.train_accuracy:.4f}, test accuracy {test}")
    for what, path in (("parameters", args.save), ("figure", args.plot)):
        if path:
            print(f"{what} written to {path}")
    return 0
