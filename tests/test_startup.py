"""Time to result: the few programs a command compiles, the persistent cache, lazy imports.

Each case runs the command in a fresh process, as a user would: compiled programs are
counted from JAX's own monitoring events (``jaxreg.compilation.CompileClock``)."""

import json
import os
import subprocess
import sys
from typing import NamedTuple

import pytest

COUNTED = """
import json, sys
from jaxreg.compilation import CompileClock
clock = CompileClock()
from jaxreg.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "programs": clock.programs, "hits": clock.cache_hits}))
"""
QUICK = ["--iterations", "2000", "--log-every", "1000", "--json"]


class Counted(NamedTuple):
    code: int  # the command's exit status
    programs: list  # the names of the programs it compiled
    hits: int  # programs loaded from the persistent cache
    stderr: str
    report: dict | None  # what the command printed with --json


def counted(*argv, cache_dir="", cwd=None) -> Counted:
    """Run ``jaxreg ARGV`` in a fresh process (``cache_dir``: its compilation cache, "" none)."""
    env = {**os.environ, "JAXREG_CACHE_DIR": str(cache_dir)}
    done = subprocess.run([sys.executable, "-c", COUNTED, *argv], capture_output=True, text=True, env=env,
                          timeout=300, cwd=cwd)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    counts = json.loads(lines[-1])
    report = json.loads(lines[-2]) if "--json" in argv else None
    return Counted(counts["code"], counts["programs"], counts["hits"], done.stderr, report)


@pytest.fixture(scope="module")
def train_twice(tmp_path_factory):
    """``jaxreg train --keep-prob 0.86`` twice, in fresh processes, with a new cache folder: the first
    finds it empty and compiles every program, the second loads them. Three tests read these two runs."""
    folder = tmp_path_factory.mktemp("train_twice")
    cache = folder / "cache"
    first = counted("train", *QUICK, "--keep-prob", "0.86", cache_dir=cache, cwd=folder)
    again = counted("train", *QUICK, "--keep-prob", "0.86", cache_dir=cache, cwd=folder)
    return first, again, cache


def test_train_compiles_init_chunk_and_evaluation_only(train_twice):
    first, _, _ = train_twice
    assert first.code == 0 and first.hits == 0
    # No eager op-by-op JAX: initialisation, the training chunk and the evaluation, one program each.
    assert sorted(first.programs) == ["jit(_evaluate)", "jit(_init_state)", "jit(_run_chunk)"], first.programs


def test_compare_shares_programs_between_its_runs(tmp_path):
    # programs compiled or loaded: the suite's cache (a warm run loads them) changes none of the count
    code, programs, _, _, _ = counted("compare", *QUICK, "--plot", str(tmp_path / "c.png"),
                                      cache_dir=os.environ.get("JAXREG_CACHE_DIR", ""), cwd=tmp_path)
    assert code == 0
    # One init and one evaluation for the three runs, one training program with dropout and one
    # without (no regularization and L2 share it: lambd is traced), and the figure's grid.
    assert sorted(programs) == ["jit(_evaluate)", "jit(_init_state)", "jit(_predict_proba)", "jit(_run_chunk)",
                                "jit(_run_chunk)"], programs


def test_a_repeated_command_loads_every_program_from_the_cache(train_twice):
    first, again, cache = train_twice
    assert first.hits == 0 and len(first.programs) == 3
    assert again.programs == first.programs and again.hits == len(again.programs)  # every one a hit, none compiled
    assert any(cache.iterdir())


def test_an_unwritable_cache_never_fails_a_command(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, programs, hits, err, _ = counted("train", *QUICK, cache_dir=blocker / "cache", cwd=tmp_path)
    assert code == 0 and hits == 0 and len(programs) == 3
    assert err.count("\n") == 1 and "warning: compilation cache off" in err and str(blocker) in err


IMPORTS = """
import json, sys
from jaxreg.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    try:
        code = main(argv)
    except SystemExit as exit:
        code = exit.code
    results.append([code, [m for m in ("jax", "matplotlib", "scipy", "tqdm", "optax") if m in sys.modules]])
print(json.dumps(results))
"""
ANSWERED = {
    "help": (["--help"], 0),
    "version": (["--version"], 0),
    "train_help": (["train", "--help"], 0),
    "keep_prob": (["train", "--keep-prob", "2"], 2),
    "seed": (["train", "--seed", "-1"], 2),
    "layers": (["compare", "--layers", "20,0"], 2),
    "seeds": (["sweep", "--seeds", "0"], 2),
    "dataset": (["train", "--dataset", "mnist"], 2),
}


@pytest.fixture(scope="module")
def answers():
    """Every case of ANSWERED in one fresh process, one after the other: each one's exit status and the
    heavy modules loaded by then (a module one case loads shows in every later case: the first names it)."""
    cases = json.dumps([argv for argv, _ in ANSWERED.values()])
    done = subprocess.run([sys.executable, "-c", IMPORTS, cases], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return dict(zip(ANSWERED, json.loads(done.stdout.strip().splitlines()[-1]), strict=True))


@pytest.mark.parametrize("case", ANSWERED)
def test_help_and_bad_input_answer_before_jax_starts(case, answers):
    code, heavy = answers[case]
    assert (code, heavy) == (ANSWERED[case][1], []), ANSWERED[case][0]


def test_import_jaxreg_imports_no_jax():
    done = subprocess.run([sys.executable, "-c", "import sys, jaxreg; print('jax' in sys.modules)"],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False"


def test_compile_time_is_reported_apart_from_run_time(train_twice):
    report = train_twice[0].report  # the run that compiled
    assert report["compile_seconds"] > 0 and report["run_seconds"] > 0
    assert report["compile_seconds"] + report["run_seconds"] == pytest.approx(report["seconds"], abs=2e-3)
