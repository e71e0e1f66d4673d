"""Run every benchmark, each in its own process, and rewrite ``benchmarks/README.md``
with the tables they wrote to ``benchmarks/results/``.

    python benchmarks/run_all.py            # what `make bench` runs
    python benchmarks/run_all.py --quick    # a smoke test: writes results/*-quick.*, not the README
    python benchmarks/run_all.py --readme   # only rewrite the README from results/ (after one script)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
SCRIPTS = ("bench_startup", "bench_train", "bench_sweep", "bench_scale", "bench_gradcheck", "bench_library")
RESULT_NAMES = {
    "bench_startup": "startup",
    "bench_train": "train",
    "bench_sweep": "sweep",
    "bench_scale": "scale",
    "bench_gradcheck": "gradcheck",
    "bench_library": "library",
}

HEADER = """\
# Benchmarks

`make bench` (that is, `python benchmarks/run_all.py`) runs the scripts below, each in
its own process, and rewrites this file with the tables they write to `results/` (JSON with
every sample beside each table). Each script runs on its own too (`python
benchmarks/bench_train.py`, `--quick` for a smoke test), and runs unchanged on a GPU: the
device, its count and its measured matmul peak are reported the same way.

Method: competitors run interleaved in one process (A B C A B C …) after a warm-up call each;
tables give the median and min–max of the repetitions and the ratio to the NumPy reference
measured in the same run. Threads are XLA's defaults (nothing sets them); where a figure is
also given for *one core*, that run is a separate process restricted to one CPU, where XLA
runs a single thread. On a machine shared with other work the one-core and CPU-time figures
help tell contention from cost.
"""


def write_readme(durations: dict[str, float]) -> None:
    sections = []
    for script in SCRIPTS:
        md = BENCH_DIR / "results" / f"{RESULT_NAMES[script]}.md"
        sections.append(md.read_text() if md.exists() else f"### {script}\n\n(no results: it failed)\n")
    total = sum(durations.values())
    timing = (
        f"Latest full run: `make bench` took {total / 60:.1f} minutes ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in durations.items())
        + ")."
    )
    history = BENCH_DIR / "history.md"  # kept by hand: what changed, and the figures before
    if history.exists():
        sections.append(history.read_text())
    readme = "\n\n".join([HEADER.rstrip(), timing, *[s.rstrip() for s in sections]]) + "\n"
    (BENCH_DIR / "README.md").write_text(readme, encoding="utf-8")
    print(f"wrote {BENCH_DIR / 'README.md'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: small sizes, few repetitions")
    parser.add_argument("--readme", action="store_true", help="only rewrite README.md from results/")
    args = parser.parse_args(argv)
    timings = BENCH_DIR / "results" / "run_all.json"
    if args.readme:
        write_readme(json.loads(timings.read_text())["durations"])
        return 0
    extra = ["--quick"] if args.quick else []
    t_all = time.perf_counter()
    durations, failed = {}, []
    for script in SCRIPTS:
        print(f"== {script} ==", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run([sys.executable, str(BENCH_DIR / f"{script}.py"), *extra]).returncode
        durations[script] = time.perf_counter() - t0
        if rc != 0:
            failed.append(script)
            print(f"{script} failed (exit status {rc})", file=sys.stderr)
    total = time.perf_counter() - t_all
    print(
        "durations: " + ", ".join(f"{k} {v:.0f} s" for k, v in durations.items()) + f"; total {total:.0f} s"
    )
    if args.quick:
        return 1 if failed else 0
    timings.write_text(json.dumps({"durations": durations}, indent=1) + "\n", encoding="utf-8")
    write_readme(durations)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
