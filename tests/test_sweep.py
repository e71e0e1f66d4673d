"""Sweeps: each vmapped member is `train` of its configuration alone; memory chunks and
device sharding change nothing; `jaxreg sweep`; Monte Carlo dropout."""

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreg import plotting
from jaxreg.cli import main
from jaxreg.masks import dropout_masks
from jaxreg.model import forward, init_params, predict_proba
from jaxreg.sweep import member_bytes, sweep
from jaxreg.training import TrainingDiverged, train
from jaxreg.uncertainty import predict_mc

DIMS = [2, 6, 3, 1]
RUN = dict(dtype="float64", iterations=300, log_every=100, learning_rate=0.1)
GRID = dict(lambd=[0.0, 0.4], keep_prob=[1.0, 0.8, (0.9, 0.6)], seeds=[0, 2])
TOL = 1e-12  # float64: a vmapped member may sum in another order than the run alone


def problem(m=48, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(2, m))
    Y = (X[0:1] * X[1:2] + 0.3 * rng.normal(size=(1, m)) > 0).astype(np.float64)
    X_test = rng.normal(size=(2, 30))
    return X, Y, X_test, (X_test[0:1] * X_test[1:2] > 0).astype(np.float64)


@pytest.fixture(scope="module")
def grid():
    X, Y, X_test, Y_test = problem()
    return sweep(X, Y, DIMS, X_test=X_test, Y_test=Y_test, **GRID, **RUN)


def assert_same_run(alone, member):
    """`member` (from a sweep) is the run `alone` within TOL, counted accuracies exactly."""
    for name in alone.params:
        np.testing.assert_allclose(member.params[name], alone.params[name], rtol=0, atol=TOL, err_msg=name)
    np.testing.assert_array_equal(member.iterations, alone.iterations)
    np.testing.assert_allclose(member.costs, alone.costs, rtol=0, atol=TOL)
    np.testing.assert_allclose(member.clean_costs, alone.clean_costs, rtol=0, atol=TOL)
    np.testing.assert_allclose(member.final_cost, alone.final_cost, rtol=0, atol=TOL)
    assert member.train_accuracy == alone.train_accuracy
    assert member.test_accuracy == alone.test_accuracy
    assert member.config == alone.config
    assert int(member.state.step) == int(alone.state.step)


def test_every_member_equals_train_alone(grid):
    X, Y, X_test, Y_test = problem()
    assert len(grid.seed) == 2 * 3 * 2 and grid.n_programs == 2  # keep_prob 1 compiles without masks
    for i in range(len(grid.seed)):
        alone = train(X, Y, DIMS, seed=int(grid.seed[i]), lambd=float(grid.lambd[i]),
                      keep_prob=grid.keep_prob[i], X_test=X_test, Y_test=Y_test, **RUN)
        assert_same_run(alone, grid.member(i))


def test_grid_order_records_and_summary(grid):
    np.testing.assert_array_equal(grid.lambd, np.repeat([0.0, 0.4], 6))
    assert grid.keep_prob == ((1.0, 1.0), (1.0, 1.0), (0.8, 0.8), (0.8, 0.8), (0.9, 0.6), (0.9, 0.6)) * 2
    np.testing.assert_array_equal(grid.seed, [0, 2] * 6)
    records = grid.records()
    assert [(r["lambd"], r["keep_prob"], r["seed"]) for r in records[:3]] == [
        (0.0, [1.0, 1.0], 0), (0.0, [1.0, 1.0], 2), (0.0, [0.8, 0.8], 0)]
    summary = grid.summary()
    assert len(summary) == 6
    for row in summary:
        mine = [r for r in records if r["lambd"] == row["lambd"] and r["keep_prob"] == row["keep_prob"]]
        assert row["seeds"] == len(mine) == 2
        test = [r["test_accuracy"] for r in mine]
        assert row["test_accuracy_mean"] == pytest.approx(np.mean(test), abs=1e-15)
        assert row["test_accuracy_std"] == pytest.approx(np.std(test), abs=1e-15)
    best = grid.best()
    assert best["test_accuracy_mean"] == max(r["test_accuracy_mean"] for r in summary)
    # Members differ: the grid really trained different configurations.
    assert len({round(c, 12) for c in grid.final_cost}) == len(grid.final_cost)


