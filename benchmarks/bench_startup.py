"""Time to result: whole commands as processes, against the textbook's NumPy loop as a process.

What a user waits for is the whole process: start-up, imports, compilation, the run and
the output. Each command runs as its own process, interleaved (A B C ... A B C ...) after a
warm-up round, and the median and min-max of the rounds are reported:

* NumPy: ``benchmarks/course_numpy.py`` (the course's ``model()``, float64, 30000
  iterations, with its masks where dropout is on), OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
  unset (they slow a current OpenBLAS), its BLAS kernel recorded with threadpoolctl;
* ``jaxreg train --data <textbook data>`` (the same run, float32) with a warm compilation
  cache, and cold (``JAXREG_CACHE_DIR=``: every program compiled);
* the floor: ``python -c "import jax, jax.numpy as jnp; jnp.ones(3).block_until_ready()"``;
* ``jaxreg compare`` (``make demo``: three runs and the figure), warm;
* ``python -c "import jaxreg"`` against ``python -c "import jax"``.

Also: the programs each command compiles (from JAX's monitoring events) and their XLA
compile seconds, cold; and one run of the test suite (``python -m pytest -q``) with the
compilation cache it left in ``.pytest_cache``.

    python benchmarks/bench_startup.py [--quick] [--no-tests]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as C

ROOT = C.BENCH_DIR.parent
JAXREG = [sys.executable, "-m", "jaxreg.cli"]
REGIMES = {  # the flags of both jaxreg train and course_numpy.py
    "no regularization": [],
    "L2, lambd 0.7": ["--lambd", "0.7"],
    "dropout, keep_prob 0.86": ["--keep-prob", "0.86"],
}
TARGETS = {"warm": 0.9, "cold": 1.3, "added": 0.3, "compare": 3.0, "import": 1.2, "xla_compile": 0.6, "tests": 120}
FLOOR = "import jax, jax.numpy as jnp; jnp.ones(3).block_until_ready()"
COUNTED = """
import json, sys
import jax
seen = {"xla_seconds": 0.0, "programs": []}
def listen(event, seconds, fun_name="?", **_):
    if event == "/jax/core/compile/backend_compile_duration":
        seen["xla_seconds"] += seconds
        seen["programs"].append(fun_name)
