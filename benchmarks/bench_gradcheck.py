"""The full finite-difference gradient check: vectorised vs a coordinate loop.

``jaxreg.gradcheck.check_network`` (finite differences of every coordinate vs
``jax.grad`` vs the NumPy backprop, ReLU kinks flagged; all ``2P`` perturbed losses in one
compiled call) on ``[2, 20, 3, 1]`` (127 parameters, the textbook's dataset) and on a
~10^5-parameter network ``[2, 300, 300, 1]`` (a few random examples, to keep the run short),
float64, L2 on. Against it, the finite differences alone computed as the textbook does, one
coordinate at a time: a Python loop over a jitted two-sided difference (``jax-loop``) and
the textbook's NumPy loop (``numpy-loop``: ``jaxreg.reference`` forward and cost per
perturbation). On the large network the loops run on the first coordinates only and are
extrapolated to all of them (the table says how many).

    python benchmarks/bench_gradcheck.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time

import _common as C
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxreg import gradcheck, model, reference

EPSILON = 1e-7
LAMBD = 0.7
SMALL = (2, 20, 3, 1)
LARGE = (2, 300, 300, 1)
LARGE_M = 4

NOTES = """\
**What limits it.** On the small network the whole three-way check (finite differences, 254
losses, plus `jax.grad`, the NumPy backprop and the kink flags) costs about as much as the
bare finite differences in a Python loop: per-call overheads, not arithmetic. On the large
network the vectorised check is memory-bound: each of the `2P` perturbed losses (and each
perturbation's ReLU pattern) starts from its own full copy of the parameter vector, `P`
float64s, so the check moves ~`4P²` numbers (~270 GB at `P` = 91,501) for ~10¹¹ flops of
forward passes, and it is no faster than the textbook's NumPy loop. Perturbing only the
array a coordinate belongs to, or a rank-one update of the one pre-activation it changes,
would remove the `P²` term (`jaxreg/gradcheck.py`, not changed here).
"""


def problem(dims, m: int | None):
    """Parameters (float64, NumPy) and data: the textbook's for the small net, random otherwise."""
    if m is None:
        X, Y, _, _, note = C.textbook_data()
        return reference.init_params(dims), X, Y, note
    rng = np.random.default_rng(0)
    X = rng.standard_normal((dims[0], m))
    Y = (rng.random((1, m)) < 0.5).astype(np.float64)
    with jax.enable_x64(True):
        params = {
            k: np.asarray(v) for k, v in model.init_params(jax.random.key(0), dims, "he", jnp.float64).items()
        }
    return params, X, Y, f"{m} random examples"


def jax_loop(params, X, Y):
    """Two-sided differences coordinate by coordinate: a jitted difference per coordinate."""
    with jax.enable_x64(True):
        theta, unravel = ravel_pytree({k: jnp.asarray(v, jnp.float64) for k, v in params.items()})
        Xj, Yj = jnp.asarray(X), jnp.asarray(Y)

        @jax.jit
        def difference(theta, i):
            e = jnp.zeros_like(theta).at[i].set(EPSILON)
            plus = model.loss(unravel(theta + e), Xj, Yj, lambd=LAMBD)
            minus = model.loss(unravel(theta - e), Xj, Yj, lambd=LAMBD)
            return (plus - minus) / (2 * EPSILON)

    def run(k: int):
        with jax.enable_x64(True):
            return np.asarray([difference(theta, i) for i in range(k)])

    return run


def numpy_loop(params, X, Y):
    """The textbook's gradient_check_n: NumPy forward and cost per perturbation."""
    names = [f"{w}{l}" for l in range(1, len(params) // 2 + 1) for w in "Wb"]
    shapes = [params[n].shape for n in names]
    theta = np.concatenate([params[n].ravel() for n in names])
    splits = np.cumsum([int(np.prod(s)) for s in shapes])[:-1]

    def as_dict(vector):
        return {
            n: part.reshape(s) for n, part, s in zip(names, np.split(vector, splits), shapes, strict=True)
        }

    def J(vector):
        p = as_dict(vector)
        AL, _ = reference.forward(p, X)
        return reference.cost(AL, Y, p, LAMBD)

    def run(k: int):
        approx = np.empty(k)
        for i in range(k):
            plus, minus = theta.copy(), theta.copy()
            plus[i] += EPSILON
            minus[i] -= EPSILON
            approx[i] = (J(plus) - J(minus)) / (2 * EPSILON)
        return approx

    return run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test: the small network only")
    args = parser.parse_args(argv)
    env = C.environment("float64")
    cases = [("[2, 20, 3, 1]", SMALL, None, None, 5)]
    if not args.quick:
        cases.append(("[2, 300, 300, 1]", LARGE, LARGE_M, 300, 1))
    rows, payload = [], {"environment": env, "cases": {}}
    for label, dims, m, subset, reps in cases:
        print(f"bench_gradcheck: {label} ...", file=sys.stderr, flush=True)
        params, X, Y, note = problem(dims, m)
        P = sum(v.size for v in params.values())
        k = P if subset is None else min(subset, P)
        loops = {"jax-loop": jax_loop(params, X, Y), "numpy-loop": numpy_loop(params, X, Y)}
        report = None

        def vectorised(params=params, X=X, Y=Y):
            nonlocal report
            report = gradcheck.check_network(params, X, Y, lambd=LAMBD)
            return None

        loop_runs = {name: (lambda run=run, k=k: run(k)) for name, run in loops.items()}
        t0 = time.perf_counter()
        vectorised()  # the first call compiles
        first = time.perf_counter() - t0
        if subset is None:
            samples = C.interleaved({"vectorised": vectorised, **loop_runs}, reps=reps, warmup=1)
        else:  # one call of the check (compile included: it is small next to the run), loops once
            for run in loops.values():
                run(2)  # compile the jitted difference
            samples = {
                "vectorised": {"wall": [first], "cpu": []},
                **C.interleaved(loop_runs, reps=1, warmup=0),
            }
        competitors = samples
        seconds = {
            name: C.stats(s["wall"], 1.0 if name == "vectorised" else P / k) for name, s in samples.items()
        }
        base = seconds["vectorised"]["median"]
        for name in competitors:
            s = seconds[name]
            extrapolated = "" if name == "vectorised" or k == P else f" (from {k} of {P} coordinates)"
            rows.append(
                [
                    label,
                    f"{P:,}",
                    note,
                    name,
                    C.fmt_range(s, 3) + extrapolated,
                    C.fmt_ratio(s["median"] / base),
                    C.fmt_ratio(seconds["numpy-loop"]["median"] / s["median"]),
                ]
            )
        rows[-len(competitors)][3] += (
            f" (first call {first:.1f} s)" if subset is None else " (one call, compile included)"
        )
        payload["cases"][label] = {
            "parameters": P,
            "data": note,
            "seconds": seconds,
            "first_call_seconds": first,
            "coordinates_timed": k,
            "passed": report.passed,
            "difference": report.difference,
            "n_losses": report.fd_vs_autodiff.n_losses,
            "kinks": len(report.kinks),
        }
        rows[-len(competitors)][3] += (
            f"; difference {report.difference:.1e}, {'passed' if report.passed else 'FAILED'}"
        )

    md = "\n\n".join(
        [
            "### bench_gradcheck: the full finite-difference check",
            f"`{C.command_line()}` — {env['date']}. {C.environment_line(env)}.",
            f"Every coordinate, epsilon {EPSILON:g}, lambd {LAMBD}, float64. Seconds for the whole check: "
            "median (min–max) of 5 repetitions after a first call that compiles (small network); one "
            "call, compilation included, of the check on the large network. The loops compute the "
            "finite differences only. × slower: against the vectorised check; × NumPy: the NumPy loop's "
            "time over each.",
            C.table(["network", "parameters", "data", "competitor", "seconds", "× slower", "× NumPy"], rows),
            NOTES,
        ]
    )
    C.write_results("gradcheck" if not args.quick else "gradcheck-quick", payload, md)


if __name__ == "__main__":
    main()
