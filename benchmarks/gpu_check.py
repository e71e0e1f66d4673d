"""Issue 21's acceptance check: jaxreg on the backend JAX finds (a GPU, where there is one).

One process, five sections (the JSON report's keys), through the public API only
(``jaxreg.train``, ``jaxreg.sweep.sweep``, ``jaxreg.gradcheck.check_network``, ``jaxreg.data``):

1. textbook      the textbook's float64 table (init, masks and data the textbook's): accuracies
                 and costs at iterations 0, 10000, 20000 as the tests hold them (pass/fail per row);
2. steady_state  µs per iteration of the lesson's float32 run ([2, 20, 3, 1], 211 examples);
3. sweep         a 64-configuration float32 sweep: seconds, µs per member-step;
4. throughput    m = 10⁵ and 10⁶, widths 256 and 1024, as a share of the matmul peak measured here;
5. gradcheck     the full gradient check of [2, 300, 300, 1] (float64): seconds, verdicts.

Exit status 0 when every correctness row passes (sections 1 and 5) and no section failed to
run, else 1. Every section is bounded by its sizes (iterations, repetitions, steps), not by
a clock: the full check takes about 1.5 minutes on an H200; ``--smoke`` runs the same code at tiny
sizes (the textbook's table still in full: it takes seconds) on whatever backend is there.

    PYTHONPATH=. python benchmarks/gpu_check.py --json benchmarks/results/gpu.json
    python benchmarks/gpu_check.py --smoke                 # CI, on the CPU
    JAX_PLATFORMS=cpu python benchmarks/gpu_check.py ...    # choose the backend (JAX's convention)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import json
import math
import os
import statistics
import sys
import time
import traceback
import warnings
from typing import NamedTuple

import _common as C  # also puts the checkout's jaxreg first on sys.path
import jax
import jax.numpy as jnp
import numpy as np

import jaxreg
from jaxreg.files import atomic_open
from jaxreg.sweep import sweep

LESSON = (2, 20, 3, 1)
LR = 0.3  # the textbook's learning rate
ITERATIONS = 30000  # the textbook's run

# The textbook's table, as tests/test_train.py holds it (COURSE_TABLE, FINAL_COSTS): train and
# test accuracy, training cost at iterations 0, 10000, 20000 (to 1e-9), and the final cost of
# the full network as the README's table prints it (6 digits).
TEXTBOOK = {
    "no regularization": ({}, 0.9478672985781991, 0.915,
                          (0.6557412523481002, 0.16329987525724196, 0.13851642423266772), 0.125133),
    "L2, lambd 0.7": ({"lambd": 0.7}, 0.9383886255924171, 0.93,
                      (0.6974484493131264, 0.2684918873282239, 0.26809163371273004), 0.267823),
    "dropout, keep_prob 0.86": ({"keep_prob": 0.86}, 0.9289099526066351, 0.95,
                                (0.6543912405149824, 0.06101698657490556, 0.06058243579851314), 0.657864),
}  # fmt: skip
COST_ITERATIONS = (0, 10000, 20000)
COST_TOLERANCE = 1e-9

REGIMES = {"none": {}, "L2": {"lambd": 0.7}, "dropout": {"keep_prob": 0.86}}  # bench_train's
GRADCHECK_LAMBD = 0.7
BUG_SCALE = 1.01  # the wrong gradient: dW2's largest entry times this


class Sizes(NamedTuple):
    """What each section runs; the full check's and the smoke test's."""

    textbook_repeat: bool  # section 1: each row run twice, to see whether the two agree bit for bit
    steady_iterations: int  # section 2: iterations per timed call
    steady_reps: int  # timed calls per regime, after one that compiles
    sweep_grid: dict  # section 3: lambd, keep_prob, seeds
    sweep_iterations: int
    sweep_reps: int
    scale_sizes: tuple  # section 4: (m, width) of [2, width, width, 1]
    scale_reps: int  # timed calls at N and at 2N steps each
    scale_budget: float  # FLOP per call of N steps (N = budget / FLOP per step, within 2..1000)
    peak_n: int  # the square float32 dot that measures the matmul peak
    gradcheck_dims: tuple  # section 5
    gradcheck_m: int
    gradcheck_reps: int


FULL = Sizes(
    textbook_repeat=True, steady_iterations=ITERATIONS, steady_reps=3,
    # bench_sweep's 64-grid (4 lambd x 4 keep_prob x 4 seeds), so that the figure sits beside the README's
    sweep_grid={"lambd": [0.0, 0.1, 0.3, 0.7], "keep_prob": [1.0, 0.95, 0.86, 0.7], "seeds": 4},
    sweep_iterations=ITERATIONS, sweep_reps=2,
    scale_sizes=((100_000, 256), (100_000, 1024), (1_000_000, 256), (1_000_000, 1024)), scale_reps=3,
    scale_budget=3e13,  # about half a second on an H200 (on a CPU, minutes: the full check is sized for a GPU)
    peak_n=8192, gradcheck_dims=(2, 300, 300, 1), gradcheck_m=4, gradcheck_reps=3,
)  # fmt: skip
SMOKE = Sizes(
    textbook_repeat=False, steady_iterations=2000, steady_reps=2,
    sweep_grid={"lambd": [0.0, 0.7], "keep_prob": [1.0, 0.86], "seeds": 1}, sweep_iterations=300, sweep_reps=1,
    scale_sizes=((1_000, 16),), scale_reps=1, scale_budget=2e8,
    peak_n=256, gradcheck_dims=(2, 10, 10, 1), gradcheck_m=4, gradcheck_reps=1,
)  # fmt: skip


# ----------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def float64():
    """``jax_enable_x64`` on inside the block, as before after it (the float32 sections run
    without it, as the benchmarks and the command line do)."""
    before = jax.dtypes.canonicalize_dtype(np.float64) == np.float64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


def seconds(fn) -> float:
    """Wall-clock seconds of ``fn()``, its JAX results waited for."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def memory() -> dict | None:
    """The first device's ``memory_stats()`` (bytes), where the backend reports them (GPUs)."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # a backend without memory statistics
        return None
    keys = ("bytes_limit", "bytes_in_use", "peak_bytes_in_use")
    return {k: int(stats[k]) for k in keys if k in stats} if stats else None


def same_params(a: dict, b: dict) -> bool:
    """Bitwise equality of two runs' parameters."""
    return all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def fingerprint(params: dict) -> str:
    """SHA-256 of the parameters' bytes (sorted by name): compares runs across processes and machines."""
    digest = hashlib.sha256()
    for k in sorted(params):
        digest.update(k.encode() + np.ascontiguousarray(np.asarray(params[k])).tobytes())
    return digest.hexdigest()


