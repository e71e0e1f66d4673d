"""Time to result: the few programs a command compiles, the persistent cache, lazy imports.

Each case runs the command in a fresh process, as a user would: compiled programs are
counted from JAX's own monitoring events (``jaxreg.compilation.CompileClock``)."""

import json
import os
import subprocess
import sys

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


def counted(*argv, cache_dir="", cwd=None):
    """Run ``jaxreg ARGV`` in a fresh process: (exit code, compiled program names, cache hits, stderr)."""
    env = {**os.environ, "JAXREG_CACHE_DIR": str(cache_dir)}
    done = subprocess.run([sys.executable, "-c", COUNTED, *argv], capture_output=True, text=True, env=env,
                          timeout=300, cwd=cwd)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["code"], report["programs"], report["hits"], done.stderr


def test_train_compiles_init_chunk_and_evaluation_only(tmp_path):
    code, programs, hits, _ = counted("train", *QUICK, "--keep-prob", "0.86", cwd=tmp_path)
    assert code == 0 and hits == 0
    # No eager op-by-op JAX: initialisation, the training chunk and the evaluation, one program each.
    assert sorted(programs) == ["jit(_evaluate)", "jit(_init_state)", "jit(_run_chunk)"], programs


def test_compare_shares_programs_between_its_runs(tmp_path):
    code, programs, _, _ = counted("compare", *QUICK, "--plot", str(tmp_path / "c.png"), cwd=tmp_path)
    assert code == 0
    # One init and one evaluation for the three runs, one training program with dropout and one
    # without (no regularization and L2 share it: lambd is traced), and the figure's grid.
    assert sorted(programs) == ["jit(_evaluate)", "jit(_init_state)", "jit(_predict_proba)", "jit(_run_chunk)",
                                "jit(_run_chunk)"], programs


def test_a_repeated_command_loads_every_program_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    first = counted("train", *QUICK, cache_dir=cache, cwd=tmp_path)
    again = counted("train", *QUICK, cache_dir=cache, cwd=tmp_path)
    assert first[2] == 0 and len(first[1]) == 3
    assert again[1] == first[1] and again[2] == len(again[1])  # every program a cache hit, none compiled
    assert any(cache.iterdir())


def test_an_unwritable_cache_never_fails_a_command(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, programs, hits, err = counted("train", *QUICK, cache_dir=blocker / "cache", cwd=tmp_path)
    assert code == 0 and hits == 0 and len(programs) == 3
    assert err.count("\n") == 1 and "warning: compilation cache off" in err and str(blocker) in err


IMPORTS = """
import sys
from jaxreg.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
heavy = [m for m in ("jax", "matplotlib", "scipy", "tqdm", "optax") if m in sys.modules]
print(code, ",".join(heavy) or "-")
"""


@pytest.mark.parametrize("argv,code", [
    (["--help"], 0),
    (["--version"], 0),
    (["train", "--help"], 0),
    (["train", "--keep-prob", "2"], 2),
    (["train", "--seed", "-1"], 2),
    (["compare", "--layers", "20,0"], 2),
    (["sweep", "--seeds", "0"], 2),
    (["train", "--dataset", "mnist"], 2),
], ids=["help", "version", "train_help", "keep_prob", "seed", "layers", "seeds", "dataset"])
def test_help_and_bad_input_answer_before_jax_starts(argv, code):
    done = subprocess.run([sys.executable, "-c", IMPORTS, *argv], capture_output=True, text=True, timeout=60)
    assert done.stdout.split()[-2:] == [str(code), "-"], done.stdout + done.stderr


def test_import_jaxreg_imports_no_jax():
    done = subprocess.run([sys.executable, "-c", "import sys, jaxreg; print('jax' in sys.modules)"],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False"


def test_compile_time_is_reported_apart_from_run_time(tmp_path):
    done = subprocess.run([sys.executable, "-m", "jaxreg.cli", "train", *QUICK], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env={**os.environ, "JAXREG_CACHE_DIR": ""})
    report = json.loads(done.stdout)
    assert report["compile_seconds"] > 0 and report["run_seconds"] > 0
    assert report["compile_seconds"] + report["run_seconds"] == pytest.approx(report["seconds"], abs=2e-3)
