"""Speed where library users stand (issue 23), each figure measured in one process, side by side.

1. scikit-learn's ``GridSearchCV(make_pipeline(StandardScaler(), MLPClassifier()), {lambd: 4 values},
   cv=5)`` on scikit-learn's breast-cancer data (569 x 30): jaxreg's estimator against scikit-learn's
   own ``MLPClassifier((20, 3))``, each in a fresh process (a user's first grid search pays every
   compilation): wall seconds, and jaxreg's XLA compilations.
2. ``jaxreg.train`` against a lean hand-written ``lax.scan`` of the same step (``jax.grad`` of the same
   loss, optax SGD, the costs kept) at 30000 iterations on the textbook's data, float32, warm,
   interleaved: microseconds per iteration and the ratio, for no regularization, L2 and dropout; and
   the per-call overhead: a warm call of 10 iterations, train's time minus the scan's (at 30000
   iterations that difference holds the per-step difference too, 30000 times over, and the noise).
3. ``gradcheck.check`` on a small network: the compilations and seconds of a first call and of a
   second call on new values of the same shapes.

    python benchmarks/bench_library.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import time

import _common as C
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxreg
from jaxreg import model
from jaxreg.compilation import CompileClock

GRID = textwrap.dedent("""
    import json, sys, time, warnings
    t0 = time.perf_counter()
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    X, y = load_breast_cancer(return_X_y=True)
    if sys.argv[1] == "jaxreg":
        from jaxreg.compilation import CompileClock
        from jaxreg.sklearn import MLPClassifier
        clock, est, name = CompileClock(), MLPClassifier(), "mlpclassifier__lambd"
    else:
        from sklearn.neural_network import MLPClassifier
        warnings.simplefilter("ignore")  # its ConvergenceWarnings
        clock, est, name = None, MLPClassifier((20, 3), random_state=0), "mlpclassifier__alpha"
    t = time.perf_counter()
    grid = GridSearchCV(make_pipeline(StandardScaler(), est), {name: [0, 0.3, 0.7, 1.5]}, cv=5).fit(X, y)
    fit = time.perf_counter() - t
    print(json.dumps({"fit_seconds": fit, "process_seconds": time.perf_counter() - t0, "best_score": grid.best_score_,
                      "compiled": None if clock is None else clock.compiled,
                      "compile_seconds": None if clock is None else clock.seconds,
                      "programs": None if clock is None else clock.programs}))