def _json_value(x):
    """NumPy scalars and arrays as JSON numbers and lists."""
    if isinstance(x, np.generic | np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def environment() -> dict:
    """Backend, device, versions, memory: what every figure below depends on."""
    env = C.environment("float32 (sections 2-4), float64 (1, 5)")
    device = jax.devices()[0]
    try:
        platform_version = device.client.platform_version  # e.g. the CUDA version on a GPU
    except Exception:
        platform_version = None
    packages = {}
    for dist in importlib.metadata.distributions():  # installed packages' metadata: no network
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name in ("jax", "jaxlib", "optax", "numpy") or name.startswith(("jax-cuda", "jax-rocm", "libtpu")):
            packages[name] = dist.version
    env.update(
        backend=jax.default_backend(),
        device_kind=device.device_kind,
        platform_version=platform_version,
        packages=dict(sorted(packages.items())),
        memory=memory(),
        JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", ""),
        default_matmul_precision=str(getattr(jax.config, "jax_default_matmul_precision", None)),
        # XLA's CPU backend runs one thread per core it may use: cpu_cores is its thread count there.
    )
    return env


# ----------------------------------------------------------------------------- 1. the textbook's table


def textbook(sizes: Sizes) -> dict:
    """The textbook's float64 table: ``jaxreg.train`` on the textbook's dataset with its
    initialisation and masks, for no regularisation, L2 and dropout; each row passes when both
    accuracies equal the textbook's, the costs at iterations 0, 10000 and 20000 are within 1e-9
    of the tests' constants and the final cost rounds to the README's 6 digits. Each run is made
    twice (``sizes.textbook_repeat``; None where it is not), to record whether the two agree bit
    for bit (not required to pass)."""
    d = jaxreg.data.load_course()  # FileNotFoundError (JAXREG_DATA) where absent: the section fails
    rows = []
    with float64():
        for name, (options, train_acc, test_acc, costs, final) in TEXTBOOK.items():
            def run(options=options):
                return jaxreg.train(d.X, d.Y, list(LESSON), X_test=d.X_test, Y_test=d.Y_test, init="course",
                                    masks="course", dtype="float64", learning_rate=LR, iterations=ITERATIONS,
                                    **options)  # fmt: skip

            t0 = time.perf_counter()
            r = run()
            wall = time.perf_counter() - t0
            again = run() if sizes.textbook_repeat else None
            logged = dict(zip(r.iterations.tolist(), r.costs.tolist(), strict=True))
            got = [logged[i] for i in COST_ITERATIONS]
            worst = max(abs(g - e) for g, e in zip(got, costs, strict=True))
            rows.append({
                "run": name, "seconds": wall,
                "train_accuracy": r.train_accuracy, "test_accuracy": r.test_accuracy,
                "expected_accuracy": [train_acc, test_acc],
                "costs": got, "expected_costs": list(costs), "worst_cost_difference": worst,
                "final_cost": r.final_cost, "expected_final_cost": final,
                "repeat_bitwise_equal": None if again is None else same_params(r.params, again.params),
                "params_sha256": fingerprint(r.params),
                "passed": bool(r.train_accuracy == train_acc and r.test_accuracy == test_acc
                               and worst <= COST_TOLERANCE and round(r.final_cost, 6) == final),
            })  # fmt: skip
    return {
        "method": f"jaxreg.train(init='course', masks='course', dtype='float64'), {ITERATIONS} iterations, "
        f"learning rate {LR}, on the textbook's dataset; costs at iterations {list(COST_ITERATIONS)} to "
        f"{COST_TOLERANCE:g}, accuracies exactly, final cost to the README's 6 digits",
        "rows": rows,
        "passed": all(row["passed"] for row in rows),
    }


def textbook_table(s: dict) -> str:
    return C.table(
        ["run", "train acc", "test acc", "worst cost diff (0/10k/20k)", "final cost", "first run s",
         "repeat bitwise equal", "verdict"],
        [[r["run"], f"{r['train_accuracy']:.4f}", f"{r['test_accuracy']:.4f}", f"{r['worst_cost_difference']:.1e}",
          f"{r['final_cost']:.6f}", f"{r['seconds']:.2f}",
          {True: "yes", False: "no", None: "-"}[r["repeat_bitwise_equal"]],
          "pass" if r["passed"] else "**FAIL**"]
         for r in s["rows"]],
    )  # fmt: skip


# ----------------------------------------------------------------------------- 2. steady state


def steady(sizes: Sizes) -> dict:
    """µs per iteration of the lesson's float32 run for no regularisation, L2 and dropout, as
    bench_train times it: a whole warm ``jaxreg.train`` call (the textbook's initialisation,
    per-step masks) divided by its iterations, after a first call that compiles the same
    1000-step chunk program. Also: whether the timed calls' parameters agree bit for bit."""
    X, Y, X_test, Y_test, note = C.textbook_data()
    rows = {}
    for regime, options in REGIMES.items():
        def run(n, options=options):
            return jaxreg.train(X, Y, list(LESSON), X_test=X_test, Y_test=Y_test, init="course",
                                learning_rate=LR, iterations=n, seed=0, **options)  # fmt: skip

        first = seconds(lambda run=run: run(1000))  # compiles: chunks are log_every = 1000 steps
        results, times = [], []
        for _ in range(sizes.steady_reps):
            t0 = time.perf_counter()
            results.append(run(sizes.steady_iterations))
            times.append(time.perf_counter() - t0)
        us = C.stats(times, 1e6 / sizes.steady_iterations)
        rows[regime] = {
            "us_per_iteration": us, "first_call_seconds": first, "seconds": times,
            "train_accuracy": results[-1].train_accuracy, "test_accuracy": results[-1].test_accuracy,
            "repeat_bitwise_equal": all(same_params(r.params, results[0].params) for r in results[1:]),
            "params_sha256": fingerprint(results[0].params),
        }  # fmt: skip
    return {
        "method": f"whole warm jaxreg.train calls of {sizes.steady_iterations} iterations (float32, "
        f"{list(LESSON)}, init 'course', per-step masks, learning rate {LR}), wall seconds / iterations: "
        f"median (min, max) of {sizes.steady_reps}; init, transfers and the final evaluation are included "
        "(nothing subtracted), as in bench_train; first_call_seconds: compile + 1000 iterations",
        "data": note,
        "iterations": sizes.steady_iterations,
        "regimes": rows,
        "dropout_over_none": rows["dropout"]["us_per_iteration"]["median"] / rows["none"]["us_per_iteration"]["median"],
    }


def steady_table(s: dict) -> str:
    return C.table(
        ["regime", "µs/iteration", "first call s", "train acc", "test acc", "repeats bitwise equal"],
        [[k, C.fmt_range(r["us_per_iteration"], 2), f"{r['first_call_seconds']:.2f}", f"{r['train_accuracy']:.4f}",
          f"{r['test_accuracy']:.4f}", "yes" if r["repeat_bitwise_equal"] else "no"]
         for k, r in s["regimes"].items()],
    )  # fmt: skip


# ----------------------------------------------------------------------------- 3. sweep


def sweep_section(sizes: Sizes) -> dict:
    """A float32 grid of the lesson's run through ``jaxreg.sweep.sweep`` (no validation,
    ``folds=0``), as bench_sweep times it: seconds per whole call after one of 1000 iterations
    that compiles the same programs, and µs per member-step (seconds / members / iterations)."""
    X, Y, _, _, note = C.textbook_data()
    grid = sizes.sweep_grid

    def run(n):
        return sweep(X, Y, list(LESSON), folds=0, iterations=n, learning_rate=LR, **grid)

    first = seconds(lambda: run(min(sizes.sweep_iterations, 1000)))
    times, result = [], None
    for _ in range(sizes.sweep_reps):
        t0 = time.perf_counter()
        result = run(sizes.sweep_iterations)
        times.append(time.perf_counter() - t0)
    members = len(result.seed)
    s = C.stats(times)
    return {
        "method": "whole warm jaxreg.sweep.sweep calls (float32, folds=0, He initialisation per seed, per-step "
        f"masks, learning rate {LR}); median (min, max) of {sizes.sweep_reps}; first_call_seconds: compile + "
        "1000 iterations",
        "data": note,
        "grid": grid,
        "members": members,
        "iterations": sizes.sweep_iterations,
        "seconds": s,
        "first_call_seconds": first,
        "us_per_member_step": s["median"] / members / sizes.sweep_iterations * 1e6,
        "n_programs": result.n_programs, "n_chunks": result.n_chunks, "n_devices": result.n_devices,
        "diverged": int(np.sum(result.diverged_at >= 0)),
    }  # fmt: skip


def sweep_table(s: dict) -> str:
    g = s["grid"]
    return C.table(
        ["grid", "members", "iterations", "seconds", "µs per member-step", "programs/chunks/devices", "diverged"],
        [[f"{len(g['lambd'])} lambd × {len(g['keep_prob'])} keep_prob × {g['seeds']} seeds", s["members"],
          s["iterations"], C.fmt_range(s["seconds"], 2), f"{s['us_per_member_step']:.3f}",
          f"{s['n_programs']}/{s['n_chunks']}/{s['n_devices']}", s["diverged"]]],
    )  # fmt: skip


# ----------------------------------------------------------------------------- 4. throughput at scale


def flops_per_iteration(dims, m: int) -> float:
    """Forward 2 m Σ n_l n_(l-1), times 3 for forward and backward (bench_scale's count)."""
    return 3 * 2 * m * sum(dims[l] * dims[l - 1] for l in range(1, len(dims)))


def matmul_peak(n: int, reps: int = 10) -> dict:
    """FLOP/s of a square float32 ``jnp.dot`` (n x n), best of ``reps`` calls, each waited for;
    at JAX's default precision (what the network's products use: TF32 on recent NVIDIA GPUs)
    and at ``precision='highest'`` (true float32)."""
    a, b = (jax.random.normal(jax.random.key(i), (n, n), jnp.float32) for i in (0, 1))
    out = {}
    for name, precision in (("default", None), ("highest", jax.lax.Precision.HIGHEST)):
        dot = jax.jit(lambda a, b, precision=precision: jnp.dot(a, b, precision=precision))
        jax.block_until_ready(dot(a, b))
        best = min(seconds(lambda dot=dot: dot(a, b)) for _ in range(reps))
        out[name] = 2.0 * n**3 / best
    return out


def scale(sizes: Sizes) -> dict:
    """Steady-state throughput of ``[2, w, w, 1]`` (float32, no regularisation) on ``m`` random
    examples: warm ``jaxreg.train`` calls of N and 2N steps (``log_every = N``, so one chunk
    program serves both), per step = (median t(2N) - median t(N)) / N, which leaves out what a
    call pays once (initialisation, transfers, the final evaluation). FLOP per step counted as
    3 x 2 m Σ n_l n_(l-1), against the matmul peak measured here."""
    peak = matmul_peak(sizes.peak_n)
    rows = []
    for m, width in sizes.scale_sizes:
        dims = (2, width, width, 1)
        rng = np.random.default_rng(0)
        X = rng.standard_normal((2, m)).astype(np.float32)
        Y = (rng.random((1, m)) < 0.5).astype(np.float32)
        flops = flops_per_iteration(dims, m)
        n = max(2, min(1000, math.ceil(sizes.scale_budget / flops)))

        def run(steps, dims=dims, X=X, Y=Y, n=n):
            return jaxreg.train(X, Y, jaxreg.TrainConfig(dims, learning_rate=0.01, iterations=steps, log_every=n))

        with warnings.catch_warnings():  # random labels: a run may be told its cost barely moved
            warnings.simplefilter("ignore")
            first = seconds(lambda run=run, n=n: run(n))  # compiles
            t = {n: [], 2 * n: []}
            for _ in range(sizes.scale_reps):
                for steps in t:
                    t[steps].append(seconds(lambda run=run, steps=steps: run(steps)))
        marginal = (statistics.median(t[2 * n]) - statistics.median(t[n])) / n
        whole = statistics.median(t[2 * n]) / (2 * n)
        per_step = marginal if marginal > 0 else whole  # a tiny size's noise can swamp the difference
        rows.append({
            "m": m, "width": width, "steps": n, "flops_per_iteration": flops, "first_call_seconds": first,
            "seconds": t, "seconds_per_iteration": per_step, "whole_call_seconds_per_iteration": whole,
            "marginal_used": marginal > 0,
            "flops_per_second": flops / per_step, "share_of_peak": flops / per_step / peak["default"],
            "share_of_peak_highest": flops / per_step / peak["highest"], "memory": memory(),
        })  # fmt: skip
    return {
        "method": "per step: (median t(2N) - median t(N)) / N of warm jaxreg.train calls (float32, no "
        "regularisation, learning rate 0.01, log_every N); FLOP per step 3 x 2 m Σ n_l n_(l-1); share of "
        f"peak against a {sizes.peak_n}² float32 jnp.dot at the default precision (best of 10), and against "
        "the same dot at precision 'highest' (share_of_peak_highest above 1: the products did not run in true "
        "float32); memory: memory_stats() after the size (its peak is the process's so far)",
        "peak_flops_per_second": peak,
        "peak_n": sizes.peak_n,
        "sizes": rows,
    }


def scale_table(s: dict) -> str:
    peak = s["peak_flops_per_second"]
    return (
        f"matmul peak ({s['peak_n']}² float32 dot): {peak['default'] / 1e12:.1f} TFLOP/s at JAX's default "
        f"precision, which the network's products use (TF32 on recent NVIDIA GPUs), {peak['highest'] / 1e12:.1f} "
        "at precision 'highest' (true float32). ms/iteration: steady state, (t(2N) - t(N)) / N; whole call: "
        "t(2N) / 2N, initialisation and evaluation included.\n\n"
        + C.table(
            ["m", "width", "steps N", "ms/iteration", "TFLOP/s", "share of peak", "whole call ms/it",
             "peak device memory GiB"],
            [[f"{r['m']:,}", r["width"], r["steps"], f"{r['seconds_per_iteration'] * 1e3:.3f}"
              + ("" if r["marginal_used"] else " (whole call)"), f"{r['flops_per_second'] / 1e12:.2f}",
              f"{100 * r['share_of_peak']:.0f}%", f"{r['whole_call_seconds_per_iteration'] * 1e3:.3f}",
              f"{r['memory']['peak_bytes_in_use'] / 2**30:.1f}" if r["memory"] and "peak_bytes_in_use" in r["memory"]
              else "n/a"] for r in s["sizes"]],
        )
    )  # fmt: skip


# ----------------------------------------------------------------------------- 5. gradient check


def gradcheck(sizes: Sizes) -> dict:
    """``jaxreg.gradcheck.check_network`` on ``[2, 300, 300, 1]`` (float64, every coordinate,
    lambd 0.7, m random examples, He initialisation from key 0), as bench_gradcheck runs it:
    seconds of the first call (compiling) and of repeated calls; passes when the correct
    gradient passes and a wrong one (dW2's largest entry x 1.01) fails, located at that entry."""
    dims, m = sizes.gradcheck_dims, sizes.gradcheck_m
    rng = np.random.default_rng(0)
    X = rng.standard_normal((dims[0], m))
    Y = (rng.random((1, m)) < 0.5).astype(np.float64)
    with float64():
        params = {k: np.asarray(v) for k, v in jaxreg.init_params(jax.random.key(0), dims, "he", "float64").items()}
    where = np.unravel_index(np.argmax(np.abs(jaxreg.reference.backward(params, X, Y, lambd=GRADCHECK_LAMBD)["dW2"])),
                             params["W2"].shape)  # fmt: skip
    where = tuple(int(i) for i in where)

    def wrong_backward(*args, **kwargs):
        grads = jaxreg.reference.backward(*args, **kwargs)
        grads["dW2"] = grads["dW2"].copy()
        grads["dW2"][where] *= BUG_SCALE
        return grads

    def check(**kwargs):
        return jaxreg.gradcheck.check_network(params, X, Y, lambd=GRADCHECK_LAMBD, **kwargs)

    t0 = time.perf_counter()
    report = check()
    first = time.perf_counter() - t0
    repeated = [seconds(check) for _ in range(sizes.gradcheck_reps)]
    bad = check(backward=wrong_backward)
    worst = bad.fd_vs_backward.worst[0] if bad.fd_vs_backward.worst else None
    located = worst is not None and (worst.name, tuple(worst.index)) == ("W2", where)
    rows = [
        {"case": "correct gradient passes (error model)", "passed": bool(report.passed),
         "difference": report.difference, "textbook_passed": bool(report.textbook_passed), "n_kinks": report.n_kinks},
        {"case": f"dW2{list(where)} x {BUG_SCALE} fails, located there", "passed": bool(not bad.passed and located),
         "difference": bad.difference, "textbook_passed": bool(bad.textbook_passed),
         "located": None if worst is None else [worst.name, list(worst.index)]},
    ]  # fmt: skip
    return {
        "method": f"check_network(params, X, Y, lambd={GRADCHECK_LAMBD}) in float64, every coordinate; first call "
        f"(compiles) and {sizes.gradcheck_reps} repeated calls; the textbook's verdict (difference <= 2e-7) is "
        "recorded, not required (it fails correct gradients of large networks)",
        "layer_dims": list(dims),
        "parameters": int(sum(v.size for v in params.values())),
        "m": m,
        "first_call_seconds": first,
        "seconds": C.stats(repeated),
        "rows": rows,
        "passed": all(r["passed"] for r in rows),
    }


def gradcheck_table(s: dict) -> str:
    return (
        f"{s['layer_dims']} ({s['parameters']:,} parameters, m = {s['m']}): first call {s['first_call_seconds']:.2f} "
        f"s, then {C.fmt_range(s['seconds'], 3)} s\n\n"
        + C.table(
            ["case", "difference", "textbook verdict", "verdict"],
            [[r["case"], f"{r['difference']:.1e}", "passed" if r["textbook_passed"] else "failed",
              "pass" if r["passed"] else "**FAIL**"] for r in s["rows"]],
        )
    )  # fmt: skip


# ----------------------------------------------------------------------------- main

SECTIONS = {  # name: (title, measure, table)
    "textbook": ("1. the textbook's table, float64", textbook, textbook_table),
    "steady_state": ("2. steady state, the lesson's run, float32", steady, steady_table),
    "sweep": ("3. a sweep, float32", sweep_section, sweep_table),
    "throughput": ("4. throughput at scale, float32", scale, scale_table),
    "gradcheck": ("5. the full gradient check, float64", gradcheck, gradcheck_table),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="the same code paths at tiny sizes (CI, any backend)")
    parser.add_argument("--json", metavar="PATH", help="write the report there (atomically)")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    t_all = time.perf_counter()
    env = environment()
    print(f"# jaxreg GPU check{' (smoke)' if args.smoke else ''}\n")
    print(f"backend {env['backend']}: {env['device_kind']} x {env['device_count']}; platform "
          f"{(env['platform_version'] or '').splitlines()[0] if env['platform_version'] else '?'}; "
          + ", ".join(f"{k} {v}" for k, v in env["packages"].items())
          + (f"; memory limit {env['memory']['bytes_limit'] / 2**30:.1f} GiB" if env["memory"]
             and "bytes_limit" in env["memory"] else "")
          + f"; CPU {env['cpu']} ({env['cpu_cores']} cores)", flush=True)  # fmt: skip

    report = {"command": C.command_line(), "smoke": args.smoke, "sizes": sizes._asdict(), "environment": env,
              "sections": {}}  # fmt: skip
    for name, (title, measure, table) in SECTIONS.items():
        print(f"gpu_check: {title} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            section = measure(sizes)
            text = table(section)
        except Exception as err:  # recorded, and the check fails: one broken section must not hide the others
            traceback.print_exc()
            section = {"error": f"{type(err).__name__}: {err}", "passed": False}
            text = f"**FAILED to run**: {section['error']}"
        section["section_seconds"] = time.perf_counter() - t0
        report["sections"][name] = section
        print(f"\n## {title} ({section['section_seconds']:.1f} s)\n\n{text}", flush=True)

    # Correctness: sections 1 and 5 by their rows; every section by having run at all.
    failed = [name for name, s in report["sections"].items() if "error" in s or s.get("passed") is False]
    report["passed"] = not failed
    report["failed"] = failed
    report["environment"]["memory_at_end"] = memory()
    report["seconds"] = time.perf_counter() - t_all
    verdict = "PASSED" if not failed else "FAILED: " + ", ".join(failed)
    print(f"\n{verdict} ({report['seconds']:.0f} s)")
    if args.json:
        with atomic_open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=_json_value)
            f.write("\n")
        print(f"written: {args.json}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
