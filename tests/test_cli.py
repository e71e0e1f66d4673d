"""`jaxreg train` and `jaxreg compare`: results, files, interruption, bad input."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from running import Running

from jaxreg import checkpoint
from jaxreg.cli import main
from jaxreg.training import train

QUICK = ["--iterations", "300", "--log-every", "100", "--layers", "6,3"]


def run_json(capsys, *argv):
    assert main(list(argv) + ["--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # one JSON object and nothing else
    return json.loads(out)


def write_npz(tmp_path, seed=0, m=80):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, 2))
    y = (X[:, :1] * X[:, 1:] > 0).astype(np.uint8)
    path = tmp_path / "data.npz"
    np.savez(path, X=X, y=y, Xval=X[:40] + 0.1, yval=y[:40])
    return path, X.T, y.T.astype(np.float64)


def test_train_json_equals_the_library(tmp_path, capsys):
    path, X, Y = write_npz(tmp_path)
    report = run_json(capsys, "train", "--data", str(path), *QUICK, "--lambd", "0.3", "--keep-prob", "0.8,0.9",
                      "--seed", "4", "--precision", "float64")
    direct = train(X, Y, [2, 6, 3, 1], seed=4, lambd=0.3, keep_prob=(0.8, 0.9), iterations=300, log_every=100,
                   dtype="float64", X_test=X[:, :40] + 0.1, Y_test=Y[:, :40])
    assert report["train_accuracy"] == direct.train_accuracy
    assert report["test_accuracy"] == direct.test_accuracy
    assert report["costs"] == [[int(i), float(c)] for i, c in zip(direct.iterations, direct.costs, strict=True)]
    assert report["config"]["keep_prob"] == [0.8, 0.9] and report["config"]["lambd"] == 0.3
    assert report["final_cost"] == direct.final_cost


def test_train_writes_params_and_figure(tmp_path, capsys):
    path, X, _ = write_npz(tmp_path)
    params_path, figure = tmp_path / "params.npz", tmp_path / "fig" / "run.png"
    assert main(["train", "--data", str(path), *QUICK, "--save", str(params_path), "--plot", str(figure)]) == 0
    with np.load(params_path, allow_pickle=False) as saved:
        assert sorted(saved.files) == ["W1", "W2", "W3", "b1", "b2", "b3"]
        assert saved["W1"].shape == (6, 2)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "train accuracy" in out and str(figure) in out


def test_train_without_test_set_reports_null(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = np.column_stack([rng.normal(size=(30, 2)), np.arange(30) % 2])
    path = tmp_path / "train.csv"
    np.savetxt(path, rows, delimiter=",")
    report = run_json(capsys, "train", "--data", str(path), *QUICK)
    assert report["test_accuracy"] is None


def test_resume_through_the_cli_is_bitwise_identical(tmp_path, capsys):
    path, _, _ = write_npz(tmp_path)
    common = ["train", "--data", str(path), "--layers", "6,3", "--precision", "float64", "--log-every", "100",
              "--keep-prob", "0.8", "--seed", "1"]
    whole, part = tmp_path / "whole.npz", tmp_path / "part.npz"
    assert main(common + ["--iterations", "600", "--save", str(whole)]) == 0
    ckpt = str(tmp_path / "ckpt.npz")
    assert main(common + ["--iterations", "250", "--checkpoint", ckpt]) == 0
    assert main(common + ["--iterations", "600", "--checkpoint", ckpt, "--resume", "--save", str(part)]) == 0
    capsys.readouterr()
    a, b = checkpoint.load_params(whole), checkpoint.load_params(part)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_interrupted_run_keeps_its_last_checkpoint(tmp_path):
    """SIGTERM between two saves (SIGINT there: test_reliability's next-chunk test)."""
    path, _, _ = write_npz(tmp_path)
    ckpt = tmp_path / "ckpt.npz"
    command = Running(["train", "--data", path, "--iterations", "100000000", "--log-every", "2000", "--checkpoint",
                       ckpt, "--checkpoint-every", "2000"], tmp_path)
    try:
        command.wait_for_line("^jaxreg: checkpoint written at iteration ")  # waits for the state, not a time
        assert command.send(signal.SIGTERM)
    finally:
        status, err = command.finish(60)
    assert status == 130
    assert "interrupted" in err and "Traceback" not in err
    tree, meta = checkpoint.load(ckpt)
    assert int(tree[".step"]) % 2000 == 0 and int(tree[".step"]) > 0
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_compare_trains_three_regimes(tmp_path, capsys):
    path, _, _ = write_npz(tmp_path)
    figure = tmp_path / "compare.png"
    report = run_json(capsys, "compare", "--data", str(path), *QUICK, "--plot", str(figure))
    names = list(report["runs"])
    assert names == ["no regularization", "L2, lambd 0.7", "dropout, keep_prob 0.86"]
    configs = [report["runs"][n]["config"] for n in names]
    assert [(c["lambd"], c["keep_prob"]) for c in configs] == [(0.0, [1.0, 1.0]), (0.7, [1.0, 1.0]),
                                                               (0.0, [0.86, 0.86])]
    assert figure.read_bytes()[:4] == b"\x89PNG"
    assert main(["compare", "--data", str(path), *QUICK, "--plot", str(figure)]) == 0
    table = capsys.readouterr().out
    assert "train acc" in table and "dropout, keep_prob 0.86" in table


BAD_ARGS = {
    "keep_prob": (["train", "--keep-prob", "1.5"], "--keep-prob: got 1.5"),
    "keep_prob_text": (["train", "--keep-prob", "high"], "--keep-prob"),
    "layers": (["train", "--layers", "20,0"], "positive"),
    "lambd": (["train", "--lambd", "-1"], "--lambd: got -1,"),
    "learning_rate": (["train", "--learning-rate", "0"], "--learning-rate: got 0"),
    "iterations": (["train", "--iterations", "-3"], "--iterations: got -3"),
    "optimizer": (["train", "--optimizer", "lbfgs"], "--optimizer"),
    "missing_file": (["train", "--data", "no/such/file.npz"], "no/such/file.npz"),
    "dataset": (["compare", "--dataset", "mnist"], "mnist"),
    "resume_alone": (["train", "--resume"], "--checkpoint"),
    "unknown_flag": (["train", "--dropout", "0.5"], "unrecognized arguments"),
}


@pytest.mark.parametrize("argv,message", BAD_ARGS.values(), ids=BAD_ARGS.keys())
def test_bad_input_exits_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and message in captured.err


def test_bad_data_file_is_named(tmp_path, capsys):
    path = tmp_path / "broken.npz"
    np.savez(path, X=np.zeros((5, 2)))
    assert main(["train", "--data", str(path)]) == 2
    assert "broken.npz" in capsys.readouterr().err


def test_divergence_exits_1_without_traceback(tmp_path, capsys):
    path, _, _ = write_npz(tmp_path)
    assert main(["train", "--data", str(path), "--learning-rate", "3000", "--lambd", "2", *QUICK]) == 1
    err = capsys.readouterr().err
    assert "diverged at iteration" in err and err.count("\n") == 1


def test_console_script_runs_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "jaxreg.cli", "train", "--keep-prob", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "--keep-prob" in proc.stderr