""")

REGIMES = {"none": dict(lambd=0.0, keep_prob=1.0), "L2": dict(lambd=0.7, keep_prob=1.0),
           "dropout": dict(lambd=0.0, keep_prob=0.86)}


def grid_search(rounds: int) -> dict:
    """Section 1: each competitor in its own fresh process, interleaved ``rounds`` times."""
    runs = {"jaxreg": [], "sklearn": []}
    for _ in range(rounds):
        for name in runs:
            done = subprocess.run([sys.executable, "-c", GRID, name], capture_output=True, text=True, check=True)
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    fits = {name: [r["fit_seconds"] for r in rs] for name, rs in runs.items()}
    return {"runs": runs, "fit_seconds": {k: C.stats(v) for k, v in fits.items()},
            "ratio": C.paired_ratio(fits["jaxreg"], fits["sklearn"]),
            "compiled": runs["jaxreg"][0]["compiled"], "programs": runs["jaxreg"][0]["programs"]}


def lean_scan(iterations: int, lambd: float, keep_prob: float):
    """The step without anything around it: jax.grad of the loss, optax SGD, the costs kept."""
    dims, keep = (2, 20, 3, 1), (keep_prob, keep_prob)
    optimizer = optax.sgd(0.3)

    @jax.jit
    def run(params, X, Y, key):
        def step(carry, t):
            params, state = carry
            masks = jaxreg.masks.all_masks(jax.random.fold_in(key, t), dims, X.shape[1], keep) if keep_prob < 1 \
                else None
            cost, grads = jax.value_and_grad(model.cost)(params, X, Y, lambd, masks, keep)
            updates, state = optimizer.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), cost

        (params, _), costs = jax.lax.scan(step, (params, optimizer.init(params)), jnp.arange(iterations))
        return params, costs

    return run


def _pair(X, Y, iterations: int, regime: dict) -> dict:
    """``train`` and the lean scan, each a call of ``iterations`` steps on ``X, Y``."""
    scan = lean_scan(iterations, **regime)
    params = jaxreg.init_params(jax.random.key(0), [2, 20, 3, 1], dtype=jnp.float32)
    Xd, Yd, key = jnp.asarray(X), jnp.asarray(Y), jax.random.key(1)
    return {
        "train": lambda: jaxreg.train(X, Y, [2, 20, 3, 1], iterations=iterations, **regime),
        "scan": lambda: np.asarray(scan(params, Xd, Yd, key)[1]),
    }


def train_floor(iterations: int, reps: int, short: int = 10) -> dict:
    """Section 2: train() and the lean scan interleaved in this process, warm; then both at
    ``short`` iterations, whose difference is the per-call overhead."""
    X, Y, _, _, _ = C.textbook_data()
    X, Y = np.asarray(X, np.float32), np.asarray(Y, np.float32)
    rows = {}
    for name, regime in REGIMES.items():
        timed = C.interleaved(_pair(X, Y, iterations, regime), reps=reps)
        calls = C.interleaved(_pair(X, Y, short, regime), reps=10 * reps)
        wall = {k: v["wall"] for k, v in timed.items()}
        rows[name] = {"us_per_iteration": {k: C.stats(v, 1e6 / iterations) for k, v in wall.items()},
                      "ratio": C.paired_ratio(wall["train"], wall["scan"]),
                      "call_ms": {k: C.stats(v["wall"], 1e3) for k, v in calls.items()},
                      "overhead_ms": C.stats(np.subtract(calls["train"]["wall"], calls["scan"]["wall"]), 1e3),
                      "short_iterations": short, "samples": timed, "short_samples": calls}
    return rows


def repeated_check() -> dict:
    """Section 3: gradcheck.check twice, the second on new values of the same shapes."""
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        calls = []
        for _ in range(2):
            params = {k: jnp.asarray(v) for k, v in jaxreg.reference.init_params([4, 5, 3, 1],
                                                                                 seed=int(rng.integers(99))).items()}
            X, Y = rng.normal(size=(4, 7)), (rng.random((1, 7)) < 0.5).astype(float)
            clock, t = CompileClock(), time.perf_counter()
            report = jaxreg.gradcheck.check(jaxreg.loss, params, X, Y, lambd=0.3)
            calls.append({"seconds": time.perf_counter() - t, "compiled": clock.compiled, "passed": report.passed})
    return {"first": calls[0], "second": calls[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test: fewer iterations and rounds")
    args = parser.parse_args()
    iterations, reps, rounds = (2000, 2, 1) if args.quick else (30000, 7, 3)
    env = C.environment()
    grid = grid_search(rounds)
    floor = train_floor(iterations, reps)
    check = repeated_check()
    g = grid["fit_seconds"]
    lines = [
        "### Library users (`bench_library.py`)", "", C.environment_line(env), "",
        f"GridSearchCV, 4 lambd x 5 folds + refit (21 fits) on breast cancer (569 x 30), each in a fresh process, "
        f"median of {rounds}:", "",
        C.table(["", "seconds (fit)", "XLA compilations", "target"], [
            ["jaxreg `MLPClassifier()`", C.fmt_range(g["jaxreg"], 2), str(grid["compiled"]), "<= 3, <= 0.5x"],
            ["scikit-learn `MLPClassifier((20, 3))`", C.fmt_range(g["sklearn"], 2), "", ""],
            ["ratio", C.fmt_ratio(grid["ratio"]), "", ""]]), "",
        f"`jaxreg.train` against a lean `lax.scan` of the same step, {iterations} iterations, float32, warm, "
        f"interleaved, median of {reps}:", "",
        C.table(["", "train µs/it", "scan µs/it", "ratio (target <= 1.1)", "train ms, 10 its", "scan ms, 10 its",
                 "overhead ms (target < 10)"], [
            [name, C.fmt_range(r["us_per_iteration"]["train"], 2), C.fmt_range(r["us_per_iteration"]["scan"], 2),
             f"{r['ratio']:.2f}×", C.fmt_range(r["call_ms"]["train"], 2), C.fmt_range(r["call_ms"]["scan"], 2),
             C.fmt_range(r["overhead_ms"], 2)] for name, r in floor.items()]), "",
        C.table(["`gradcheck.check`, [4, 5, 3, 1]", "seconds", "XLA compilations (target: 0 on the second)"], [
            [call, f"{check[call]['seconds']:.3f}", str(check[call]["compiled"])] for call in ("first", "second")]),
    ]
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    C.write_results("library-quick" if args.quick else "library",
                    {"environment": env, "grid_search": grid, "train_floor": floor, "repeated_check": check,
                     "command": C.command_line()}, markdown)


if __name__ == "__main__":
    main()
