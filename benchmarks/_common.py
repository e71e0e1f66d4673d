"""Plumbing shared by the benchmark scripts: environment, data, interleaved timing, results.

Every script measures its competitors interleaved in one process (A B C A B C ...), after
a warm-up call of each, and reports the median and min-max of the repetitions; wall-clock
seconds are what the tables show, the process CPU seconds of each repetition are kept in
the JSON (on a shared machine they tell contention from slowness). Results go to
``benchmarks/results/<name>.json`` and ``<name>.md``.
"""

from __future__ import annotations

import os

PIN_ENV = "JAXREG_BENCH_ONE_CORE"  # set by the scripts for their one-core subprocess runs
if os.environ.get(PIN_ENV) and hasattr(os, "sched_setaffinity"):
    # Before jax starts: XLA sizes its thread pool from the CPUs this process may use.
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"
sys.path.insert(0, str(BENCH_DIR.parent))  # the checkout's jaxreg, when run without installing it

from jaxreg import data as jdata  # noqa: E402
from jaxreg import reference  # noqa: E402
from jaxreg.files import atomic_open  # noqa: E402

OPTIONAL = ("torch", "equinox", "flax")


# ----------------------------------------------------------------------------- environment


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(dtype: str = "float32") -> dict:
    """What the figures depend on: devices, versions, dtype, threads, load."""
    devices = jax.devices()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "platform": devices[0].platform,
        "device": devices[0].device_kind,
        "device_count": len(devices),
        "cpu": cpu_name(),
        "cpu_cores": cores,
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else jax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "dtype": dtype,
        # Threads: XLA's defaults unless these say otherwise (nothing here sets them).
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", ""),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def environment_line(env: dict) -> str:
    device = env["device"] if env["platform"] != "cpu" else f"CPU ({env['cpu']}, {env['cpu_cores']} cores)"
    return (
        f"{device} x {env['device_count']} device(s); jax {env['jax']}, numpy {env['numpy']}, "
        f"Python {env['python']}; {env['dtype']}; XLA_FLAGS={env['XLA_FLAGS'] or '(unset)'}; "
        f"load average at start {env['load_average']}"
    )


def optional_note() -> dict[str, str]:
    """For each optional competitor, '' when importable, else why it is skipped."""
    notes = {}
    for name in OPTIONAL:
        try:
            __import__(name)
            notes[name] = ""
        except Exception as err:  # not installed, or broken: skipped, with the reason
            notes[name] = f"not installed ({type(err).__name__}): skipped"
    return notes


# ----------------------------------------------------------------------------- data


def textbook_data():
    """The textbook's dataset (``$JAXREG_DATA`` or ``shared/data`` beside the checkout), else
    the built-in one. Returns ``(X, Y, X_test, Y_test, description)`` as float64 NumPy."""
    try:
        d = jdata.load_course()
        return d.X, d.Y, d.X_test, d.Y_test, f"the textbook's dataset ({d.X.shape[1]} training examples)"
    except (FileNotFoundError, ValueError) as err:
        print(f"note: {err}; using the built-in dataset instead", file=sys.stderr)
    for name in ("default", "moons"):  # "default" is the built-in lesson; moons if it is unavailable
        try:
            d = jdata.make_dataset(name, n_train=211)
            return d.X, d.Y, d.X_test, d.Y_test, f"the built-in {name!r} dataset (m = {d.X.shape[1]})"
        except NotImplementedError:
            continue
    raise RuntimeError("no dataset available")


# ----------------------------------------------------------------------------- the NumPy reference


