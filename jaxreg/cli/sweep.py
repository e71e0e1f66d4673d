"""``jaxreg sweep``: a grid of lambd x keep_prob x seeds in one compiled loop."""

from __future__ import annotations

import sys

from jaxreg.cli import flags, output, session

SWEEP_OUT = "out"
MC_RESOLUTION = 150  # the uncertainty figure's grid is MC_RESOLUTION x MC_RESOLUTION points


def _seed_list(values: list[str]) -> range | list[int]:
    """``--seeds N`` (seeds 0..N-1), ``--seeds A:B`` (A..B-1) or ``--seeds S1 S2 ...`` (those);
    the first two as a range, so that a count is checked before a list is made."""
    try:
        if len(values) == 1 and ":" in values[0]:
            start, stop = (int(v) for v in values[0].split(":"))
            seeds = range(start, stop)
        elif len(values) == 1:
            seeds = range(int(values[0]))
            if not seeds:
                raise ValueError(f"--seeds: got {values[0]}, expected a count >= 1, A:B or a list of seeds")
        else:
            seeds = [int(v) for v in values]
    except ValueError as err:
        if str(err).startswith("--seeds"):
            raise
        raise ValueError(f"--seeds: got {' '.join(values)}, expected a count N, A:B or integers") from None
    ends = [seeds[0], seeds[-1]] if isinstance(seeds, range) and seeds else seeds
    if not seeds or min(ends) < 0 or max(ends) >= 2**64 or (isinstance(seeds, list) and len(set(seeds)) != len(seeds)):
        raise ValueError(f"--seeds: got {' '.join(values)}, expected distinct seeds >= 0 and < 2**64 (A:B with A < B)")
    return seeds


def _kp_label(keep_prob) -> str:
    return ",".join(f"{p:g}" for p in (keep_prob[:1] if len(set(keep_prob)) == 1 else keep_prob))


def add(sub) -> None:
    p = sub.add_parser(
        "sweep", help="train a grid of lambd x keep_prob x seeds at once and choose on validation data",
        description="Train every lambd x keep_prob x seed configuration (x fold) in one compiled, vmapped loop "
        "(sharded over all devices; in chunks when the grid exceeds --memory-budget), rank the configurations by "
        "mean validation accuracy (5-fold stratified cross-validation of the training set unless a validation "
        "set or fraction is given), refit the best on the whole training set and judge only that refit on the "
        "test set. Each member is the run `jaxreg train --seed S` does alone with the same validation split: "
        "exactly in float64, up to rounding in float32 (which 30000 steps at a high learning rate can amplify). "
        "Writes DIR/sweep.csv, DIR/sweep.json and DIR/sweep.png.")
    flags.add_data_flags(p)
    flags.add_settings(p, exclude=("early_stopping",),
                       lambd={"nargs": "+", "default": [0.0],
                              "help": "L2 strengths to try, separated by spaces (default 0)"},
                       keep_prob={"nargs": "+", "default": [(1.0,)], "help": "keep probabilities to try, separated by "
                                  "spaces; 0.9,0.6 is one value per hidden layer (default 1)"})
    flags.add_run_flags(p)
    flags.add_validation_flags(p, folds=True)
    flags.add_hosts_flags(p)
    p.add_argument("--seeds", nargs="+", default=["1"], metavar="S",
                   help="N: seeds 0..N-1; A:B: seeds A..B-1; or several seeds (default 1: seed 0)")
    p.add_argument("--no-refit", action="store_true", help="do not refit the best configuration")
    p.add_argument("--memory-budget", type=float, default=None, metavar="MiB",
                   help="device memory per device for the grid; larger grids run in chunks "
                   "(default: half the device's memory, 2048 where unknown)")
    p.add_argument("--mc-samples", type=int, default=0, metavar="N",
                   help="also draw the best configuration's Monte Carlo dropout uncertainty from N "
                   "samples (2-D data, keep_prob < 1) to DIR/sweep_uncertainty.png")
    p.add_argument("--out", metavar="DIR", type=flags.path, default=SWEEP_OUT, help="output folder")
    p.set_defaults(func=run)