def test_member_bytes_is_the_documented_estimate():
    # [2, 6, 3, 1], m = 48, float64, 100 steps a chunk: 43 parameters x 4 copies, 6 numbers per unit
    # (10 units) and example, 100 costs; masks 5 bytes per hidden unit (9) and example; the block of
    # mask bits drawn ahead: (2 + 1) groups of four rows x 48 columns x 100 steps
    numbers = 4 * 43 + 6 * 10 * 48 + 100
    assert member_bytes(DIMS, 48, dtype="float64", n_steps=100) == 8 * numbers + 5 * 9 * 48 + 3 * 48 * 100


def test_memory_budget_runs_chunks_with_the_same_results(grid):
    X, Y, X_test, Y_test = problem()
    two_members = 2 * 41_776 + 3 * X.shape[1] * 8  # two members (the figure above) and the data
    chunked = sweep(X, Y, DIMS, X_test=X_test, Y_test=Y_test, lambd=GRID["lambd"],
                    keep_prob=[0.8, (0.9, 0.6)], seeds=GRID["seeds"], memory_budget=two_members, **RUN)
    assert chunked.n_programs == 1 and chunked.n_chunks == 4  # 8 members, 2 at a time
    same = [i for i in range(len(grid.seed)) if grid.keep_prob[i] != (1.0, 1.0)]
    for i, j in enumerate(same):
        assert_same_run(grid.member(j), chunked.member(i))


def test_best_breaks_ties_towards_the_stronger_regularization(grid):
    # Equal mean and spread of test accuracy: the larger lambd wins, then the smaller keep_prob
    # (summed over the layers: (0.9, 0.6) keeps less than (0.8, 0.8)).
    tied = grid._replace(test_accuracy=np.where(grid.seed == 0, 0.8, 0.9))
    assert (tied.best()["lambd"], tied.best()["keep_prob"]) == (0.4, [0.9, 0.6])
    without_06 = tied._replace(keep_prob=tuple((0.95, 0.95) if kp == (0.9, 0.6) else kp for kp in tied.keep_prob))
    assert (without_06.best()["lambd"], without_06.best()["keep_prob"]) == (0.4, [0.8, 0.8])
    # and accuracy first: one configuration ahead by a little wins whatever its regularization
    ahead = tied._replace(test_accuracy=tied.test_accuracy + 1e-3 * (np.arange(12) < 2))
    assert (ahead.best()["lambd"], ahead.best()["keep_prob"]) == (0.0, [1.0, 1.0])


def test_diverging_member_keeps_its_last_finite_state_and_the_others_go_on():
    X, Y, _, _ = problem()
    options = dict(RUN, learning_rate=1.0, masks="fixed")
    result = sweep(X, Y, DIMS, lambd=[0.0, 150.0], keep_prob=0.8, seeds=[1], **options)
    assert result.diverged_at[0] == -1 and result.diverged_at[1] > 0
    assert_same_run(train(X, Y, DIMS, seed=1, lambd=0.0, keep_prob=0.8, **options), result.member(0))
    with pytest.raises(TrainingDiverged) as diverged:
        train(X, Y, DIMS, seed=1, lambd=150.0, keep_prob=0.8, **options)
    assert diverged.value.iteration == result.diverged_at[1]
    assert_same_run(diverged.value.result, result.member(1))
    assert result.records()[1]["diverged_at"] == diverged.value.iteration
    assert result.summary()[1]["diverged"] == 1


@pytest.mark.parametrize("grid_options,message", [
    (dict(lambd=[]), "lambd: got an empty grid"),
    (dict(lambd=[-0.1]), "lambd: got -0.1"),
    (dict(keep_prob=[0.0]), "keep_prob: got"),
    (dict(keep_prob=[(0.9, 0.8, 0.7)]), "keep_prob: got 3 values"),
    (dict(seeds=0), "seeds: got 0"),
    (dict(seeds=[1, 1]), "expected distinct seeds"),
    (dict(lambd=[0.1, 0.1]), "lambd: got .* expected distinct"),
    (dict(keep_prob=[0.9, (0.9, 0.9)]), "keep_prob: got .* expected distinct"),
    (dict(memory_budget=0), "memory_budget: got 0"),
])
def test_bad_grids_are_named(grid_options, message):
    X, Y, _, _ = problem()
    with pytest.raises(ValueError, match=message):
        sweep(X, Y, DIMS, **{**GRID, **grid_options, "iterations": 10})


