"""The command line as a new user meets it: help, messages that name the flag, progress and
checkpoint lines, a closed pipe, a dead network, the built-in data's seed and a held-out test
set; and the README's claims about the package's layout."""

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from cli_output import PROGRESS, is_report

import jaxreg
from jaxreg import data, diagnose
from jaxreg.cli import main, output
from jaxreg.training import train

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--iterations", "300", "--log-every", "100", "--layers", "6,3"]


def jaxreg_cli(*argv, timeout=120, **kwargs):
    """``jaxreg ARGV`` in a fresh process (stdout and stderr captured as text)."""
    return subprocess.run([sys.executable, "-m", "jaxreg.cli", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def write_csv(path, m=80, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    np.savetxt(path, np.c_[X, y], delimiter=",")
    return path


# ----------------------------------------------------------------------------- help


def test_bare_command_prints_usage():
    done = jaxreg_cli()
    assert done.returncode == 2 and done.stderr.startswith("usage: jaxreg") and "jaxreg COMMAND --help" in done.stderr


def test_help_explains_every_choice_and_shows_defaults():
    top = jaxreg_cli("--help").stdout
    assert "``" not in top and "Exit status" in top
    text = jaxreg_cli("train", "--help").stdout
    flat = " ".join(text.split())
    assert "``" not in text and "see jaxreg.data" not in text
    assert "the step size (default 0.3)" in flat and "(default 30000)" in flat and "(default 20,3)" in flat
    for words in ("sgd: plain gradient descent", "course, the textbook's own draw", "course, the textbook's masks",
                  "X (m, n_x) and y (m, 1)", "one command line for the first start and every restart"):
        assert words in flat, words
    assert "%%" not in text
    assert "20,3" in " ".join(jaxreg_cli("gradcheck", "--help").stdout.split())  # why its default differs


def test_version():
    done = jaxreg_cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"jaxreg {jaxreg.__version__}"


# ----------------------------------------------------------------------------- errors name the flag


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--dataset", "foo"], "argument --dataset: invalid choice: 'foo'"),
    (["train", "--keep-prob", "0"], "--keep-prob: got 0, expected values in (0, 1]"),
    (["train", "--keep-prob", "0.5,0.5,0.5"], "--keep-prob: got 0.5,0.5,0.5, expected 1 or 2"),
    (["train", "--layers", "0,3"], "--layers: got 0,3, expected every width to be positive"),
    (["train", "--lambd", "-1"], "--lambd: got -1, expected a finite number >= 0"),
    (["train", "--learning-rate", "0"], "--learning-rate: got 0"),
    (["train", "--test-split", "1.5"], "--test-split: got 1.5, expected a fraction in (0, 1)"),
    (["train", "--test-split", "0.2"], "--test-split: got 0.2, expected data without a test set (default already"),
    (["train", "--checkpoint", "c.npz", "--checkpoint-every", "0"], "--checkpoint-every: got 0, expected"),
    (["sweep", "--keep-prob", "1", "0"], "--keep-prob: got 0, expected values in (0, 1]"),
    (["gradcheck", "--keep-prob", "0"], "--keep-prob: got 0, expected values in (0, 1]"),
    (["gradcheck", "--layers", "0,3"], "--layers: got 0,3, expected every width to be positive"),
    (["gradcheck", "--epsilon", "-1"], "--epsilon: got -1, expected a finite number > 0"),
])
def test_cli_errors_name_the_flag(argv, message, tmp_path):
    done = jaxreg_cli(*argv, cwd=tmp_path)
    err = done.stderr
    assert done.returncode == 2 and message in err and err.count("\n") == 1, err
    assert not re.search(r"(^|\s)(keep_prob|name|lambd|learning_rate|layer_dims|validation_split|epsilon|"
                         r"checkpoint_every):", err), err


# ----------------------------------------------------------------------------- output and progress


def test_a_closed_pipe_ends_quietly(tmp_path):
    """``jaxreg train ... | head -2``: the reader goes away after two lines; no error, no traceback."""
    with open(tmp_path / "err", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "jaxreg.cli", "train", "--iterations", "20000", "--log-every",
                                 "5", "--layers", "3,2"], stdout=subprocess.PIPE, stderr=err, text=True)
        lines = [proc.stdout.readline() for _ in range(2)]
        proc.stdout.close()
        status = proc.wait(timeout=120)
    assert lines[1].startswith("  cost after iteration")
    stderr = (tmp_path / "err").read_text()
    assert status == 141, stderr
    assert "Broken pipe" not in stderr and "Traceback" not in stderr and "error" not in stderr, stderr


