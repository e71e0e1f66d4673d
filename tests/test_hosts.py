"""Several processes on JAX's own runtime: 2 local processes x 2 host devices each run
`jaxreg sweep` and `jaxreg train --data-parallel`, joined by jax.distributed (CPU
collectives), and get what one process gets (the same command in the test's own process,
one device); only the first prints and writes."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from jaxreg import checkpoint
from jaxreg.cli import main

QUICK = ["--iterations", "300", "--log-every", "100", "--layers", "6,3", "--precision", "float64", "--json"]
TOL = 1e-12


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_npz(tmp_path, m=48):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(m, 2))
    y = (X[:, :1] * X[:, 1:] + 0.3 * rng.normal(size=(m, 1)) > 0).astype(np.uint8)
    path = tmp_path / "data.npz"
    np.savez(path, X=X, y=y, Xval=X[:20] + 0.1, yval=y[:20])
    return path


def run_processes(argv, tmp_path, processes: int, devices_each: int):
    """``jaxreg ARGV`` in ``processes`` processes on localhost (``{i}`` in an argument: the process's
    index); each one's (stdout, stderr, exit code)."""
    # the suite's compilation cache (conftest's JAXREG_CACHE_DIR): a warm run loads the programs
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_each}"}
    port = free_port()
    procs = []
    for i in range(processes):
        hosts = [] if processes == 1 else ["--coordinator", f"127.0.0.1:{port}", "--num-processes",
                                           str(processes), "--process-id", str(i)]
        mine = [a.replace("{i}", str(i)) for a in argv]
        procs.append(subprocess.Popen([sys.executable, "-m", "jaxreg.cli", *mine, *hosts], cwd=tmp_path, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        return [(*p.communicate(timeout=300), p.returncode) for p in procs]
    finally:
        for p in procs:
            p.kill()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_npz(tmp_path_factory.mktemp("hosts"))


def one_process(argv, capsys) -> dict:
    """``jaxreg ARGV --json`` in this process (one process, one device): its JSON report."""
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_a_sweep_over_two_processes_equals_one_process(data, tmp_path, capsys):
    argv = ["sweep", "--data", str(data), *QUICK, "--lambd", "0", "0.4", "--keep-prob", "1", "0.8", "--seeds", "2",
            "--folds", "2"]
    runs = run_processes([*argv, "--out", "out{i}"], tmp_path, 2, 2)
    (out0, err0, code0), (out1, err1, code1) = runs
    assert code0 == code1 == 0, err0 + err1
    assert out1 == "" and "Traceback" not in err1 and not (tmp_path / "out1").exists()  # process 1: nothing
    alone, shared = one_process([*argv, "--out", str(tmp_path / "alone")], capsys), json.loads(out0)
    assert shared["devices"] == 4 and alone["devices"] == 1
    assert json.loads((tmp_path / "out0" / "sweep.json").read_text()) == shared
    for a, b in zip(alone["results"], shared["results"], strict=True):
        assert (a["lambd"], a["keep_prob"], a["seed"], a["fold"]) == (b["lambd"], b["keep_prob"], b["seed"], b["fold"])
        assert a["train_accuracy"] == b["train_accuracy"] and a["valid_accuracy"] == b["valid_accuracy"]
        np.testing.assert_allclose([c for _, c in a["costs"]], [c for _, c in b["costs"]], rtol=0, atol=TOL)
        assert a["valid_cost"] == pytest.approx(b["valid_cost"], rel=0, abs=TOL)
    assert [(r["lambd"], r["keep_prob"]) for r in shared["ranking"]] == [
        (r["lambd"], r["keep_prob"]) for r in alone["ranking"]]
    assert shared["refit"]["test_accuracy"] == alone["refit"]["test_accuracy"]


def test_data_parallel_training_over_two_processes_equals_one_process(data, tmp_path, capsys):
    argv = ["train", "--data", str(data), *QUICK, "--lambd", "0.3", "--keep-prob", "0.9,0.6", "--seed", "5"]
    runs = run_processes([*argv, "--data-parallel", "--checkpoint", "run{i}.npz", "--save", "params{i}.npz"],
                         tmp_path, 2, 2)
    (out0, err0, code0), (out1, err1, code1) = runs
    assert code0 == code1 == 0, err0 + err1
    assert out1 == "" and "Traceback" not in err1
    assert not (tmp_path / "run1.npz").exists() and not (tmp_path / "params1.npz").exists()
    alone, shared = one_process(argv, capsys), json.loads(out0)
    assert shared["train_accuracy"] == alone["train_accuracy"] and shared["test_accuracy"] == alone["test_accuracy"]
    np.testing.assert_allclose([c for _, c in shared["costs"]], [c for _, c in alone["costs"]], rtol=0, atol=TOL)
    assert shared["final_cost"] == pytest.approx(alone["final_cost"], rel=0, abs=TOL)
    tree, meta = checkpoint.load(tmp_path / "run0.npz")  # written by process 0, whole
    assert int(tree[".step"]) == 300 and sorted(checkpoint.load_params(tmp_path / "params0.npz")) == [
        "W1", "W2", "W3", "b1", "b2", "b3"]


def test_distributed_outside_a_cluster_is_one_line(tmp_path):
    (out, err, code), = run_processes(["sweep", "--distributed", "--iterations", "10"], tmp_path, 1, 1)
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err, err


@pytest.mark.parametrize("process_id", [-1, 2])
def test_a_process_index_outside_the_run_is_refused(process_id):
    from jaxreg import hosts
    from jaxreg.errors import ConfigError

    with pytest.raises(ConfigError, match=f"process_id: got {process_id}, expected 0 to 1"):
        hosts.initialize("localhost:1", 2, process_id)
