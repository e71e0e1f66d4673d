"""One model at growing size: time per iteration, achieved GFLOP/s against the measured
matmul peak, and peak memory.

``[2, w, w, 1]`` on ``m`` random examples, ``jaxreg.programs.run_chunk`` (the compiled
training loop) without dropout and with per-step dropout masks (``keep_prob`` 0.8).
Flops per iteration: ``2 m sum_l n_l n_(l-1)`` for the forward pass, times 3 for forward
and backward. The peak is a large float32 ``jnp.dot`` at JAX's default precision, timed
interleaved with the training runs in the same process; each size runs in its own
process, so its peak resident memory (and device memory, where reported) is its own.

    python benchmarks/bench_scale.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys

import _common as C
import jax
import jax.numpy as jnp
import numpy as np

from jaxreg.config import TrainConfig
from jaxreg.programs import initial, run_chunk

SIZES = [(1_000, 20), (10_000, 64), (10_000, 1024), (100_000, 256), (100_000, 512), (1_000_000, 256)]
QUICK_SIZES = [(1_000, 20), (10_000, 64)]
KEEP_PROB = 0.8
TARGET_PEAK = 0.70  # fraction of the matmul peak without dropout, m >= 1e5 and w >= 256
TARGET_DROPOUT = 1.20  # dropout / no dropout, same sizes

NOTES = """\
**What limits it.** Without dropout a step is its six matmuls (the `w x w` ones dominate) plus
elementwise passes over `(w, m)` activations (ReLU, its gradient, bias sums), which are
memory-bound and keep a step below the dot's peak, the more so at `w = 256` where they weigh
most, and at `m = 10⁶` where the activations (1 GiB each) leave every cache; on a shared
machine the peak itself moves between repetitions (compare its column). With dropout each
hidden layer adds `w/4 x m` Threefry-2x32 blocks per step (four 16-bit entries per block,
compared with the threshold inside the hashing kernel, one byte of mask bits per block out)
and the masks' application inside the forward and backward kernels. Where one step's masks
exceeded the 1 MiB block of steps, XLA used to fuse the hash into each kernel that reads the
mask, hashing every block once per reader and per entry (+35-47% at `w = 512`); the draw is
now a conditional (which also skips drawing when every traced keep_prob is 1), which XLA
neither fuses into nor removes, so it is hashed once. Each timed call also evaluates the
clean cost once (a forward pass without dropout), which the program without dropout shares
with its first step's own forward (the same computation, computed once) and the dropout
program cannot: calls run at least three iterations (one at `m = 10⁶`, where a step takes
seconds), and the dropout column still carries up to a third of a forward pass per iteration
that a real run pays once per chunk of `log_every` iterations. Timed in calls of one iteration,
`w = 512` showed +26-39% for dropout; the same run at three iterations per call, +3%.
"""


def flops_per_iteration(dims, m: int) -> float:
    return 3 * 2 * m * sum(dims[l] * dims[l - 1] for l in range(1, len(dims)))


def child(m: int, width: int, reps: int) -> dict:
    """Measure one size (run in its own process); returns the figures as a dict."""
    dims = (2, width, width, 1)
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.standard_normal((2, m)), jnp.float32)
    Y = jnp.asarray((rng.standard_normal((1, m)) > 0), jnp.float32)
    flops = flops_per_iteration(dims, m)
    # steps per timed call: about a second of work at ~1e11 flop/s (CPU); at least three where a
    # step takes under ~2 s, so that the clean-cost forward pass each call makes once (which only
    # the program without dropout can share with its step) is spread over several steps
    per_second = 1e11 if jax.devices()[0].platform == "cpu" else 1e13
    n_steps = max(3 if flops < 2 * per_second else 1, min(10_000, math.ceil(0.5 * per_second / flops)))
    runs = {}
    for name, kw in (("none", {}), ("dropout", {"keep_prob": KEEP_PROB})):
        state, hyper, program = initial(TrainConfig(dims, learning_rate=0.01, **kw))
        # Compiled ahead, so that no run is spent warming up (a run of the largest takes seconds).
        compiled = run_chunk.lower(state, hyper, None, None, X, Y, program=program, n_steps=n_steps).compile()
        runs[name] = lambda compiled=compiled, state=state, hyper=hyper: compiled(state, hyper, None, None, X, Y)
    peak_n = 4096 if jax.devices()[0].platform == "cpu" else 8192
    square = jax.ShapeDtypeStruct((peak_n, peak_n), jnp.float32)
    dot = jax.jit(jnp.dot).lower(square, square).compile()
    operands = []  # made at the first call, after the runs' memory is noted

    def peak():
        if not operands:
            operands.extend(
                jax.random.normal(jax.random.key(i), (peak_n, peak_n), jnp.float32) for i in (0, 1)
            )
        return dot(*operands)

    competitors = {**runs, "peak": peak}
    # The first round also notes the memory after each run (no dropout first, then dropout).
    samples, rss = {name: {"wall": [], "cpu": []} for name in competitors}, {}
    for r in range(reps):
        for name, fn in competitors.items():
            one = C.interleaved({name: fn}, reps=1, warmup=0)[name]
            samples[name]["wall"] += one["wall"]
            samples[name]["cpu"] += one["cpu"]
            if r == 0 and name != "peak":
                rss[name] = C.peak_rss_mb()
    # The peak is the best the dot achieved (its repetitions vary on a shared machine).
    peak_gflops = C.stats([2.0 * peak_n**3 / t / 1e9 for t in samples["peak"]["wall"]])
    out = {
        "m": m,
        "width": width,
        "n_steps": n_steps,
        "flops_per_iteration": flops,
        "peak_gflops": peak_gflops,
        "peak_rss_mb": rss,
        "device_peak_mb": C.device_peak_mb(),
        # Paired: each repetition's dropout run against the run without, timed beside it.
        "dropout_over_none": C.paired_ratio(samples["dropout"]["wall"], samples["none"]["wall"]),
    }
    for name in runs:
        s = C.stats(samples[name]["wall"], 1.0 / n_steps)
        gflops = flops / s["median"] / 1e9
        out[name] = {
            "seconds_per_iteration": s,
            "gflops": gflops,
            "fraction_of_peak": gflops / peak_gflops["max"],
        }
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test: the two smallest sizes")
    parser.add_argument("--child", nargs=3, type=int, metavar=("M", "WIDTH", "REPS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    env = C.environment("float32")
    sizes = QUICK_SIZES if args.quick else SIZES
    reps = 1 if args.quick else 3
    heavy = 5e10  # flops per iteration above which two repetitions suffice (a run takes seconds)
    results = []
    for m, width in sizes:
        print(f"bench_scale: m = {m}, width {width} ...", file=sys.stderr, flush=True)
        try:
            n = reps if flops_per_iteration((2, width, width, 1), m) < heavy else min(reps, 2)
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(m), str(width), str(n)],
                capture_output=True,
                text=True,
                check=True,
                timeout=900,
            ).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
        except (subprocess.SubprocessError, ValueError, IndexError) as err:
            detail = getattr(err, "stderr", "") or ""
            print(f"note: m = {m}, width {width} failed: {err} {detail[-500:]}", file=sys.stderr)
            results.append({"m": m, "width": width, "failed": str(err)})

    rows, big = [], []
    for r in results:
        if "failed" in r:
            rows.append([f"{r['m']:,}", str(r["width"]), "failed", "", "", "", "", "", ""])
            continue
        none, drop = r["none"], r["dropout"]
        ratio = r["dropout_over_none"]
        rows.append(
            [
                f"{r['m']:,}",
                str(r["width"]),
                f"{r['flops_per_iteration']:.2e}",
                C.fmt_range({k: v * 1e3 for k, v in none["seconds_per_iteration"].items() if k != "n"}, 2),
                f"{none['gflops']:.1f} ({100 * r['none']['fraction_of_peak']:.0f}%)",
                C.fmt_range({k: v * 1e3 for k, v in drop["seconds_per_iteration"].items() if k != "n"}, 2),
                f"{ratio:.2f}×",
                f"{r['peak_gflops']['max']:.0f}",
                f"{r['peak_rss_mb']['none']:.0f} / {r['peak_rss_mb']['dropout']:.0f}"
                + (f" (device {r['device_peak_mb']:.0f})" if r.get("device_peak_mb") else ""),
            ]
        )
        if r["m"] >= 100_000 and r["width"] >= 256:
            big.append((r, ratio))

    targets = []
    if big:
        worst_peak = min(r["none"]["fraction_of_peak"] for r, _ in big)
        worst_drop = max(ratio for _, ratio in big)
        targets = [
            [
                "m ≥ 10⁵, width ≥ 256: no dropout ≥ 70% of the matmul peak",
                ", ".join(
                    f"m={r['m']:.0e} w={r['width']}: {100 * r['none']['fraction_of_peak']:.0f}%"
                    for r, _ in big
                ),
                C.verdict(worst_peak >= TARGET_PEAK),
            ],
            [
                "same sizes: dropout adds ≤ 20%",
                ", ".join(f"m={r['m']:.0e} w={r['width']}: +{100 * (x - 1):.0f}%" for r, x in big),
                C.verdict(worst_drop <= TARGET_DROPOUT),
            ],
        ]
    md = "\n\n".join(
        [
            "### bench_scale: one model at growing size",
            f"`{C.command_line()}` — {env['date']}. {C.environment_line(env)}.",
            f"`[2, w, w, 1]` on m random examples, `run_chunk` without dropout and with per-step masks "
            f"(keep_prob {KEEP_PROB}); ms per iteration: median (min–max) of {reps} interleaved "
            "repetitions (2 above 5·10¹⁰ flop per iteration) "
            "(each of several iterations for the small sizes); GFLOP/s counts 3 · 2m Σ n_l n_(l−1) per "
            "iteration (median run), against the peak: the best of a float32 `jnp.dot` (4096² on CPU, 8192² "
            "elsewhere) timed in "
            "the same process; memory: peak RSS after the first run without, then with dropout (each size in "
            "its own process).",
            C.table(
                [
                    "m",
                    "width",
                    "flop/iter",
                    "ms/iter",
                    "GFLOP/s (of peak)",
                    "ms/iter, dropout",
                    "dropout / none",
                    "peak GFLOP/s",
                    "peak RSS MiB",
                ],
                rows,
            ),
            C.table(["target", "measured", "verdict"], targets) if targets else "",
            NOTES,
        ]
    )
    C.write_results(
        "scale" if not args.quick else "scale-quick", {"environment": env, "results": results}, md
    )


if __name__ == "__main__":
    main()