def test_progress_lines_when_not_a_terminal():
    done = jaxreg_cli("train", "--iterations", "3000", "--log-every", "1000", "--layers", "6,3")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert [re.search(r"iteration (\d+)/3000,", line).group(1) for line in lines] == ["1000", "2000", "3000"]
    assert all(PROGRESS.match(line) for line in lines), done.stderr
    assert lines[0].endswith("(with compiling)") and not lines[1].endswith("(with compiling)")
    assert jaxreg_cli("train", *QUICK, "--json").stderr == ""  # --json: the JSON object and nothing else


def test_terminal_bar_starts_its_clock_after_the_first_chunk(monkeypatch):
    """On a terminal the tqdm bar is made after the first chunk (which compiles), from where it stands."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    progress = output.Progress(3000, quiet=False)
    assert progress.bar is None
    progress.costs(0, np.full(1000, 0.5))
    progress(1000, 3000)
    assert progress.bar is not None and progress.bar.initial == 1000 and progress.bar.n == 1000
    progress.costs(1000, np.full(1000, 0.4))
    progress(2000, 3000)
    assert progress.bar.n == 2000 and progress.bar.initial == 1000
    progress.close()


def test_the_figure_trace_is_fine_whatever_log_every():
    progress = output.Progress(5000, quiet=True, trace_every=output.trace_every(5000))
    for start in range(0, 5000, 2500):
        progress.costs(start, np.arange(start, start + 2500, dtype=float))
    iterations, costs = progress.trace
    assert iterations == list(range(0, 5000, 10)) and costs == [float(i) for i in iterations]


def test_train_plot_gets_the_fine_trace_and_the_final_cost(tmp_path, monkeypatch, capsys):
    from jaxreg import plotting

    seen = {}

    def capture(panels, X, Y, title=""):
        seen.update(panels=panels, title=title)
        return b"\x89PNG"

    monkeypatch.setattr(plotting, "compare_figure", capture)
    assert main(["train", "--iterations", "5000", "--log-every", "2500", "--layers", "6,3", "--plot",
                 str(tmp_path / "f.png")]) == 0
    panel = seen["panels"][0]
    assert list(panel["iterations"]) == [0, 2500]  # what --log-every records
    assert panel["trace_iterations"] == list(range(0, 5000, 10))  # what the figure draws
    assert panel["final"][0] == 5000 and panel["final"][1] == pytest.approx(float(panel["clean_costs"][-1]), rel=0.5)
    assert not seen["title"].startswith("default:")


# ----------------------------------------------------------------------------- checkpoints


def test_a_resumed_runs_figure_keeps_the_history_before_it(tmp_path, monkeypatch, capsys):
    from jaxreg import plotting

    seen = {}
    monkeypatch.setattr(plotting, "compare_figure", lambda panels, X, Y, title="": seen.update(p=panels[0]) or b"")
    flags = ["--layers", "6,3", "--log-every", "500", "--checkpoint", str(tmp_path / "c.npz"), "--resume"]
    assert main(["train", "--iterations", "2000", *flags]) == 0
    assert main(["train", "--iterations", "4000", *flags, "--plot", str(tmp_path / "f.png")]) == 0
    its = seen["p"]["trace_iterations"]
    assert its[:4] == [0, 500, 1000, 1500]  # the checkpoint's history
    assert its[4:] == list(range(2000, 4000, 8))  # this run's trace
    assert seen["p"]["trace_costs"][:4] == [float(c) for c in seen["p"]["costs"][:4]]




def test_resume_without_a_checkpoint_starts_fresh_and_says_what_it_wrote(tmp_path):
    ckpt = tmp_path / "run.npz"
    flags = ["--layers", "6,3", "--log-every", "500", "--checkpoint", ckpt, "--checkpoint-every", "1000", "--resume"]
    first = jaxreg_cli("train", "--iterations", "2000", *flags)
    assert first.returncode == 0, first.stderr
    notes = [line for line in first.stderr.splitlines() if not PROGRESS.match(line)]
    assert all(is_report(line) for line in notes)
    assert notes == [f"jaxreg: no checkpoint at {ckpt} yet: starting a new run (--resume continues it from there "
                     "next time)", f"jaxreg: checkpoint written at iteration 1000 ({ckpt})",
                     f"jaxreg: checkpoint written at iteration 2000 ({ckpt})"], first.stderr
    again = jaxreg_cli("train", "--iterations", "3000", *flags)
    assert again.returncode == 0, again.stderr
    notes = [line for line in again.stderr.splitlines() if not PROGRESS.match(line)]
    assert notes == [f"jaxreg: resumed from iteration 2000 ({ckpt})",
                     f"jaxreg: checkpoint written at iteration 3000 ({ckpt})"], again.stderr
    done = jaxreg_cli("train", "--iterations", "3000", *flags)
    assert f"{ckpt} is at iteration 3000 already" in done.stderr


# ----------------------------------------------------------------------------- a network that learns nothing


def test_a_dead_network_is_named_with_its_remedy():
    done = jaxreg_cli("train", "--learning-rate", "100", "--iterations", "3000", "--log-every", "500")
    assert done.returncode == 0
    warning = [line for line in done.stderr.splitlines() if line.startswith("jaxreg: warning:")]
    assert len(warning) == 1 and "dead network" in warning[0] and "smaller learning rate" in warning[0], done.stderr
    assert "since iteration 500" in warning[0]


def test_the_library_warns_of_a_stuck_run_and_not_of_a_good_one():
    ds = data.make_dataset("default", n_test=0)
    with pytest.warns(diagnose.StuckWarning, match="dead network"):
        train(ds.X, ds.Y, [2, 20, 3, 1], learning_rate=100.0, iterations=2000, log_every=200)
    with warnings.catch_warnings():
        warnings.simplefilter("error", diagnose.StuckWarning)
        train(ds.X, ds.Y, [2, 20, 3, 1], iterations=2000, log_every=200)


def test_flat_since():
    its = np.arange(0, 10000, 1000)
    assert diagnose.flat_since(its, np.r_[0.7, np.full(9, 9.1)], 9.1, 10000) == 1000
    assert diagnose.flat_since(its, np.linspace(0.7, 0.2, 10), 0.19, 10000) is None  # still learning
    assert diagnose.flat_since(its, np.r_[np.linspace(0.7, 0.3, 8), 0.3, 0.3], 0.3, 10000) is None  # late plateau
    assert diagnose.flat_since(its, np.full(10, np.nan), np.nan, 10000) is None


def test_a_network_that_predicts_one_class_is_named():
    params = {"W1": np.ones((3, 2)), "b1": np.ones((3, 1)), "W2": np.zeros((1, 3)), "b2": np.full((1, 1), -5.0)}
    X = np.random.default_rng(0).normal(size=(2, 50))
    its, flat = np.arange(0, 5000, 1000), np.full(5, 0.7)
    why = diagnose.stuck(params, X, its, flat, 0.7, 5000, learning_rate=0.3)
    assert why is not None and "predicts the same class for every training example" in why and "0.3" in why
    params["W2"] = np.array([[1.0, -1.0, 0.0]]) * 10  # alive, and two classes: nothing to say
    params["W1"] = np.random.default_rng(1).normal(size=(3, 2))
    assert diagnose.stuck(params, X, its, flat, 0.7, 5000, learning_rate=0.3) is None


def test_dead_layers():
    params = {"W1": np.ones((3, 2)), "b1": -100 * np.ones((3, 1)), "W2": np.ones((1, 3)), "b2": np.zeros((1, 1))}
    X = np.random.default_rng(0).normal(size=(2, 50))
    assert diagnose.dead_layers(params, X) == [1]
    params["b1"][0] = 0.0
    assert diagnose.dead_layers(params, X) == []


# ----------------------------------------------------------------------------- data


def test_data_seed_reproduces_the_library_dataset():
    def run(*argv):
        done = jaxreg_cli("train", *QUICK, "--dataset", "moons", *argv, "--precision", "float64", "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    one = run("--data-seed", "1")
    ds = data.make_dataset("moons", seed=1)
    direct = train(ds.X, ds.Y, [2, 6, 3, 1], iterations=300, log_every=100, X_test=ds.X_test, Y_test=ds.Y_test,
                   seed=0, dtype="float64")
    assert one["train_accuracy"] == direct.train_accuracy and one["test_accuracy"] == direct.test_accuracy
    assert run()["costs"] != one["costs"]  # seed 0's data is another dataset
    done = jaxreg_cli("train", "--data-seed", "1", "--data", "x.csv")  # a file has no seed without --test-split
    assert done.returncode == 2 and "--data-seed" in done.stderr


def test_test_split_is_stratified_and_seeded(tmp_path):
    ds = data.load(write_csv(tmp_path / "d.csv"))
    a, b, c = (data.test_split(ds, 0.25, seed) for seed in (0, 0, 1))
    assert a.X_test.shape[1] == 20 and a.X.shape[1] == 60
    assert np.array_equal(a.X_test, b.X_test) and not np.array_equal(a.X_test, c.X_test)
    assert abs(a.Y_test.mean() - ds.Y.mean()) < 0.05  # each class in proportion
    assert sorted(map(tuple, np.c_[a.X, a.X_test].T)) == sorted(map(tuple, ds.X.T))  # a partition


def test_compare_holds_out_a_test_set_by_default(tmp_path):
    path = write_csv(tmp_path / "d.csv")
    done = jaxreg_cli("compare", "--data", path, *QUICK, "--json", "--plot", tmp_path / "c.png")
    report = json.loads(done.stdout)
    assert "0.25 held out as test set" in report["data"]
    assert all(run["test_accuracy"] is not None for run in report["runs"].values())
    done = jaxreg_cli("train", "--data", path, *QUICK, "--test-split", "0.25", "--json")
    train_report = json.loads(done.stdout)
    assert train_report["test_accuracy"] == report["runs"]["no regularization"]["test_accuracy"]


# ----------------------------------------------------------------------------- gradcheck, README


def test_gradcheck_json_is_one_line():
    out = jaxreg_cli("gradcheck", "--json").stdout
    assert out.count("\n") == 1 and json.loads(out)["passed"] is True


def test_readme_names_what_exists():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    layout = layout[: layout.index("```", layout.index("```") + 3)]
    modules = sorted(p.name for p in (ROOT / "jaxreg").iterdir() if p.suffix == ".py" or (p / "__init__.py").exists())
    missing = [m for m in modules if (m if m.endswith(".py") else m + "/") not in layout]
    assert not missing, f"the README's Layout omits {missing}"
    for name in re.findall(r"`jaxreg\.(\w+)", readme):
        assert hasattr(jaxreg, name) or name in {m.removesuffix(".py") for m in modules}, name