SHARDED = textwrap.dedent("""
    import json, sys
    import jax
    import numpy as np
    jax.config.update("jax_enable_x64", True)
    from jaxreg.sweep import sweep, train_data_parallel
    from jaxreg.training import train

    rng = np.random.default_rng(0)
    X = rng.normal(size=(2, 48))
    Y = (X[0:1] * X[1:2] + 0.3 * rng.normal(size=(1, 48)) > 0).astype(np.float64)
    run = dict(dtype="float64", iterations=300, log_every=100, learning_rate=0.1)
    grid = dict(lambd=[0.0, 0.4, 1.0], keep_prob=[0.8, (0.9, 0.6)], seeds=[0, 3])  # 12 -> 3 per device
    many = sweep(X, Y, [2, 6, 3, 1], **grid, **run)
    one = sweep(X, Y, [2, 6, 3, 1], devices=jax.devices()[:1], **grid, **run)
    parallel = train_data_parallel(X, Y, [2, 6, 3, 1], seed=5, lambd=0.3, keep_prob=(0.9, 0.6), **run)
    alone = train(X, Y, [2, 6, 3, 1], seed=5, lambd=0.3, keep_prob=(0.9, 0.6), **run)
    diff = lambda a, b: max(float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))) for k in a)
    print(json.dumps({
        "devices": jax.device_count(), "sweep_devices": [many.n_devices, one.n_devices],
        "sweep_params": diff(many.params, one.params),
        "sweep_costs": float(np.max(np.abs(many.costs - one.costs))),
        "sweep_accuracy_equal": bool(np.array_equal(many.train_accuracy, one.train_accuracy)),
        "parallel_shards": len(parallel.params["W1"].sharding.device_set),
        "parallel_params": diff(parallel.params, alone.params),
        "parallel_costs": float(np.max(np.abs(parallel.costs - alone.costs))),
        "parallel_accuracy_equal": parallel.train_accuracy == alone.train_accuracy,
    }))
""")


def test_sharded_sweep_and_data_parallel_training_match_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", SHARDED], capture_output=True, text=True, env=env, cwd=root,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["devices"] == 4 and report["sweep_devices"] == [4, 1]
    # The configuration axis is split over devices; no member talks to another. XLA compiles the
    # per-device program apart, so sums may round in another order: agreement to float64 rounding.
    assert report["sweep_params"] <= TOL and report["sweep_costs"] <= TOL
    assert report["sweep_accuracy_equal"]
    # One model, examples split over 4 devices (48 / 4), gradient sums reduced by XLA.
    assert report["parallel_shards"] == 4
    assert report["parallel_params"] <= TOL and report["parallel_costs"] <= TOL
    assert report["parallel_accuracy_equal"]


# ----------------------------------------------------------------------------- the CLI


def write_npz(tmp_path, m=48):
    X, Y, X_test, Y_test = problem(m)
    path = tmp_path / "data.npz"
    np.savez(path, X=X.T, y=Y.T, Xval=X_test.T, yval=Y_test.T)
    return path


QUICK = ["--iterations", "300", "--log-every", "100", "--layers", "6,3", "--learning-rate", "0.1",
         "--precision", "float64"]


