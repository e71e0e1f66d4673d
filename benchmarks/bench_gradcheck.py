"""The full finite-difference gradient check: its verdicts, and its speed against coordinate loops.

``jaxreg.gradcheck.check_network`` (every coordinate: four losses each, at +-epsilon and
+-2 epsilon, from the cached forward pass; ``jax.grad``; the NumPy backprop; ReLU kinks;
both verdicts) on ``[2, 20, 3, 1]`` (127 parameters, the textbook's dataset) and on
``[2, 300, 300, 1]`` (91,501 parameters, 4 random examples), float64, L2 on. On the large
network it checks the correct hand-written gradient and the same gradient with its
largest-magnitude ``dW2`` entry scaled by 1.01. Against it, the finite differences alone
computed as the textbook does, one coordinate at a time (two losses each): a Python loop
over a jitted two-sided difference (``jax-loop``) and the textbook's NumPy loop
(``numpy-loop``: ``jaxreg.reference`` forward and cost per perturbation), run on the first
coordinates of the large network and extrapolated to all of them (the table says how many).
On the small network the generic ``gradcheck.check(jaxreg.loss, ...)`` runs too, and a row
counts its compilations and seconds on a first call (compiled programs forgotten before it)
and on a repeated call with new values of the same shapes (issue 23: it compiles nothing).

This process unsets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE before NumPy loads, so the NumPy
loop's BLAS picks its own kernel (recorded with threadpoolctl where it is installed).

    python benchmarks/bench_gradcheck.py [--quick]
"""

from __future__ import annotations

import os

for _name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # before NumPy loads its BLAS; this process only
    os.environ.pop(_name, None)

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import _common as C  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

from jaxreg import gradcheck, model, reference  # noqa: E402
from jaxreg.compilation import CompileClock  # noqa: E402

EPSILON = 1e-7
LAMBD = 0.7
SMALL = (2, 20, 3, 1)
LARGE = (2, 300, 300, 1)
LARGE_M = 4
LOOP_COORDINATES = 3000  # coordinates the loops run on the large network (then extrapolated)
BUG_SCALE = 1.01
TARGET_SPEEDUP = 20  # the full check vs the NumPy coordinate loop, same run
TARGET_SECONDS = 3.0  # the full check on the large network, wall clock