def numpy_reference(
    X, Y, layer_dims, iterations: int, learning_rate: float, lambd: float = 0.0, keep_prob: float = 1.0
) -> dict:
    """The textbook's training loop on ``jaxreg.reference`` (float64): each iteration the
    forward pass and the cost (the textbook computes it every iteration), the backprop (the
    reference's ``backward`` runs its own forward pass) and the update; with dropout the
    textbook's masks, drawn anew every iteration as its forward pass does
    (``np.random.seed(1)`` and ``rand``). Returns the parameters."""
    params = reference.init_params(layer_dims)
    L, m = len(layer_dims) - 1, X.shape[1]
    for _ in range(iterations):
        masks = reference.course_masks(layer_dims, m, keep_prob) if keep_prob < 1 else None
        AL, _ = reference.forward(params, X, masks=masks, keep_prob=keep_prob)
        with np.errstate(divide="ignore", invalid="ignore"):  # log(0) * 0: the textbook's nansum drops it
            reference.cost(AL, Y, params, lambd)
        grads = reference.backward(params, X, Y, lambd=lambd, masks=masks, keep_prob=keep_prob)
        for l in range(1, L + 1):
            params[f"W{l}"] = params[f"W{l}"] - learning_rate * grads[f"dW{l}"]
            params[f"b{l}"] = params[f"b{l}"] - learning_rate * grads[f"db{l}"]
    return params


# ----------------------------------------------------------------------------- timing


def block(x):
    """Wait for JAX results (NumPy ones are ready)."""
    return jax.block_until_ready(x)


def interleaved(competitors: dict[str, Callable[[], object]], reps: int, warmup: int = 1) -> dict:
    """Run each competitor ``warmup`` times, then ``reps`` rounds of A B C ...; returns
    ``{name: {"wall": [...], "cpu": [...]}}`` in seconds per call."""
    for fn in competitors.values():
        for _ in range(warmup):
            block(fn())
    samples = {name: {"wall": [], "cpu": []} for name in competitors}
    for _ in range(reps):
        for name, fn in competitors.items():
            c0, t0 = time.process_time(), time.perf_counter()
            block(fn())
            samples[name]["wall"].append(time.perf_counter() - t0)
            samples[name]["cpu"].append(time.process_time() - c0)
    return samples


def stats(values, scale: float = 1.0) -> dict:
    """Median, min and max of ``values * scale``."""
    v = [x * scale for x in values]
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def fmt_range(s: dict, digits: int = 1) -> str:
    """``median (min-max)``."""
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def paired_ratio(a: list[float], b: list[float], scale: float = 1.0) -> float:
    """Median over repetitions of ``a[i] / b[i] * scale``: samples taken side by side in
    the same round, so a slow spell of the machine (other work) cancels out."""
    return statistics.median(x / y * scale for x, y in zip(a, b, strict=True))


def fmt_ratio(x: float) -> str:
    """``12×``, ``3.4×``, ``0.62×``."""
    return f"{x:.0f}×" if x >= 10 else f"{x:.1f}×" if x >= 1 else f"{x:.2f}×"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def device_peak_mb() -> float | None:
    """Peak device memory in use, MiB, where the device reports it (GPUs), else None."""
    try:
        s = jax.devices()[0].memory_stats() or {}
    except Exception:  # backends without memory statistics
        return None
    peak = s.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20


# ----------------------------------------------------------------------------- results


def write_results(name: str, payload: dict, markdown: str) -> None:
    """``results/<name>.json`` and ``results/<name>.md``, each replaced atomically."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    with atomic_open(RESULTS / f"{name}.json", "w") as f:
        json.dump(payload, f, indent=1, default=_json_default)
        f.write("\n")
    with atomic_open(RESULTS / f"{name}.md", "w") as f:
        f.write(markdown.rstrip() + "\n")
    print(markdown)


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def command_line() -> str:
    """How this script was run, relative to the checkout (no absolute paths of this machine)."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(BENCH_DIR.parent)
    except ValueError:
        script = Path(script.name)
    return " ".join(["python", script.as_posix(), *sys.argv[1:]])


def one_core_run(script: str, args: list[str], timeout: float = 600) -> dict | None:
    """Run ``benchmarks/<script> <args>`` in a subprocess restricted to one CPU (XLA then
    runs one thread) and return the JSON it prints last; None if it failed."""
    env = {**os.environ, PIN_ENV: "1"}
    try:
        out = subprocess.run(
            [sys.executable, str(BENCH_DIR / script), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout
        return json.loads(out.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as err:
        print(f"note: the one-core run of {script} failed: {err}", file=sys.stderr)
        return None


def clear_compiled() -> None:
    """Forget compiled programs, so that the next compilation is measured, not recalled."""
    jax.clear_caches()
