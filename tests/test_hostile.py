"""Reliability, third round (issue 24): every input protected, resume means the same examples, exit 2
writes nothing, streams and the environment never make a traceback or a wrong status. One test per
class of failure, each with the issue's example and variants."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxreg import checkpoint
from jaxreg.cli import main
from jaxreg.errors import ConfigError, TrainingDiverged
from jaxreg.sweep import sweep
from jaxreg.training import train

QUICK = ["--iterations", "20", "--log-every", "10", "--no-cache"]


def csv(folder, name, m=60, n_x=2, smaller=None, seed=0):
    """A CSV of ``m`` examples (label last); ``smaller``: how many of them are of class 1."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, n_x))
    y = (X[:, 0] > 0).astype(int) if smaller is None else (np.arange(m) < smaller).astype(int)
    path = folder / name
    np.savetxt(path, np.column_stack([X, y]), delimiter=",")
    return path


def digest(folder) -> dict:
    """Every file under ``folder`` and its sha256."""
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*")
            if p.is_file()}


def refused(capsys, argv, message, folder):
    """``jaxreg ARGV`` exits 2 with one line naming ``message``, and writes nothing in ``folder``."""
    before = digest(folder)
    assert main(list(map(str, argv))) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("training:")]
    assert len(err) == 1 and message in err[0], err
    assert digest(folder) == before


def cli(*argv, env=None, stdin=None, **kwargs):
    """``python -m jaxreg.cli ARGV`` in a fresh process (for streams and the environment)."""
    return subprocess.run([sys.executable, "-m", "jaxreg.cli", *map(str, argv)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})}, **kwargs)