def test_cli_json_entries_equal_jaxreg_train(tmp_path, capsys):
    data = write_npz(tmp_path)
    out = tmp_path / "out"
    assert main(["sweep", "--data", str(data), *QUICK, "--lambd", "0", "0.4", "--keep-prob", "1", "0.9,0.6",
                 "--seeds", "2", "--out", str(out), "--json"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1
    report = json.loads(printed)
    assert json.loads((out / "sweep.json").read_text()) == report
    results = report["results"]
    assert [(r["lambd"], r["keep_prob"], r["seed"]) for r in results] == [
        (lam, kp, s) for lam in (0.0, 0.4) for kp in ([1.0, 1.0], [0.9, 0.6]) for s in (0, 1)]
    for entry in results:
        argv = ["train", "--data", str(data), *QUICK, "--lambd", str(entry["lambd"]),
                "--keep-prob", ",".join(map(str, entry["keep_prob"])), "--seed", str(entry["seed"]), "--json"]
        assert main(argv) == 0
        alone = json.loads(capsys.readouterr().out)
        assert entry["train_accuracy"] == alone["train_accuracy"]
        assert entry["test_accuracy"] == alone["test_accuracy"]
        assert entry["final_cost"] == pytest.approx(alone["final_cost"], rel=0, abs=TOL)
        assert [i for i, _ in entry["costs"]] == [i for i, _ in alone["costs"]]
        np.testing.assert_allclose([c for _, c in entry["costs"]], [c for _, c in alone["costs"]], rtol=0,
                                   atol=TOL)
    with open(out / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(float(r["lambd"]), r["keep_prob"], int(r["seed"])) for r in rows] == [
        (r["lambd"], ",".join(f"{p:g}" for p in r["keep_prob"]), r["seed"]) for r in results]
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = max(report["summary"], key=lambda r: r["test_accuracy_mean"])
    assert report["best"]["test_accuracy_mean"] == best["test_accuracy_mean"]


def test_cli_table_names_the_best_configuration(tmp_path, capsys):
    data = write_npz(tmp_path)
    out = tmp_path / "out"
    assert main(["sweep", "--data", str(data), *QUICK, "--lambd", "0", "0.4", "--keep-prob", "0.8",
                 "--seeds", "3:5", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith(" ") and " ± " in line]
    assert len(rows) == 2 and rows[0].split()[:2] == ["0", "0.8"] and rows[1].split()[:2] == ["0.4", "0.8"]
    report = json.loads((out / "sweep.json").read_text())
    assert report["seeds"] == [3, 4]
    best = report["best"]
    assert f"best by test accuracy: lambd {best['lambd']:g}, keep_prob 0.8" in text
    assert str(out / "sweep.png") in text


@pytest.mark.parametrize("argv,message", [
    (["--lambd"], "expected at least one argument"),
    (["--keep-prob", "0"], "keep_prob: got [0.0"),
    (["--keep-prob", "1", "0.9,x"], "--keep-prob: expected a number"),
    (["--lambd", "-0.5"], "lambd: got -0.5"),
    (["--seeds", "0"], "--seeds: got 0"),
    (["--seeds", "2", "2"], "--seeds: got 2 2"),
    (["--seeds", "5:3"], "--seeds: got 5:3"),
    (["--seeds", "two"], "--seeds: got two"),
    (["--memory-budget", "0"], "--memory-budget: got 0"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, message):
    data = write_npz(tmp_path)
    assert main(["sweep", "--data", str(data), "--iterations", "10", "--out", str(tmp_path), *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and message in captured.err
    assert captured.out == "" and not (tmp_path / "sweep.json").exists()


# ----------------------------------------------------------------------------- Monte Carlo dropout


def test_predict_mc_without_dropout_is_the_plain_network():
    params = init_params(jax.random.key(0), DIMS)
    X = jnp.asarray(problem()[0])
    mean, std = predict_mc(params, X, jax.random.key(1), 1.0, samples=3)
    np.testing.assert_array_equal(mean, predict_proba(params, X))
    np.testing.assert_array_equal(std, np.zeros((1, X.shape[1])))


def test_predict_mc_averages_thinned_networks_and_is_keyed():
    params = init_params(jax.random.key(0), DIMS)
    X = jnp.asarray(problem()[0])
    key, keep_prob = jax.random.key(7), (0.8, 0.6)
    mean, std = predict_mc(params, X, key, keep_prob, samples=5)
    assert mean.shape == std.shape == (1, X.shape[1])
    probs = []
    for k in jax.random.split(key, 5):  # each sample: one thinned network for every example
        masks = tuple(jnp.broadcast_to(d, (d.shape[0], X.shape[1]))
                      for d in dropout_masks(k, DIMS, 1, keep_prob))
        probs.append(np.asarray(jax.nn.sigmoid(forward(params, X, masks=masks, keep_prob=keep_prob))))
    np.testing.assert_allclose(mean, np.mean(probs, axis=0), rtol=1e-12, atol=0)
    np.testing.assert_allclose(std, np.std(probs, axis=0), rtol=1e-9, atol=1e-15)
    assert np.all(np.asarray(std) > 0)
    again, _ = predict_mc(params, X, key, keep_prob, samples=5)
    np.testing.assert_array_equal(again, mean)
    other, _ = predict_mc(params, X, jax.random.key(8), keep_prob, samples=5)
    assert not np.array_equal(other, mean)


@pytest.mark.parametrize("options,message", [
    (dict(samples=0), "samples: got 0"),
    (dict(keep_prob=0.0), "keep_prob: got"),
    (dict(key=3), "key: got int"),
])
def test_predict_mc_bad_input_is_named(options, message):
    params = init_params(jax.random.key(0), DIMS)
    arguments = {"key": jax.random.key(0), "keep_prob": 0.8, "samples": 4, **options}
    with pytest.raises((ValueError, TypeError), match=message):
        predict_mc(params, jnp.ones((2, 3)), **arguments)


def test_uncertainty_figure_is_a_png():
    xx, yy = np.meshgrid(np.linspace(-1, 1, 20), np.linspace(-1, 1, 20))
    mean, std = 1 / (1 + np.exp(-3 * xx * yy)), 0.1 * np.abs(xx)
    X = np.array([[0.5, -0.5], [0.5, 0.5]])
    png = plotting.uncertainty_figure(xx, yy, mean, std, X, np.array([[1.0, 0.0]]), title="t")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
