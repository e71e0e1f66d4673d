"""``jaxreg train``: one regularized network, its accuracies and cost history."""

from __future__ import annotations

import os

from jaxreg import validate
from jaxreg.cli import flags, interrupt, output, session
from jaxreg.cli.flags import UsageError
from jaxreg.errors import TrainingDiverged


def add(sub) -> None:
    p = sub.add_parser("train", help="train one regularized network",
                       description="Train one network and report its accuracies and cost history.")
    flags.add_data_flags(p)
    flags.add_settings(p, exclude=("early_stopping",))  # early stopping: with the validation flags
    p.add_argument("--seed", type=int, default=0, metavar="S", help="key for initialisation and dropout masks")
    flags.add_run_flags(p)
    flags.add_validation_flags(p)
    p.add_argument("--data-parallel", action="store_true",
                   help="split the examples over every device (of every process: see below)")
    flags.add_hosts_flags(p)
    p.add_argument("--save", metavar="PATH", type=flags.path,
                   help="write the trained parameters (.npz with W1, b1, ...)")
    p.add_argument("--plot", metavar="PATH", type=flags.path, help="write a figure: decision boundary and cost curve")
    p.add_argument("--checkpoint", metavar="PATH", type=flags.path,
                   help="save the training state here (atomically)")
    p.add_argument("--checkpoint-every", type=int, metavar="N", help="iterations between checkpoints")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --checkpoint up to --iterations (a new run where there is no file "
                   "yet: one command line for the first start and every restart)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the file at --checkpoint (by default an existing file is refused without --resume)")
    p.set_defaults(func=run)


def run(args, s: session.Session) -> int:
    if (args.resume or args.checkpoint_every or args.overwrite) and not args.checkpoint:
        raise UsageError("jaxreg train: --resume, --checkpoint-every and --overwrite need --checkpoint PATH")
    if args.resume and args.overwrite:
        raise UsageError("jaxreg train: --resume continues the checkpoint's run, --overwrite replaces it: expected one")
    validate.seed(args.seed)
    session.check_paths(args, {"--checkpoint": args.checkpoint, "--save": args.save, "--plot": args.plot})
    if args.checkpoint and not (args.resume or args.overwrite) and os.path.exists(args.checkpoint):
        raise ValueError(f"--checkpoint {args.checkpoint}: the file exists (another run's checkpoint?), expected "
                         "--resume to continue it or --overwrite to replace it")
    resume = args.resume and os.path.exists(args.checkpoint)
    progress = _Checkpoints(args.checkpoint, args.iterations, args.json, s.is_main,
                            trace_every=output.trace_every(args.iterations) if args.plot else None)
    interrupt.set_note(progress.interrupted)
    dataset = session.dataset(args)
    config = flags.config(args, dataset.X.shape[0])
    validation = session.validation_options(args, dataset.Y)
    if args.plot:
        output.check_figure(dataset)
    clock = s.start_jax(figure=bool(args.plot))
    session.check_memory(config, dataset, figure=bool(args.plot))
    if args.resume and not resume:
        progress.note(f"jaxreg: no checkpoint at {args.checkpoint} yet: starting a new run (--resume continues it "
                      "from there next time)")
    if args.plot:
        output.preload_plotting()
    try:
        with output.Timed(clock) as timed:
            result = session.fit(dataset, config, args.seed, progress, checkpoint=args.checkpoint,
                                 checkpoint_every=args.checkpoint_every, resume=resume, on_checkpoint=progress.saved,
                                 data_parallel=args.data_parallel, **validation)
    except TrainingDiverged as err:
        kept = (f"; the last finite state is in {args.checkpoint} (continue it with --resume and a smaller "
                "--learning-rate)" if args.checkpoint else "")
        return interrupt.end(f"jaxreg: error: {err}{kept}", 1)
    if resume and progress.first is None:
        progress.note(f"jaxreg: {args.checkpoint} is at iteration {int(result.state.step)} already: "
                      "nothing left to train up to --iterations")
    if not s.is_main():
        return 0
    _write(args, result, dataset, progress)
    if args.json:
        output.print_json({**output.summary(result, timed), "config": result.config.to_json(), "seed": args.seed,
                           "data": dataset.name})
    else:
        _print(args, result, dataset, timed)
    return 0


def _write(args, result, dataset, progress) -> None:
    """The parameters and the figure, made first and written together: an error writes neither."""
    from jaxreg.checkpoint import params_bytes
    from jaxreg.files import write_all

    contents = {}
    if args.save:
        contents[args.save] = params_bytes(result.params)
    if args.plot:
        contents[args.plot] = output.figure({output.run_name(result.config): (result, progress.trace)}, dataset)
    interrupt.check()
    write_all(contents)


def _print(args, result, dataset, timed) -> None:
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


class _Checkpoints(output.Progress):
    """The progress that also follows ``--checkpoint`` (told by the run: ``saved``): a line for each
    checkpoint written and for the iteration a run resumed from, and, for an interrupted run,
    what the file holds: unchanged, or the last checkpoint this run wrote."""

    def __init__(self, path: str | None, total: int, quiet: bool, main, trace_every: int | None = None):
        super().__init__(total, quiet, trace_every=trace_every, main=main)
        self.path = path
        self.start = self.last = self._identity()
        self.step = None  # the iteration of the last checkpoint this run wrote

    def _identity(self):
        try:
            st = os.stat(self.path)
        except (TypeError, OSError):
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def costs(self, start: int, costs) -> None:
        if self.first is None and start > 0:
            self.note(f"jaxreg: resumed from iteration {start} ({self.path})")
        super().costs(start, costs)

    def saved(self, step: int) -> None:
        """``on_checkpoint``: the run wrote its checkpoint at iteration ``step``."""
        self.last, self.step = self._identity(), step
        self.note(f"jaxreg: checkpoint written at iteration {step} ({self.path})")

    def interrupted(self) -> str:
        if self.path is None:
            return ""
        now = self._identity()
        if self.step is None and now == self.start:
            if self.start is None:
                return f"; no checkpoint was written to {self.path} (interrupted before the first save)"
            return f"; {self.path} is as it was (interrupted before this run's first save)"
        at = f" (iteration {self.step})" if self.step is not None and now == self.last else ""
        return f"; the last complete checkpoint{at} is kept in {self.path}"