def test_no_output_may_be_an_input(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    csv(tmp_path, "in.csv"), csv(tmp_path, "val.csv", m=20, seed=1)
    data = ["--data", "in.csv", "--validation-data", "val.csv", *QUICK]
    for output in (["--save", "val.csv"], ["--plot", "val.csv"], ["--checkpoint", "val.csv", "--overwrite"],
                   ["--save", "in.csv"]):
        refused(capsys, ["train", *data, *output], "is the same file as --", tmp_path)
    (tmp_path / "o").mkdir()
    csv(tmp_path / "o", "sweep.csv", m=20, seed=1)
    refused(capsys, ["sweep", "--data", "in.csv", "--validation-data", "o/sweep.csv", "--out", "o", *QUICK],
            "--out o/sweep.csv: is the same file as --validation-data o/sweep.csv", tmp_path)


def test_a_path_ending_in_a_slash_names_a_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--checkpoint", "ck.npz", *QUICK]) == 0
    capsys.readouterr()
    for argv in (["--checkpoint", "ck.npz/", "--resume"], ["--checkpoint", "ck.npz/"], ["--save", "newdir/"],
                 ["--plot", "figure.png/"], ["--save", "a.npz/."]):
        refused(capsys, ["train", *argv, *QUICK], "names a folder (it ends in ", tmp_path)
    csv(tmp_path, "in.csv")
    refused(capsys, ["train", "--data", "in.csv/", *QUICK], "in.csv/: names a folder", tmp_path)  # an input too
    assert not (tmp_path / "newdir").exists()


def test_resume_means_the_same_examples(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = ["train", "--checkpoint", "ck.npz", "--checkpoint-every", "10", "--no-cache"]
    assert main([*run, "--iterations", "20", "--validation-split", "0.2"]) == 0
    capsys.readouterr()
    more = [*run, "--iterations", "40", "--resume"]
    for other in (["--validation-split", "0.5"], ["--validation-split", "0.2", "--split-seed", "1"], []):
        refused(capsys, [*more, *other], "it was written for other training and validation examples", tmp_path)
    assert main([*more, "--validation-split", "0.2"]) == 0  # the same examples: it continues


def test_every_checkpoint_written_after_a_divergence_can_be_resumed(tmp_path):
    """The advice after a divergence (resume with a smaller learning rate), followed until it converges:
    every checkpoint on the way is one jaxreg reads, its history ascending."""
    X, Y = np.random.default_rng(0).normal(size=(2, 40)), (np.arange(40)[None] % 2).astype(float)
    path = tmp_path / "ck.npz"
    run = dict(lambd=10.0, iterations=30, log_every=1, checkpoint=path, checkpoint_every=2, dtype="float64")
    for rate in (1e8, 1e7, 1e6):
        with pytest.raises(TrainingDiverged):
            train(X, Y, [2, 4, 1], learning_rate=rate, resume=path.exists(), **run)
    result = train(X, Y, [2, 4, 1], learning_rate=0.1, resume=True, **run)
    assert result.iterations.tolist() == list(range(30)) and int(result.state.step) == 30


def test_exit_2_writes_nothing_and_exit_0_writes_everything(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    syncs, fsync = [], os.fsync

    def full_disk(fd):  # the second file written finds the disk full
        syncs.append(fd)
        if len(syncs) == 2:
            raise OSError(28, "No space left on device")
        fsync(fd)

    monkeypatch.setattr("jaxreg.files.os.fsync", full_disk)
    assert main(["train", "--save", "a.npz", "--plot", "b.png", *QUICK]) == 2
    monkeypatch.setattr("jaxreg.files.os.fsync", fsync)
    assert "b.png: cannot be written: No space left on device" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # neither file, no temporary file
    csv(tmp_path, "three.csv", n_x=3)
    refused(capsys, ["compare", "--data", "three.csv", "--plot", "c.png", *QUICK],
            "--plot: the data has 3 features, expected 2", tmp_path)
    assert main(["compare", "--data", "three.csv", *QUICK]) == 0  # the default figure: it says why there is none
    assert "no figure: the data has 3 features" in capsys.readouterr().out
    refused(capsys, ["sweep", "--mc-samples", "5", "--out", "o", *QUICK], "expected a --keep-prob below 1", tmp_path)
    refused(capsys, ["sweep", "--data", "three.csv", "--keep-prob", "0.8", "--mc-samples", "5", "--out", "o",
                     *QUICK], "--mc-samples: the data has 3 features", tmp_path)


def test_folds_beyond_the_smaller_class_are_refused_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    csv(tmp_path, "ten.csv", m=60, smaller=10)
    refused(capsys, ["sweep", "--data", "ten.csv", "--folds", "25", *QUICK],
            "--folds: got 25, expected an integer from 2 to 10, the examples of the smaller class", tmp_path)
    csv(tmp_path, "two.csv", m=2, smaller=1)
    refused(capsys, ["sweep", "--data", "two.csv", "--folds", "2", *QUICK], "the smaller class has 1", tmp_path)
    X, Y = np.random.default_rng(0).normal(size=(2, 60)), (np.arange(60)[None] < 10).astype(float)
    with pytest.raises(ConfigError, match="folds: got 25, expected an integer from 2 to 10"):
        sweep(X, Y, [2, 3, 1], folds=25, iterations=10)


@pytest.mark.parametrize("argv", [
    ["train", "--data", ""], ["train", "--save", ""], ["train", "--plot", ""], ["train", "--checkpoint", ""],
    ["train", "--validation-data", ""], ["sweep", "--out", ""], ["compare", "--plot", ""],
    ["train", "--data", "x.csv", "--test-data", ""], ["gradcheck", "--data", ""],
], ids=lambda argv: " ".join(argv[:2]))
def test_empty_paths_are_bad_input(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    refused(capsys, [*argv, *QUICK[:2]], "expected a path, got ''", tmp_path)


def test_the_handlers_come_before_anything_heavy_and_gone_streams_change_no_status(tmp_path):
    light = subprocess.run([sys.executable, "-c", "import sys, jaxreg.cli; print(sorted(m for m in sys.modules if "
                            "m.split('.')[0] in ('numpy', 'jax')))"], capture_output=True, text=True, check=True)
    assert light.stdout.strip() == "[]"  # the entry point installs its handlers before NumPy or JAX load
    bad = ["train", "--keep-prob", "0"]
    assert subprocess.run([sys.executable, "-m", "jaxreg.cli", *bad], stderr=subprocess.DEVNULL).returncode == 2
    closed = subprocess.run(f"{sys.executable} -m jaxreg.cli {' '.join(bad)} 2>&-", shell=True)
    assert closed.returncode == 2
    reader = subprocess.Popen([sys.executable, "-m", "jaxreg.cli", *bad], stderr=subprocess.PIPE)
    reader.stderr.close()  # the reader of stderr goes away before the line is written
    assert reader.wait(timeout=60) == 2
    run = QUICK[:-1]  # with the suite's compilation cache: the two trainings below load their programs
    reader = subprocess.Popen([sys.executable, "-m", "jaxreg.cli", "train", *run, "--save", "q.npz"], cwd=tmp_path,
                              stderr=subprocess.PIPE)
    reader.stderr.close()  # its progress lines find no reader
    assert reader.wait(timeout=120) == 0 and checkpoint.load_params(tmp_path / "q.npz")
    good = subprocess.run(f"{sys.executable} -m jaxreg.cli train {' '.join(run)} --save p.npz >&-", shell=True,
                          cwd=tmp_path, capture_output=False, stderr=subprocess.DEVNULL)
    assert good.returncode == 0 and checkpoint.load_params(tmp_path / "p.npz")
    full = subprocess.run(f"{sys.executable} -m jaxreg.cli train {' '.join(QUICK)} > /dev/full", shell=True,
                          cwd=tmp_path, capture_output=False, stderr=subprocess.PIPE, text=True)
    assert full.returncode == 2 and "No space left on device" in full.stderr  # results not written: not done


@pytest.mark.parametrize("env,argv,message", [
    ({"JAX_DEBUG_NANS": "1"}, ["train"], "JAX_DEBUG_NANS=1: expected it unset"),
    ({"XLA_FLAGS": "garbage"}, ["train"], "XLA_FLAGS=garbage: 'garbage' is not a flag"),
    ({"XLA_FLAGS": "--xla_force_host_platform_device_count=0", "JAX_PLATFORMS": ""}, ["train"],
     "XLA_FLAGS=--xla_force_host_platform_device_count=0: no backend could start"),
    ({"JAX_PLATFORMS": "nonsense"}, ["train"], "JAX_PLATFORMS=nonsense: no backend could start"),
    ({"PYTHONIOENCODING": "ascii"}, ["sweep"], "PYTHONIOENCODING=ascii: expected an encoding"),
    ({"MPLBACKEND": "nonsense"}, ["train", "--plot", "p.png"], "MPLBACKEND=nonsense"),
    ({}, ["train", "--device", "gpu"], "--device gpu: no backend could start"),
    ({"JAXREG_NUM_PROCESSES": "2", "JAXREG_PROCESS_ID": "-1", "JAX_COORDINATOR_ADDRESS": "localhost:1"}, ["train"],
     "JAXREG_PROCESS_ID: got -1, expected 0 to 1"),
], ids=["debug-nans", "xla-garbage", "no-devices", "platforms", "encoding", "mplbackend", "device", "process-id"])
def test_the_environment_is_named_in_one_line_before_training(tmp_path, env, argv, message):
    done = cli(*argv, *QUICK, "--out" if argv[0] == "sweep" else "--seed", "o" if argv[0] == "sweep" else "0",
               env=env, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing trained, nothing written


def test_smaller_ones(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--checkpoint", "ck.npz", "--precision", "float64", *QUICK]) == 0
    entries = dict(np.load(tmp_path / "ck.npz", allow_pickle=False))  # NaN parameters, a valid checksum:
    meta = json.loads(entries.pop("jaxreg_meta").tobytes())
    for i, leaf in enumerate(meta["leaves"]):
        if "params" in leaf["path"]:
            entries[f"leaf_{i}"] = np.full_like(entries[f"leaf_{i}"], np.nan)
    meta["sha256"] = checkpoint._checksum({k: v for k, v in meta.items() if k != "sha256"},
                                          [entries[f"leaf_{i}"] for i in range(len(entries))])
    np.savez(tmp_path / "nan.npz", jaxreg_meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **entries)
    capsys.readouterr()
    refused(capsys, ["train", "--checkpoint", "nan.npz", "--resume", "--precision", "float64", *QUICK[:2]],
            "its parameters hold NaN or infinite values", tmp_path)
    (tmp_path / "a file\nnot a folder").write_text("")
    refused(capsys, ["train", "--save", "a file\nnot a folder/p.npz", *QUICK], "a file\\nnot a folder/p.npz: cannot "
            "be written: ", tmp_path)  # the whole path, on one line
    tiny = np.column_stack([np.full((40, 2), 1e-45) * np.arange(1, 41)[:, None], np.arange(40) % 2])
    np.savetxt(tmp_path / "tiny.csv", tiny, delimiter=",")
    assert main(["train", "--data", "tiny.csv", "--test-split", "0.25", *QUICK]) == 0
    assert "below float32's smallest normal number" in capsys.readouterr().err


def test_numpy_warnings_reach_the_user_as_one_jaxreg_line(tmp_path):
    code = ("import warnings, numpy as np, sys; from jaxreg.cli import _streams; _streams(); "
            "np.float32(1e38) * np.float32(1e38); warnings.warn('plain'); print('done')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    lines = done.stderr.splitlines()
    assert lines == ["jaxreg: warning: overflow encountered in scalar multiply", "jaxreg: warning: plain"], lines
    assert json.dumps(done.stdout.strip()) == '"done"'


def test_checks_that_cannot_fail_do_not_pass(tmp_path, capsys, monkeypatch):
    """A step the parameters cannot resolve, a keep_prob that keeps nothing, a loss that is not finite,
    a network too large for the memory: bad input (2). Values that are not finite, or nothing but
    zeros: the check ran and cannot pass. Features near 1e200: a finite difference, judged."""
    import jax.numpy as jnp

    from jaxreg import gradcheck

    monkeypatch.chdir(tmp_path)
    for argv, message in ((["--epsilon", "1e-300"], "--epsilon: got 1e-300, expected at least 2.22e-16"),
                          (["--keep-prob", "1e-300"], "--keep-prob: got 1e-300, expected at least 2**-16"),
                          (["--lambd", "1e308"], "loss: got inf at the parameters, expected a finite loss"),
                          (["--m", "100000000"], "needs about"),
                          (["--rule", "textbook", "--threshold", "1e308"], "--threshold: got 1e+308, expected a number "
                           "in (0, 1)")):
        refused(capsys, ["gradcheck", *argv, "--no-cache"], message, tmp_path)
    big = np.column_stack([np.random.default_rng(0).normal(size=(20, 2)) * 1e200, np.arange(20) % 2])
    np.savetxt(tmp_path / "big.csv", big, delimiter=",")
    assert main(["gradcheck", "--data", "big.csv", "--json", "--no-cache"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["difference"] < 1e-6 and out.err == ""  # squares beyond float64, scaled: judged

    def overflowing(p):  # finite at p, not at p + 2 epsilon: its differences are not finite there
        return jnp.sum(jnp.exp(p["a"]))

    report = gradcheck.check(overflowing, {"a": np.array([0.5, np.log(np.finfo(np.float64).max) - 1e-9])})
    assert not report.passed and not report.textbook_passed and "values are not finite" in report.meaningless
    assert "cannot pass: 1 of 2 values are not finite" in report.summary()
    zeros = gradcheck.check(lambda p: jnp.sum(p["a"]) * 0.0, {"a": np.ones(3)})
    assert not zeros.passed and "nothing was measured" in zeros.meaningless
