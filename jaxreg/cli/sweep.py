"""``jaxreg sweep``: a grid of lambd x keep_prob x seeds in one compiled loop."""

from __future__ import annotations

from jaxreg.cli import common

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
        "sweep", help="train a grid of lambd x keep_prob x seeds at once (vmapped, sharded over devices)",
        description="Train every lambd x keep_prob x seed configuration in one compiled, vmapped loop "
        "(sharded over all devices; in chunks when the grid exceeds --memory-budget). Each member is the run "
        "`jaxreg train --seed S` does alone. Prints mean ± std over seeds per configuration, names the best "
        "by test accuracy and writes DIR/sweep.csv, DIR/sweep.json and DIR/sweep.png.")
    common.add_data_flags(p)
    common.add_training_flags(p, regularization=False, seed=False)
    p.add_argument("--lambd", type=float, nargs="+", default=[0.0], metavar="L",
                   help="L2 strengths to try, separated by spaces (default 0)")
    p.add_argument("--keep-prob", type=common.floats, nargs="+", default=[(1.0,)], metavar="P[,P...]",
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
    p.set_defaults(func=run)


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
    grid = common.boundary(member, dataset, resolution=MC_RESOLUTION)
    points = np.stack([grid["xx"].ravel(), grid["yy"].ravel()])
    mean, std = predict_mc(member.params, points, jax.random.key(int(result.seed[index])),
                           member.config.keep_prob, samples=samples)
    shape = grid["xx"].shape
    c = member.config
    title = (f"{dataset.name}: lambd {c.lambd:g}, keep_prob {_kp_label(c.keep_prob)}, seed "
             f"{int(result.seed[index])}, {samples} dropout samples")
    return plotting.uncertainty_figure(grid["xx"], grid["yy"], np.asarray(mean).reshape(shape),
                                       np.asarray(std).reshape(shape), dataset.X, dataset.Y, title=title)


def run(args) -> int:
    import math
    import os

    seeds = _seed_list(args.seeds)
    if args.memory_budget is not None and not 0 < args.memory_budget < math.inf:
        raise ValueError(f"--memory-budget: got {args.memory_budget}, expected a finite number of MiB > 0")
    if args.mc_samples < 0:
        raise ValueError(f"--mc-samples: got {args.mc_samples}, expected an integer >= 0")
    names = ["sweep.csv", "sweep.json", "sweep.png"] + (["sweep_uncertainty.png"] if args.mc_samples else [])
    common.check_paths(args, [("--out", os.path.join(args.out, name)) for name in names])
    dataset = common.dataset(args)
    base = common.config(args, dataset.X.shape[0])
    clock = common.start_jax(args)
    n_seeds = len(seeds) if isinstance(seeds, list) else seeds.stop - seeds.start
    common.check_sweep(args, base, dataset, len(args.lambd) * len(args.keep_prob) * n_seeds, MC_RESOLUTION**2)
    seeds = list(seeds)
    with common.Timed(clock) as timed:
        result = _train(args, dataset, base, seeds)
    report = _report(args, dataset, base, seeds, result, timed)
    _write(args, report, result, dataset)
    if args.json:
        common.print_json(report)
    else:
        _print(args, report, result, dataset, timed)
    return 0


def _train(args, dataset, base, seeds):
    """The sweep of the flags' grid, with a progress bar."""
    from jaxreg.sweep import sweep

    options = {k: v for k, v in base.to_json().items() if k not in ("layer_dims", "lambd", "keep_prob")}
    budget = None if args.memory_budget is None else max(1, int(args.memory_budget * 2**20))
    progress = common.Progress(len(args.lambd) * len(args.keep_prob) * len(seeds) * args.iterations, args.json,
                               "sweep")
    try:
        return sweep(dataset.X, dataset.Y, base.layer_dims, lambd=args.lambd, keep_prob=args.keep_prob,
                     seeds=seeds, X_test=dataset.X_test, Y_test=dataset.Y_test, memory_budget=budget,
                     on_progress=progress, **options)
    finally:
        progress.close()


def _report(args, dataset, base, seeds, result, timed) -> dict:
    """The JSON report: grid, best configuration, summary rows, every member, files."""
    import os

    records = result.records()
    for i, record in enumerate(records):
        record.update(common.histories(result.member(i)))
    best = result.best()
    files = {name: os.path.join(args.out, f"sweep.{name}") for name in ("csv", "json", "png")}
    best_index = next(i for i in range(len(records)) if result.lambd[i] == best["lambd"]
                      and list(result.keep_prob[i]) == best["keep_prob"])
    note = None
    if args.mc_samples:
        if dataset.X.shape[0] != 2:
            note = f"no uncertainty figure: the data has {dataset.X.shape[0]} features, not 2"
        elif not result.configs[best_index].dropout:
            note = "no uncertainty figure: the best configuration has no dropout (keep_prob 1)"
        else:
            files["uncertainty"] = os.path.join(args.out, "sweep_uncertainty.png")
    options = {k: v for k, v in base.to_json().items() if k not in ("layer_dims", "lambd", "keep_prob")}
    return {
        "data": dataset.name, "layer_dims": list(base.layer_dims),
        "lambd": list(dict.fromkeys(float(v) for v in result.lambd)),
        "keep_prob": [list(kp) for kp in dict.fromkeys(result.keep_prob)], "seeds": seeds, "config": options,
        "devices": result.n_devices, "chunks": result.n_chunks, **timed.to_json(),
        "metric": "test_accuracy" if result.test_accuracy is not None else "train_accuracy",
        "best": best, "best_index": best_index, "note": note, "summary": result.summary(), "results": records,
        "files": files,
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
    fields = ["lambd", "keep_prob", "seed", "train_accuracy", "test_accuracy", "final_cost", "diverged_at"]
    writer = csv.DictWriter(table, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for record in report["results"]:
        writer.writerow({**record, "keep_prob": ",".join(f"{p:g}" for p in record["keep_prob"])})
    keep_probs = [tuple(kp) for kp in report["keep_prob"]]
    seeds = report["seeds"]
    title = (f"{dataset.name}: layers {report['layer_dims']}, {args.iterations} iterations, "
             f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}")
    contents = {files["csv"]: table.getvalue(), files["png"]: _sweep_figure(result, report["lambd"], keep_probs, title)}
    if "uncertainty" in files:
        contents[files["uncertainty"]] = _uncertainty_figure(result, report["best_index"], dataset, args.mc_samples)
    contents[files["json"]] = json.dumps(report)
    interrupt.check()
    write_all(contents)


def _print(args, report: dict, result, dataset, timed) -> None:
    test = f", {dataset.X_test.shape[1]} test" if dataset.X_test is not None else ""
    lambds, keep_probs, seeds = report["lambd"], report["keep_prob"], report["seeds"]
    print(f"{dataset.name} ({dataset.X.shape[1]} training examples{test}): layers {report['layer_dims']}, "
          f"{len(lambds)} lambd x {len(keep_probs)} keep_prob x {len(seeds)} seeds = {len(result.seed)} runs, "
          f"{args.iterations} iterations, {args.precision}, {result.n_devices} device(s)"
          + (f", {result.n_chunks} chunks (memory budget)" if result.n_chunks > result.n_programs else "")
          + f" ({timed.compile_seconds:.1f} s compiling, {timed.run_seconds:.1f} s running)")
    print("mean ± std over seeds; final cost: the full network's (L2 included, no dropout)\n")
    for line in _sweep_table(result):
        print(line)
    best, metric = report["best"], report["metric"]
    print(f"\nbest by {metric.replace('_', ' ')}: lambd {best['lambd']:g}, keep_prob {_kp_label(best['keep_prob'])} "
          f"({best[metric + '_mean']:.4f} ± {best[metric + '_std']:.4f})")
    if report["note"]:
        print(report["note"])
    print("written: " + ", ".join(report["files"].values()))