_COLUMNS = (("valid_accuracy", "valid accuracy", 4), ("valid_cost", "valid cost", 4),
            ("train_accuracy", "train accuracy", 4), ("best_iteration", "best iteration", 0),
            ("test_accuracy", "test accuracy", 4))


def _sweep_table(result) -> list[str]:
    """One line per configuration: ranked ones first, best first (validated sweeps), else grid order."""
    validated = result.valid_accuracy is not None
    rows = result.summary()
    ranked = result.ranking() if validated else []
    order = ranked + [r for r in rows if r not in ranked]
    columns = [c for c in _COLUMNS if f"{c[0]}_mean" in rows[0]]
    lines = [f"{'rank':>4} {'lambd':>8} {'keep_prob':>10}" + "".join(f"  {title:>17}" for _, title, _ in columns)]
    for row in order:
        rank = str(ranked.index(row) + 1) if row in ranked else "-"
        cells = [("n/a" if row[f"{name}_mean"] is None else
                  f"{row[f'{name}_mean']:.{d}f} ± {row[f'{name}_std']:.{d}f}") for name, _, d in columns]
        note = f"  ({row['diverged']} of {row['members']} runs diverged: not ranked)" if row["diverged"] else ""
        lines.append(f"{rank:>4} {row['lambd']:>8g} {_kp_label(row['keep_prob']):>10}"
                     + "".join(f"  {c:>17}" for c in cells) + note)
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

    (train_mean, train_std), (valid_mean, valid_std) = grid("train_accuracy"), grid("valid_accuracy")
    return plotting.sweep_figure(lambds, [_kp_label(kp) for kp in keep_probs], train_mean, train_std,
                                 valid_mean, valid_std, held_out=f"validation ({result.validation})",
                                 title=title)


def _uncertainty_figure(member, seed: int, dataset, samples: int) -> bytes:
    import jax
    import numpy as np

    from jaxreg import plotting
    from jaxreg.uncertainty import predict_mc

    grid = output.boundary(member, dataset, resolution=MC_RESOLUTION)
    points = np.stack([grid["xx"].ravel(), grid["yy"].ravel()])
    mean, std = predict_mc(member.params, points, jax.random.key(seed), member.config.keep_prob, samples=samples)
    shape = grid["xx"].shape
    c = member.config
    title = (f"{dataset.name}: lambd {c.lambd:g}, keep_prob {_kp_label(c.keep_prob)}, seed {seed}, "
             f"{samples} dropout samples")
    return plotting.uncertainty_figure(grid["xx"], grid["yy"], np.asarray(mean).reshape(shape),
                                       np.asarray(std).reshape(shape), dataset.X, dataset.Y, title=title)


def run(args, s: session.Session) -> int:
    import math
    import os

    seeds = _seed_list(args.seeds)
    if args.memory_budget is not None and not 0 < args.memory_budget < math.inf:
        raise ValueError(f"--memory-budget: got {args.memory_budget}, expected a finite number of MiB > 0")
    if args.mc_samples < 0:
        raise ValueError(f"--mc-samples: got {args.mc_samples}, expected an integer >= 0")
    names = ["sweep.csv", "sweep.json", "sweep.png"] + (["sweep_uncertainty.png"] if args.mc_samples else [])
    if args.mc_samples and not any(min(kp) < 1 for kp in args.keep_prob):
        raise ValueError(f"--mc-samples: got {args.mc_samples}, expected a --keep-prob below 1 in the grid (the "
                         "uncertainty figure samples dropout)")
    session.check_paths(args, [("--out", os.path.join(args.out, name)) for name in names])
    dataset = session.dataset(args)
    if args.mc_samples:
        output.check_figure(dataset, "--mc-samples")
    none = {"lambd": 0.0, "keep_prob": (1.0,)}
    base = flags.config(args, dataset.X.shape[0], **none)
    for value in args.lambd:  # every grid value, checked before JAX starts
        flags.config(args, dataset.X.shape[0], **{**none, "lambd": value})
    for value in args.keep_prob:
        flags.config(args, dataset.X.shape[0], **{**none, "keep_prob": value})
    validation = session.validation_options(args, dataset.Y)
    from jaxreg.splits import DEFAULT_FOLDS

    clock = s.start_jax(device_per_core=True, figure=True)
    n_seeds = len(seeds) if isinstance(seeds, list) else seeds.stop - seeds.start
    folds = max(1, validation.get("folds", 1 if "validation" in validation or "validation_split" in validation
                                   else DEFAULT_FOLDS))
    session.check_sweep(args, base, dataset, len(args.lambd) * len(args.keep_prob) * n_seeds * folds,
                        MC_RESOLUTION**2)
    seeds = list(seeds)
    output.preload_plotting()
    with output.Timed(clock) as timed:
        result = _train(args, dataset, base, seeds, validation, s.is_main)
    if not s.is_main():
        return 0
    report = _report(args, dataset, base, seeds, result, timed)
    _write(args, report, result, dataset)
    if args.json:
        output.print_json(report)
    else:
        _print(args, report, result, dataset, timed)
    if result.valid_accuracy is not None and report["best"] is None:
        print(f"jaxreg: error: {report['note']}", file=sys.stderr)
        return 1
    return 0


