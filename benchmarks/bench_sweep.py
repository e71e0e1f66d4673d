"""Sweeps of the textbook's run: 1, 8, 64 and 256 configurations in one compiled program.

Each sweep is ``jaxreg.sweep.sweep`` over a grid of ``lambd`` x ``keep_prob`` x seeds of
the textbook's run (``[2, 20, 3, 1]``, learning rate 0.3, 30000 iterations, He
initialisation from each seed, per-step masks). Reported: seconds in all and per
configuration, the ratio to training the same configurations one at a time with
``jaxreg.train`` (measured on the 8-configuration grid's members, by regime, and summed
over each grid), and to the NumPy reference loop per configuration (its seconds per
iteration measured in this run, by regime, times 30000). Like ``jaxreg sweep``, the process
asks XLA for one host device per CPU core (``jaxreg.cores``), so members run side by side,
a core each; one more row times a 16-configuration grid with 5-fold cross-validation (80
members), and every row gives the cost per member and step beside the single run's.

    python benchmarks/bench_sweep.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from jaxreg import cores

cores.host_device_per_core()  # before JAX starts (in _common), as `jaxreg sweep` does

import _common as C  # noqa: E402

import jaxreg  # noqa: E402
from jaxreg.sweep import sweep  # noqa: E402

DIMS = (2, 20, 3, 1)
LR = 0.3
GRIDS = {
    1: {"lambd": [0.7], "keep_prob": [0.86], "seeds": 1},
    8: {"lambd": [0.0, 0.7], "keep_prob": [1.0, 0.86], "seeds": 2},
    64: {"lambd": [0.0, 0.1, 0.3, 0.7], "keep_prob": [1.0, 0.95, 0.86, 0.7], "seeds": 4},
    256: {
        "lambd": [0.0, 0.03, 0.1, 0.3, 0.7, 1.0, 2.0, 3.0],
        "keep_prob": [1.0, 0.95, 0.9, 0.86, 0.8, 0.7, 0.6, 0.5],
        "seeds": 4,
    },
}
REPS = {1: 3, 8: 3, 64: 2, 256: 1}
ITERATIONS_256 = 10000  # the 256-grid runs a third of the iterations (time), reported × 3
TARGET_64 = 8.0  # seconds for the 64-configuration sweep
TARGET_VS_NUMPY = 30.0  # per configuration

NOTES = """\
**What limits it.** A sweep's step is the single run's step with a leading axis of members: kernel
launches are shared and the arithmetic is what remains. XLA's CPU backend runs the members' tiny
matmuls (the `(3, 211) x (211, 20)` products of `dW2`, `dA1`, the first layer's) as batches of
small ones at 7-20 GFLOP/s, and each pass over the `(members, 20, 211)` activations is bound by
memory (profiled with `jax.profiler`). Split over XLA's intra-op threads, these small kernels
gain nothing on 2 cores (a sweep pinned to one core ran as fast as on two threads); split over one
host device per core (`--xla_force_host_platform_device_count=2`, what `jaxreg sweep` and this
script ask for), each core runs its own half of the members: the 64-grid went from 18.5 s to
7.5 s, ~3.9 µs per member and step against ~7-9 µs for a run alone. Cross-validation costs what
its members cost: 5 folds of 16 configurations are 80 members at about the same price per
member-step (each fold trains on 4/5 of the examples but computes all of them, weighted).
Formulating the products as broadcast-multiply-reduce was 5x slower; turning YNNPACK off 2x
slower. A GPU would batch the members' products properly.
"""


def grid_configs(grid: dict) -> list[tuple[float, float, int]]:
    seeds = grid["seeds"]
    return [(lam, kp, s) for lam in grid["lambd"] for kp in grid["keep_prob"] for s in range(seeds)]


def regime_of(lambd: float, keep_prob: float) -> str:
    return ("L2" if lambd else "none") + ("+dropout" if keep_prob < 1 else "")


FOLDS_GRID = {"lambd": [0.0, 0.1, 0.3, 0.7], "keep_prob": [1.0, 0.95, 0.86, 0.7], "seeds": 1}
FOLDS = 5


def run_sweep(X, Y, n, iterations: int):
    """The grid of ``n`` configurations without validation, or (``n == "folds"``) FOLDS_GRID with 5 folds."""
    grid = dict(FOLDS_GRID, folds=FOLDS, refit=False) if n == "folds" else dict(GRIDS[n], folds=0)
    return sweep(X, Y, list(DIMS), iterations=iterations, learning_rate=LR, **grid)


def time_sweep(X, Y, n: int, iterations: int, reps: int) -> tuple[list[float], object]:
    run_sweep(X, Y, n, min(iterations, 1000))  # compiles the same programs (1000-step chunks)
    times, result = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        result = run_sweep(X, Y, n, iterations)
        times.append(time.perf_counter() - t0)
    return times, result


def one_core_main(iterations: int) -> None:
    X, Y, _, _, _ = C.textbook_data()
    times, _ = time_sweep(X, Y, 64, iterations, 1)
    print(json.dumps({"64": times}))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test: 300 iterations, grids up to 8")
    parser.add_argument("--one-core", action="store_true", help="also time the 64-grid in a one-CPU process")
    parser.add_argument("--one-core-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    iterations = 300 if args.quick else 30000
    if args.one_core_only:
        return one_core_main(iterations)
    sizes = [1, 8] if args.quick else list(GRIDS)

    env = C.environment("float32")
    X, Y, _, _, data_note = C.textbook_data()

    # The NumPy reference, seconds per iteration by regime (short runs, interleaved).
    np_iters = 20 if args.quick else 300
    kinds = {regime_of(lam, kp): (lam, kp) for lam in (0.0, 0.7) for kp in (1.0, 0.86)}
    np_samples = C.interleaved(
        {
            k: (lambda lam=lam, kp=kp: C.numpy_reference(X, Y, DIMS, np_iters, LR, lam, kp))
            for k, (lam, kp) in kinds.items()
        },
        reps=3,
        warmup=0,
    )
    np_s_per_iter = {k: statistics.median(s["wall"]) / np_iters for k, s in np_samples.items()}

    # One at a time: jaxreg.train on the 8-configuration grid's members.
    singles: dict[str, list[float]] = {}
    for lam, kp, seed in grid_configs(GRIDS[8]):
        run = lambda lam=lam, kp=kp, seed=seed, n=iterations: jaxreg.train(  # noqa: E731
            X, Y, list(DIMS), seed=seed, lambd=lam, keep_prob=kp, learning_rate=LR, iterations=n
        )
        run(min(iterations, 1000))  # compile
        t0 = time.perf_counter()
        run()
        singles.setdefault(regime_of(lam, kp), []).append(time.perf_counter() - t0)
    single_s = {k: statistics.median(v) for k, v in singles.items()}

    def single_estimate(lam, kp):  # the measured regime nearest in cost (dropout or not)
        k = regime_of(lam, kp)
        return single_s.get(k, single_s["L2+dropout" if kp < 1 else "L2"])

    rows, results = [], {}
    for n in sizes + ([] if args.quick else ["folds"]):
        print(f"bench_sweep: {n} configurations ...", file=sys.stderr, flush=True)
        run_iterations = ITERATIONS_256 if n == 256 and iterations > ITERATIONS_256 else iterations
        times, result = time_sweep(X, Y, n, run_iterations, 1 if args.quick else REPS.get(n, 1))
        times = [t * iterations / run_iterations for t in times]
        configs = grid_configs(GRIDS[n] if n != "folds" else FOLDS_GRID) * (FOLDS if n == "folds" else 1)
        members = len(result.seed)
        one_at_a_time = sum(single_estimate(lam, kp) for lam, kp, _ in configs)
        numpy_total = sum(np_s_per_iter[regime_of(lam, kp)] * iterations for lam, kp, _ in configs)
        s = C.stats(times)
        per_config = s["median"] / members
        results[n] = {
            "members": members,
            "us_per_member_step": per_config / iterations * 1e6,
            "seconds": s,
            "per_configuration": per_config,
            "one_at_a_time_seconds": one_at_a_time,
            "numpy_seconds": numpy_total,
            "n_programs": result.n_programs,
            "n_chunks": result.n_chunks,
            "dropout_members": sum(kp < 1 for _, kp, _ in configs),
            "best_test": None,
        }
        rows.append(
            [
                f"{len(configs) // FOLDS} × {FOLDS} folds" if n == "folds" else str(n),
                f"{results[n]['dropout_members']}",
                f"{result.n_programs}/{result.n_chunks}/{result.n_devices}",
                C.fmt_range(s, 2),
                f"{per_config * 1e3:.1f}",
                f"{results[n]['us_per_member_step']:.2f}",
                f"{one_at_a_time / s['median']:.1f}×",
                f"{numpy_total / s['median']:.0f}×",
            ]
        )

    if args.one_core:
        print("bench_sweep: one-core run ...", file=sys.stderr, flush=True)
    one_core = C.one_core_run("bench_sweep.py", ["--one-core-only"]) if args.one_core else None

    targets = []
    if 64 in results:
        r = results[64]
        vs_numpy = r["numpy_seconds"] / r["seconds"]["median"]
        targets = [
            [
                "64 configurations × 30000 iterations ≤ 8 s",
                f"{r['seconds']['median']:.1f} s",
                C.verdict(r["seconds"]["median"] <= TARGET_64),
            ],
            [
                "≥ 30× the NumPy reference per configuration (64)",
                f"{vs_numpy:.0f}×",
                C.verdict(vs_numpy >= TARGET_VS_NUMPY),
            ],
        ]
        if one_core:
            t = statistics.median(one_core["64"])
            targets.append(["(one core) 64 configurations ≤ 8 s", f"{t:.1f} s", C.verdict(t <= TARGET_64)])

    md = "\n\n".join(
        [
            "### bench_sweep: sweeps of the textbook's run",
            f"`{C.command_line()}` — {env['date']}. {C.environment_line(env)}.",
            f"`{list(DIMS)}`, learning rate {LR}, {iterations} iterations on {data_note}, He initialisation "
            "per seed, per-step masks; grids of lambd × keep_prob × seeds (keep_prob 1 runs as its own "
            "program, without masks). Seconds: median (min–max) of the repetitions (3, 3, 2 and 1 for the "
            f"four sizes; the 256-grid runs {ITERATIONS_256} iterations, its time × 3). One at a time: "
            "`jaxreg.train` per configuration, from the 8-grid's measured members by regime. NumPy: the "
            "textbook's loop (bench_train's), seconds per iteration measured here by regime, × 30000 per "
            "configuration: " + ", ".join(f"{k} {v * 1e6:.0f} µs" for k, v in np_s_per_iter.items()) + ". "
            "A single `jaxreg.train` run costs, per step: " + ", ".join(
                f"{k} {statistics.median(v) / iterations * 1e6:.1f} µs" for k, v in singles.items()) + ". "
            f"One host device per core ({env['device_count']} here): members are sharded over them.",
            C.table(
                [
                    "configurations",
                    "with dropout",
                    "programs/chunks/devices",
                    "seconds",
                    "ms per member",
                    "µs per member-step",
                    "× one at a time",
                    "× NumPy",
                ],
                rows,
            ),
            C.table(["target", "measured", "verdict"], targets) if targets else "",
            NOTES,
        ]
    )
    payload = {
        "environment": env,
        "data": data_note,
        "iterations": iterations,
        "grids": GRIDS,
        "numpy_seconds_per_iteration": np_s_per_iter,
        "single_run_seconds": singles,
        "sweeps": results,
        "one_core": one_core,
    }
    C.write_results("sweep" if not args.quick else "sweep-quick", payload, md)


if __name__ == "__main__":
    main()