NOTES = """\
**What limits it.** The fast path perturbs pre-activations, not parameters: a weight
`W_l[i, j]` moves row `i` of `Z_l` by `±ε A_{l-1}[j, :]`, so each perturbed loss costs that
row, a rank-one update of the next layer and the layers after it. For `[2, 300, 300, 1]`
the 90,300 coordinates of layer 2 cost `O(m)` each and the 900 of layer 1 `O(300 m)`: the
366,004 losses are ~10⁸ flops, a few tenths of a second, about what `jax.grad`, the NumPy
backprop and building the report (per-array differences, ranking by error / bound) add
together. The first call is mostly XLA compiling the one program (grad, four losses per
coordinate, kink flags, per layer). The textbook's loop pays a full forward pass and a
parameter copy per loss, in Python. The previous vectorised check (every perturbation from
its own copy of the whole parameter vector, ~`4P²` numbers moved) took 24–90 s here.
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
        return {n: part.reshape(s) for n, part, s in zip(names, np.split(vector, splits), shapes, strict=True)}

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


def blas() -> dict:
    """The BLAS NumPy runs on, and the kernel it picked."""
    try:
        import threadpoolctl
    except ImportError:
        return {"note": "threadpoolctl not installed: kernel not recorded"}
    info = [i for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]
    keys = ("internal_api", "version", "architecture", "num_threads", "threading_layer")
    return {k: info[0].get(k) for k in keys} if info else {"note": "no BLAS found by threadpoolctl"}


def largest_dw2_bug(params, X, Y):
    """The hand-written backprop with its largest-magnitude dW2 entry scaled by BUG_SCALE."""
    where = np.unravel_index(np.argmax(np.abs(reference.backward(params, X, Y, lambd=LAMBD)["dW2"])),
                             params["W2"].shape)  # fmt: skip

    def backward(*args, **kwargs):
        grads = reference.backward(*args, **kwargs)
        grads["dW2"] = grads["dW2"].copy()
        grads["dW2"][where] *= BUG_SCALE
        return grads

    return backward, tuple(int(i) for i in where)


def verdict_text(report) -> str:
    located = ""
    if not report.passed:
        e = report.fd_vs_backward.worst[0]
        located = f", worst {e.name}[{', '.join(map(str, e.index))}] at {e.ratio:.0f}x its bound"
    return (
        f"error model {'passed' if report.passed else 'FAILED'}{located}; textbook "
        f"{'passed' if report.textbook_passed else 'FAILED'} (difference {report.difference:.1e})"
    )


def first_and_repeated(params, X, Y) -> dict:
    """The generic check's compilations and seconds: a first call (programs forgotten before
    it), then a repeated call on new values of the same shapes."""
    C.clear_compiled()
    out = {}
    for name, p in (("first", params), ("repeated", {k: v + 0.01 for k, v in params.items()})):
        grads = reference.backward(p, X, Y, lambd=LAMBD)
        clock, t0 = CompileClock(), time.perf_counter()
        gradcheck.check(model.loss, p, X, Y, grads=grads, lambd=LAMBD)
        out[name] = {"seconds": time.perf_counter() - t0, "compilations": len(clock.programs),
                     "programs": clock.programs}  # fmt: skip
    return out


def run_case(label, dims, m, reps):
    """Time the check and its competitors on one network; returns (rows, payload)."""
    print(f"bench_gradcheck: {label} ...", file=sys.stderr, flush=True)
    params, X, Y, note = problem(dims, m)
    P = sum(v.size for v in params.values())
    k = P if m is None else min(LOOP_COORDINATES, P)
    reports = {}

    def check():
        reports["honest"] = gradcheck.check_network(params, X, Y, lambd=LAMBD)

    competitors = {"check_network": check}
    if m is None:
        def generic():  # noqa: E306
            gradcheck.check(model.loss, params, X, Y, grads=reference.backward(params, X, Y, lambd=LAMBD), lambd=LAMBD)

        competitors["check (generic)"] = generic
    loops = {"jax-loop": jax_loop(params, X, Y), "numpy-loop": numpy_loop(params, X, Y)}
    competitors.update({name: (lambda run=run: run(k)) for name, run in loops.items()})
    t0 = time.perf_counter()
    check()  # the first call compiles
    first = time.perf_counter() - t0
    for run in loops.values():
        run(2)  # compile the jitted difference
    compile_once = first_and_repeated(params, X, Y) if m is None else None
    samples = C.interleaved(competitors, reps=reps, warmup=1 if m is None else 0)
    seconds = {name: C.stats(s["wall"], 1.0 if name in ("check_network", "check (generic)") else P / k)
               for name, s in samples.items()}  # fmt: skip
    numpy_median = seconds["numpy-loop"]["median"]
    payload = {
        "parameters": P, "data": note, "seconds": seconds, "first_call_seconds": first, "coordinates_timed": k,
        "n_losses": reports["honest"].fd_vs_backward.n_losses, "honest": reports["honest"].to_dict()["comparisons"],
        "honest_passed": reports["honest"].passed, "honest_textbook_passed": reports["honest"].textbook_passed,
        "honest_difference": reports["honest"].difference, "n_kinks": reports["honest"].n_kinks,
        "speedup_vs_numpy": numpy_median / seconds["check_network"]["median"],
        "speedup_vs_numpy_first_call": numpy_median / first, "check_first_and_repeated": compile_once,
    }  # fmt: skip
    verdicts = {"check_network": "correct gradient: " + verdict_text(reports["honest"])}
    if m is not None:
        backward, where = largest_dw2_bug(params, X, Y)
        bad = gradcheck.check_network(params, X, Y, lambd=LAMBD, backward=backward)
        worst = bad.fd_vs_backward.worst[0]
        payload["bug"] = {
            "entry": ["W2", list(where)], "scale": BUG_SCALE, "passed": bad.passed,
            "textbook_passed": bad.textbook_passed, "difference": bad.difference, "offenders": list(bad.offenders),
            "located": [worst.name, list(worst.index)], "located_right": (worst.name, worst.index) == ("W2", where),
            "ratio": worst.ratio, "n_failed": bad.fd_vs_backward.n_failed,
        }  # fmt: skip
        verdicts["check_network"] += (
            f"<br>dW2[{where[0]}, {where[1]}] x {BUG_SCALE}: " + verdict_text(bad) + f" ({bad.fd_vs_backward.n_failed} "
            "coordinate(s) beyond their bound)"
        )
    rows = []
    for name, s in seconds.items():
        extrapolated = "" if name in ("check_network", "check (generic)") or k == P else f" (from {k} of {P})"
        first_text = f"; first call {first:.2f}" if name == "check_network" else ""
        rows.append([label, f"{P:,}", note, name, C.fmt_range(s, 3) + extrapolated + first_text,
                     C.fmt_ratio(numpy_median / s["median"]), verdicts.get(name, "")])  # fmt: skip
    if compile_once is not None:
        first_call, again = compile_once["first"], compile_once["repeated"]
        rows.append([label, f"{P:,}", note, "check (generic): first call, then repeated on new values",
                     f"{first_call['seconds']:.3f} ({first_call['compilations']} compilation(s)), then "
                     f"{again['seconds']:.3f} ({again['compilations']} compilation(s))", "", ""])  # fmt: skip
    return rows, payload


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test: the small network only")
    args = parser.parse_args(argv)
    env = C.environment("float64")
    env["blas"] = blas()
    cases = [("[2, 20, 3, 1]", SMALL, None, 5)]
    if not args.quick:
        cases.append(("[2, 300, 300, 1]", LARGE, LARGE_M, 3))
    rows, payload = [], {"environment": env, "cases": {}}
    for label, dims, m, reps in cases:
        case_rows, payload["cases"][label] = run_case(label, dims, m, reps)
        rows += case_rows
    targets = []
    if not args.quick:
        big = payload["cases"]["[2, 300, 300, 1]"]
        median = big["seconds"]["check_network"]["median"]
        targets = [
            ["correct gradient passes (error model)", "passes", C.verdict(big["honest_passed"])],
            [f"dW2's largest entry x {BUG_SCALE} fails, located there", "fails at that entry",
             C.verdict(not big["bug"]["passed"] and big["bug"]["located_right"])],
            ["full check vs NumPy loop (× faster)", f"≥ {TARGET_SPEEDUP}×",
             f"{big['speedup_vs_numpy']:.0f}× ({big['speedup_vs_numpy_first_call']:.0f}× with the first call): "
             + C.verdict(big["speedup_vs_numpy"] >= TARGET_SPEEDUP)],
            ["full check, wall clock", f"≤ {TARGET_SECONDS:g} s",
             f"{median:.2f} s ({big['first_call_seconds']:.2f} s first call, compile included): "
             + C.verdict(big["first_call_seconds"] <= TARGET_SECONDS)],
        ]  # fmt: skip
        payload["targets"] = targets
    blas_text = ", ".join(f"{k} {v}" for k, v in env["blas"].items())
    md = "\n\n".join(
        [
            "### bench_gradcheck: the full finite-difference check",
            f"`{C.command_line()}` — {env['date']}. {C.environment_line(env)}. NumPy's BLAS: {blas_text}.",
            f"Every coordinate, epsilon {EPSILON:g}, lambd {LAMBD}, float64. Seconds per check: median (min–max) of "
            "the repetitions (5 on the small network, 3 on the large one, interleaved), after a first call that "
            "compiles. check_network: four losses per coordinate (±ε, ±2ε), jax.grad, the NumPy backprop, kink "
            "flags and both verdicts; the loops: two losses per coordinate, nothing else. × NumPy: the NumPy "
            "loop's time over each.",
            C.table(["network", "parameters", "data", "competitor", "seconds", "× NumPy", "verdicts"], rows),
            *([C.table(["target (issue 14)", "target", "measured"], targets)] if targets else []),
            NOTES,
        ]
    )
    C.write_results("gradcheck" if not args.quick else "gradcheck-quick", payload, md)


if __name__ == "__main__":
    main()