def _train(args, dataset, base, seeds, validation: dict, main):
    """The sweep of the flags' grid, with a progress bar."""
    from jaxreg.sweep import sweep

    options = {k: v for k, v in base.to_json().items() if k not in ("layer_dims", "lambd", "keep_prob")}
    budget = None if args.memory_budget is None else max(1, int(args.memory_budget * 2**20))
    progress = output.Progress(len(args.lambd) * len(args.keep_prob) * len(seeds) * args.iterations, args.json,
                               "sweep", unit="member iterations", main=main)
    try:
        return sweep(dataset.X, dataset.Y, base.layer_dims, lambd=args.lambd, keep_prob=args.keep_prob,
                     seeds=seeds, X_test=dataset.X_test, Y_test=dataset.Y_test, memory_budget=budget,
                     refit=not args.no_refit, on_progress=progress, **validation, **options)
    finally:
        progress.close()


def _choice(result) -> tuple[dict | None, str | None]:
    """The best summary row and a note (why there is none, or why no figure)."""
    from jaxreg.selection import NoChoice

    try:
        return result.best(), None
    except NoChoice as err:
        return None, str(err)


def _report(args, dataset, base, seeds, result, timed) -> dict:
    """The JSON report: grid, validation, ranking, best configuration and its refit, every member, files."""
    import os

    records = result.records()
    for i, record in enumerate(records):
        record.update(output.histories(result.member(i)))
    best, note = _choice(result)
    files = {name: os.path.join(args.out, f"sweep.{name}") for name in ("csv", "json", "png")}
    if args.mc_samples and best is not None:
        if dataset.X.shape[0] != 2:
            note = f"no uncertainty figure: the data has {dataset.X.shape[0]} features, not 2"
        elif not any(kp < 1 for kp in best["keep_prob"]):
            note = "no uncertainty figure: the best configuration has no dropout (keep_prob 1)"
        elif result.refit is not None:
            files["uncertainty"] = os.path.join(args.out, "sweep_uncertainty.png")
    options = {k: v for k, v in base.to_json().items() if k not in ("layer_dims", "lambd", "keep_prob")}
    refit = None if result.refit is None else {
        "config": result.refit.config.to_json(), "seed": int(result.seed[result.configs.index(result.best_config())]),
        "train_accuracy": result.refit.train_accuracy, "test_accuracy": result.refit.test_accuracy,
        "final_cost": result.refit.final_cost}
    return {
        "data": dataset.name, "layer_dims": list(base.layer_dims),
        "lambd": list(dict.fromkeys(float(v) for v in result.lambd)),
        "keep_prob": [list(kp) for kp in dict.fromkeys(result.keep_prob)], "seeds": seeds, "config": options,
        "validation": result.validation, "split_seed": args.split_seed,
        "devices": result.n_devices, "chunks": result.n_chunks, **timed.to_json(),
        "metric": "valid_accuracy" if result.validation else None,
        "best": best, "refit": refit, "note": note, "summary": result.summary(),
        "ranking": result.ranking() if result.validation else None, "results": records, "files": files,
    }