jax.monitoring.register_event_duration_secs_listener(listen)
from jaxreg.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, **seen}))
"""


def numpy_env() -> dict:
    """The NumPy process's environment: OpenBLAS tuned for today's CPUs, not for old builds."""
    return {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}


def blas_kernel() -> str:
    """The BLAS library and kernel NumPy uses under numpy_env (threadpoolctl, where installed)."""
    probe = ("import numpy, json\n"
             "try:\n from threadpoolctl import threadpool_info\n"
             " print(json.dumps([{k: i.get(k) for k in ('internal_api', 'version', 'architecture', 'num_threads')}"
             " for i in threadpool_info() if i.get('user_api') == 'blas']))\n"
             "except ImportError:\n print(json.dumps(None))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=numpy_env()).stdout
    info = json.loads(out or "null")
    if not info:
        return "unknown (threadpoolctl not installed)"
    return "; ".join(f"{i['internal_api']} {i['version']} ({i['architecture']}, {i['num_threads']} threads)"
                     for i in info)


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall, CPU) seconds of one process run to its end; it must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def interleaved(commands: dict[str, tuple[list[str], dict]], reps: int) -> dict:
    """One warm-up round, then ``reps`` rounds of every command in turn."""
    for cmd, env in commands.values():
        timed(cmd, env)
    samples = {name: {"wall": [], "cpu": []} for name in commands}
    for _ in range(reps):
        for name, (cmd, env) in commands.items():
            wall, cpu = timed(cmd, env)
            samples[name]["wall"].append(wall)
            samples[name]["cpu"].append(cpu)
    return samples


def compiled_programs(argv: list[str], reps: int = 3) -> dict:
    """The programs a command compiles with no cache, and their XLA compile seconds (the median
    of ``reps`` processes: one compilation's time moves with the machine's other work)."""
    env = {**os.environ, "JAXREG_CACHE_DIR": ""}
    runs = []
    with tempfile.TemporaryDirectory() as out:
        extra = ["--plot", os.path.join(out, "f.png")] if argv[0] == "compare" else []
        for _ in range(reps):
            done = subprocess.run([sys.executable, "-c", COUNTED, *argv, *extra], env=env, cwd=ROOT,
                                  capture_output=True, text=True, check=True)
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    seconds = [r["xla_seconds"] for r in runs]
    return {**runs[0], "xla_seconds": C.stats(seconds)["median"], "xla_seconds_all": seconds}


def test_suite() -> dict:
    """One run of the suite, as `make test` runs it (two workers on two cores), with the compilation cache it finds."""
    cache = ROOT / ".pytest_cache" / "xla"
    warm = cache.is_dir() and any(cache.iterdir())
    wall, cpu = timed([sys.executable, "-m", "pytest", "-q", "-n", "auto", "--dist", "loadfile"], dict(os.environ))
    return {"wall": wall, "cpu": cpu, "warm_cache": warm}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: 3000 iterations, 2 rounds")
    parser.add_argument("--no-tests", action="store_true", help="skip the test suite's run")
    args = parser.parse_args(argv)
    data = C.jdata.course_data_dir() / "data.npz"
    if not data.is_file():
        raise SystemExit(f"bench_startup: {data} is absent (set {C.jdata.DATA_ENV}); the NumPy anchor needs it")
    iterations = 3000 if args.quick else 30000
    reps = 2 if args.quick else 5
    env = C.environment()
    cache = Path(tempfile.mkdtemp(prefix="jaxreg-bench-cache-"))
    warm_env = {**os.environ, "JAXREG_CACHE_DIR": str(cache)}
    cold_env = {**os.environ, "JAXREG_CACHE_DIR": ""}
    its = ["--iterations", str(iterations)]
    try:
        commands = {"floor": ([sys.executable, "-c", FLOOR], dict(os.environ))}
        for regime in REGIMES:
            commands[f"numpy/{regime}"] = ([sys.executable, str(C.BENCH_DIR / "course_numpy.py"), str(data), *its,
                                            *REGIMES[regime]], numpy_env())
            train = [*JAXREG, "train", "--data", str(data), *its, *REGIMES[regime]]
            commands[f"warm/{regime}"] = (train, warm_env)
            commands[f"cold/{regime}"] = (train, cold_env)
        commands["compare"] = ([*JAXREG, "compare", *its, "--plot", str(cache / "compare.png")], warm_env)
        commands["import jax"] = ([sys.executable, "-c", "import jax"], dict(os.environ))
        commands["import jaxreg"] = ([sys.executable, "-c", "import jaxreg"], dict(os.environ))
        samples = interleaved(commands, reps)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    counts = {"train": compiled_programs(["train", "--data", str(data), *its, "--json"]),
              "train --keep-prob 0.86": compiled_programs(["train", "--data", str(data), *its, "--keep-prob",
                                                           "0.86", "--json"]),
              "compare": compiled_programs(["compare", *its, "--json"])}
    suite = None if args.no_tests or args.quick else test_suite()
    payload = {"environment": env, "blas": blas_kernel(), "iterations": iterations, "reps": reps,
               "samples": samples, "compiled": counts, "test_suite": suite, "targets": TARGETS}
    C.write_results("startup-quick" if args.quick else "startup", payload, markdown(payload))


def markdown(p: dict) -> str:
    s = p["samples"]
    wall = {name: C.stats(v["wall"]) for name, v in s.items()}
    floor = wall["floor"]["median"]
    rows = []
    for regime in REGIMES:
        numpy = s[f"numpy/{regime}"]["wall"]
        warm, cold = s[f"warm/{regime}"]["wall"], s[f"cold/{regime}"]["wall"]
        ratio_warm, ratio_cold = C.paired_ratio(warm, numpy), C.paired_ratio(cold, numpy)
        added = (wall[f"warm/{regime}"]["median"] - floor) / wall[f"numpy/{regime}"]["median"]
        rows.append([regime, C.fmt_range(wall[f"numpy/{regime}"], 2), C.fmt_range(wall[f"warm/{regime}"], 2),
                     f"{ratio_warm:.2f}× ({C.verdict(ratio_warm <= TARGETS['warm'])})",
                     C.fmt_range(wall[f"cold/{regime}"], 2),
                     f"{ratio_cold:.2f}× ({C.verdict(ratio_cold <= TARGETS['cold'])})",
                     f"{added:.2f}× ({C.verdict(added <= TARGETS['added'])})"])
    import_ratio = C.paired_ratio(s["import jaxreg"]["wall"], s["import jax"]["wall"])
    compare = wall["compare"]["median"]
    count_rows = [[name, str(len(c["programs"])), ", ".join(sorted(c["programs"])), f"{c['xla_seconds']:.2f}"]
                  for name, c in p["compiled"].items()]
    train_xla = p["compiled"]["train"]["xla_seconds"]
    lines = [
        "### bench_startup: time to result, whole processes",
        "",
        f"`python benchmarks/bench_startup.py` — {p['environment']['date']}. {C.environment_line(p['environment'])}. "
        f"NumPy's BLAS: {p['blas']}.",
        "",
        f"Seconds of wall time per process, median (min–max) of {p['reps']} interleaved rounds after a warm-up "
        f"round; {p['iterations']} iterations of the textbook's run (`[2, 20, 3, 1]`, lr 0.3) on its dataset. "
        "NumPy: the course's `model()` loop as a process (`benchmarks/course_numpy.py`, float64). jaxreg: "
        "`jaxreg train --data …` (float32), warm = programs loaded from the compilation cache, cold = "
        "`JAXREG_CACHE_DIR=` (every program compiled). × NumPy: paired per round. Added: (jaxreg warm − the "
        f"bare JAX process, {C.fmt_range(wall['floor'], 2)} s) / NumPy.",
        "",
        C.table(["run", "NumPy process", "jaxreg warm", "× NumPy (≤ 0.9)", "jaxreg cold", "× NumPy (≤ 1.3)",
                 "added / NumPy (≤ 0.3)"], rows),
        "",
        f"- `jaxreg compare` (`make demo`: three runs and the figure), warm: {C.fmt_range(wall['compare'], 2)} s "
        f"({C.verdict(compare <= TARGETS['compare'])}, target ≤ 3 s).",
        f"- `python -c \"import jaxreg\"` {C.fmt_range(wall['import jaxreg'], 3)} s vs `import jax` "
        f"{C.fmt_range(wall['import jax'], 3)} s: {import_ratio:.2f}× ({C.verdict(import_ratio <= TARGETS['import'])},"
        " target ≤ 1.2×; `import jaxreg` loads its modules on first use).",
        "",
        "Programs compiled with no cache (`JAXREG_CACHE_DIR=`), counted from JAX's monitoring events, and their "
        f"XLA compile seconds, median of 3 processes (train: {train_xla:.2f} s, "
        f"{C.verdict(train_xla <= TARGETS['xla_compile'])}, "
        "target ≤ 0.6 s; count targets: train ≤ 4, compare ≤ 6):",
        "",
        C.table(["command", "programs", "which", "XLA compile s"], count_rows),
    ]
    if p["test_suite"]:
        t = p["test_suite"]
        lines += ["", f"- Test suite (`python -m pytest -q`, as `make test` runs it, compilation cache "
                  f"{'warm' if t['warm_cache'] else 'cold'}): {t['wall']:.0f} s wall, {t['cpu']:.0f} s CPU "
                  f"({C.verdict(t['wall'] <= TARGETS['tests'])}, target ≤ 120 s warm)."]
    lines += ["", NOTES]
    return "\n".join(lines)


NOTES = """\
**What limits it.** A warm `jaxreg train` is the bare JAX process (Python, `import jax`: ~0.9 s
here, which no library code can remove) plus about half a second: importing optax and jaxreg,
tracing and lowering the three programs (JAX traces a program to find it in the cache), loading
them, and the run itself (~0.2 s for 30000 iterations). Cold, XLA compiles the three programs:
initialisation (every layer's weights in one Threefry kernel), the 1000-step training chunk
and the evaluation. The NumPy loop spends its time in ~40 small NumPy calls per iteration,
and with dropout in reseeding the global generator and drawing masks every iteration.
"""


if __name__ == "__main__":
    main()