def _write(args, report: dict, result, dataset) -> None:
    """sweep.csv, sweep.png (and the uncertainty figure) and sweep.json: all made first, then
    written together (:func:`jaxreg.files.write_all`), so that a failure writes none of them."""
    import csv
    import io
    import json

    from jaxreg.cli import interrupt
    from jaxreg.files import write_all

    files = report["files"]
    table = io.StringIO(newline="")
    fields = ["lambd", "keep_prob", "seed", "fold", "train_accuracy", "valid_accuracy", "valid_cost",
              "test_accuracy", "final_cost", "best_iteration", "stopped_at", "diverged_at"]
    writer = csv.DictWriter(table, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for record in report["results"]:
        writer.writerow({**record, "keep_prob": ",".join(f"{p:g}" for p in record["keep_prob"])})
    keep_probs = [tuple(kp) for kp in report["keep_prob"]]
    seeds = report["seeds"]
    refit = report["refit"]
    title = (f"{dataset.name}: layers {report['layer_dims']}, {args.iterations} iterations, "
             f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}"
             + ("" if refit is None or refit["test_accuracy"] is None
                else f"; best refit: test accuracy {refit['test_accuracy']:.4f}"))
    contents = {files["csv"]: table.getvalue(), files["png"]: _sweep_figure(result, report["lambd"], keep_probs, title)}
    if "uncertainty" in files:
        contents[files["uncertainty"]] = _uncertainty_figure(result.refit, refit["seed"], dataset, args.mc_samples)
    contents[files["json"]] = json.dumps(report)
    interrupt.check()
    write_all(contents)


def _print(args, report: dict, result, dataset, timed) -> None:
    test = f", {dataset.X_test.shape[1]} test" if dataset.X_test is not None else ""
    lambds, keep_probs, seeds = report["lambd"], report["keep_prob"], report["seeds"]
    folds = len(set(result.fold.tolist())) if result.validation and result.validation.endswith("fold") else 1
    runs = f"{len(lambds)} lambd x {len(keep_probs)} keep_prob x {len(seeds)} seeds" + (
        f" x {folds} folds" if folds > 1 else "")
    print(f"{dataset.name} ({dataset.X.shape[1]} training examples{test}): layers {report['layer_dims']}, "
          f"{runs} = {len(result.seed)} runs, {args.iterations} iterations, {args.precision}, "
          f"{result.n_devices} device(s)"
          + (f", {result.n_chunks} chunks (memory budget)" if result.n_chunks > result.n_programs else "")
          + f" ({timed.compile_seconds:.1f} s compiling, {timed.run_seconds:.1f} s running)")
    if result.validation:
        print(f"validation: {result.validation} (split seed {args.split_seed}); mean ± std over seeds"
              + (" and folds" if folds > 1 else "") + "; ranked by validation accuracy, then validation cost\n")
    else:
        print("no validation (--folds 0): nothing is chosen; mean ± std over seeds\n")
    for line in _sweep_table(result):
        print(line)
    best, refit = report["best"], report["refit"]
    if best is not None:
        print(f"\nbest by validation accuracy ({result.validation}): lambd {best['lambd']:g}, keep_prob "
              f"{_kp_label(best['keep_prob'])} ({best['valid_accuracy_mean']:.4f} ± {best['valid_accuracy_std']:.4f})")
    if refit is not None:
        c = refit["config"]
        test_text = "no test set" if refit["test_accuracy"] is None else f"test accuracy {refit['test_accuracy']:.4f}"
        print(f"refit on all {dataset.X.shape[1]} training examples (seed {refit['seed']}, {c['iterations']} "
              f"iterations): train accuracy {refit['train_accuracy']:.4f}, {test_text}"
              + ("" if refit["test_accuracy"] is None else " (the only run the test set judged)"))
    if report["note"] and best is not None:
        print(report["note"])
    print("written: " + ", ".join(report["files"].values()))
