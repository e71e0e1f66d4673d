"""Sweeps: each vmapped member is `train` of its configuration alone (its validation split
too); folds are the subset's training; the choice is made on validation data, never on the
test set, and refit; early stopping; memory chunks and device sharding change nothing;
`jaxreg sweep`; Monte Carlo dropout."""

import csv
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxreg
from jaxreg import plotting, splits
from jaxreg.cli import main
from jaxreg.config import TrainConfig
from jaxreg.masks import dropout_masks
from jaxreg.model import forward, init_params, predict_proba
from jaxreg.programs import initial
from jaxreg.sweep import NoChoice, member_bytes, sweep
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


def validation_set():
    X_val, Y_val, _, _ = problem(m=24, seed=7)
    return X_val, Y_val


@pytest.fixture(scope="module")
def grid():
    X, Y, X_test, Y_test = problem()
    return sweep(X, Y, DIMS, X_test=X_test, Y_test=Y_test, validation=validation_set(), **GRID, **RUN)


def assert_same_run(alone, member):
    """`member` (from a sweep) is the run `alone` within TOL, counted accuracies exactly."""
    for name in alone.params:
        np.testing.assert_allclose(member.params[name], alone.params[name], rtol=0, atol=TOL, err_msg=name)
    np.testing.assert_array_equal(member.iterations, alone.iterations)
    np.testing.assert_allclose(member.costs, alone.costs, rtol=0, atol=TOL)
    np.testing.assert_allclose(member.clean_costs, alone.clean_costs, rtol=0, atol=TOL)
    np.testing.assert_array_equal(member.valid_iterations, alone.valid_iterations)
    np.testing.assert_allclose(member.valid_costs, alone.valid_costs, rtol=0, atol=TOL)
    np.testing.assert_allclose(member.final_cost, alone.final_cost, rtol=0, atol=TOL)
    assert member.train_accuracy == alone.train_accuracy
    assert member.valid_accuracy == alone.valid_accuracy
    assert (member.valid_cost is None) == (alone.valid_cost is None)
    if alone.valid_cost is not None:
        assert member.valid_cost == pytest.approx(alone.valid_cost, rel=0, abs=TOL)
    assert member.best_iteration == alone.best_iteration and member.stopped_at == alone.stopped_at
    assert member.config == alone.config
    assert int(member.state.step) == int(alone.state.step)


def test_every_member_equals_train_alone(grid):
    X, Y, _, _ = problem()
    assert len(grid.seed) == 2 * 3 * 2 and grid.n_programs == 2  # keep_prob 1 compiles without masks
    assert grid.validation == "validation set" and grid.test_accuracy is None  # only the refit meets it
    for i in range(len(grid.seed)):
        alone = train(X, Y, DIMS, seed=int(grid.seed[i]), lambd=float(grid.lambd[i]),
                      keep_prob=grid.keep_prob[i], validation=validation_set(), **RUN)
        assert_same_run(alone, grid.member(i))


def test_grid_order_records_summary_and_ranking(grid):
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
        valid = [r["valid_accuracy"] for r in mine]
        assert row["valid_accuracy_mean"] == pytest.approx(np.mean(valid), abs=1e-15)
        assert row["valid_accuracy_std"] == pytest.approx(np.std(valid), abs=1e-15)
    ranking = grid.ranking()
    assert sorted(map(str, ranking)) == sorted(map(str, summary))
    keys = [(-r["valid_accuracy_mean"], r["valid_cost_mean"]) for r in ranking]
    assert keys == sorted(keys)
    assert grid.best() == ranking[0]
    # Members differ: the grid really trained different configurations.
    assert len({round(c, 12) for c in grid.final_cost}) == len(grid.final_cost)


def test_the_refit_is_the_best_configuration_trained_on_every_example(grid):
    X, Y, X_test, Y_test = problem()
    best = grid.best()
    refit = grid.refit
    assert (refit.config.lambd, list(refit.config.keep_prob)) == (best["lambd"], best["keep_prob"])
    alone = train(X, Y, refit.config, seed=0, X_test=X_test, Y_test=Y_test)
    for name in alone.params:
        np.testing.assert_array_equal(refit.params[name], alone.params[name])
    assert refit.test_accuracy == alone.test_accuracy and refit.valid_accuracy is None


def test_the_refit_takes_the_best_rows_keep_prob_wherever_it_stands_in_the_grid():
    # The same two configurations in both orders: the same row wins (grid order only breaks exact
    # ties), so in one of the two sweeps it is not the grid's first keep_prob.
    X, Y, X_test, Y_test = problem()
    chosen = []
    for keep_prob in ([1.0, 0.7], [0.7, 1.0]):
        result = sweep(X, Y, DIMS, lambd=[0.0], keep_prob=keep_prob, seeds=[0], validation=validation_set(),
                       X_test=X_test, Y_test=Y_test, **RUN)
        best = result.best()
        refit = result.refit
        assert (refit.config.lambd, list(refit.config.keep_prob)) == (best["lambd"], best["keep_prob"])
        alone = train(X, Y, DIMS, seed=0, lambd=best["lambd"], keep_prob=best["keep_prob"], **RUN)
        for name in alone.params:
            np.testing.assert_array_equal(refit.params[name], alone.params[name], err_msg=name)
        chosen.append(best["keep_prob"])
    assert chosen[0] == chosen[1]


def test_the_test_set_never_chooses():
    X, Y, X_test, Y_test = problem()
    runs = [sweep(X, Y, DIMS, X_test=X_test, Y_test=labels, folds=3, **GRID, **RUN)
            for labels in (Y_test, 1 - Y_test, Y_test[:, ::-1])]
    assert all(r.ranking() == runs[0].ranking() for r in runs)
    assert all(r.test_accuracy is None for r in runs)
    for r in runs[1:]:
        np.testing.assert_array_equal(r.refit.params["W1"], runs[0].refit.params["W1"])
    assert runs[1].refit.test_accuracy == pytest.approx(1 - runs[0].refit.test_accuracy)


def test_folds_are_stratified_and_cover_every_example_once():
    _, Y, _, _ = problem(m=50)
    folds = splits.stratified_folds(np.zeros((2, 50)), Y, 5, seed=3)
    assert folds.train.shape == folds.valid.shape == (5, 1, 50) and folds.kind == "5-fold"
    np.testing.assert_array_equal(folds.valid.sum(axis=0), np.ones((1, 50)))
    np.testing.assert_array_equal(folds.train + folds.valid, np.ones((5, 1, 50)))
    positives = [int(np.sum(v * Y)) for v in folds.valid]
    assert max(positives) - min(positives) <= 1  # each class spread evenly
    again = splits.stratified_folds(np.zeros((2, 50)), Y, 5, seed=3)
    other = splits.stratified_folds(np.zeros((2, 50)), Y, 5, seed=4)
    assert np.array_equal(folds.valid, again.valid) and not np.array_equal(folds.valid, other.valid)
    held = splits.holdout(np.zeros((2, 50)), Y, 0.2, seed=3)
    assert int(held.valid.sum()) == 10 and int(np.sum(held.valid * Y)) == round(0.2 * np.sum(Y))


def test_a_fold_trains_exactly_on_its_training_examples():
    """A member's fold, as 0/1 weights over all the examples, is the run on those examples alone:
    without dropout, `train` on the subset; with dropout, the same masks restricted to the subset."""
    X, Y, _, _ = problem()
    folded = sweep(X, Y, DIMS, lambd=[0.3], keep_prob=[1.0, 0.8], seeds=[1], folds=3, refit=False, **RUN)
    folds = splits.stratified_folds(X, Y, 3, seed=0)
    for i in range(len(folded.seed)):
        inside = folds.train[folded.fold[i], 0] == 1
        member = folded.member(i)
        if member.config.dropout:
            want = masked_loop(X[:, inside], Y[:, inside], member.config, inside)
        else:
            want = train(X[:, inside], Y[:, inside], DIMS, seed=1, lambd=0.3, **RUN).params
        for name in want:
            np.testing.assert_allclose(member.params[name], want[name], rtol=0, atol=TOL, err_msg=name)
        assert member.valid_accuracy == float(np.mean(
            np.asarray(jaxreg.predict(member.params, X[:, ~inside])) == Y[:, ~inside]))


def masked_loop(X, Y, config: TrainConfig, inside):
    """SGD on the examples of ``inside``, step t with dropout_masks(fold_in(mask_key, t)) of all the
    examples, restricted to theirs (one compiled scan)."""
    state, _, _ = initial(config, seed=1)
    mask_key = jax.random.split(state.key)[1]
    columns = np.flatnonzero(inside)

    def step(params, t):
        masks = tuple(d[:, columns] for d in dropout_masks(jax.random.fold_in(mask_key, t), DIMS, inside.size,
                                                           config.keep_prob))
        grads = jax.grad(jaxreg.loss)(params, X, Y, lambd=config.lambd, masks=masks, keep_prob=config.keep_prob)
        return jax.tree_util.tree_map(lambda p, g: p - config.learning_rate * g, params, grads), None

    return jax.jit(lambda p: jax.lax.scan(step, p, jnp.arange(config.iterations))[0])(state.params)


def test_weighted_loss_is_the_loss_of_the_weighted_examples():
    X, Y, _, _ = problem()
    params = init_params(jax.random.key(0), DIMS, dtype=jnp.float64)
    inside = np.arange(X.shape[1]) % 3 != 0
    weights = inside[None].astype(np.float64)
    for lambd in (0.0, 0.7):
        value, grads = jax.value_and_grad(jaxreg.loss)(params, X, Y, lambd=lambd, weights=weights)
        want, want_grads = jax.value_and_grad(jaxreg.loss)(params, X[:, inside], Y[:, inside], lambd=lambd)
        assert abs(float(value) - float(want)) <= 1e-15
        for name in grads:
            np.testing.assert_allclose(grads[name], want_grads[name], rtol=1e-13, atol=1e-16)


def test_member_bytes_is_the_documented_estimate():
    # [2, 6, 3, 1], m = 48, float64, 100 steps a chunk: 43 parameters x 4 copies, 6 numbers per unit
    # (10 units) and example, 100 costs; masks 5 bytes per hidden unit (9) and example; the block of
    # mask bits drawn ahead: (2 + 1) groups of four rows x 48 columns x 100 steps
    numbers = 4 * 43 + 6 * 10 * 48 + 100
    assert member_bytes(DIMS, 48, dtype="float64", n_steps=100) == 8 * numbers + 5 * 9 * 48 + 3 * 48 * 100
    # a validation split adds two weights per example, early stopping a copy of the parameters
    assert member_bytes(DIMS, 48, dtype="float64", n_steps=100, split=True, early_stopping=True) == (
        8 * (numbers + 2 * 48 + 43) + 5 * 9 * 48 + 3 * 48 * 100)


def test_memory_budget_runs_chunks_with_the_same_results():
    X, Y, X_test, Y_test = problem()
    whole = sweep(X, Y, DIMS, X_test=X_test, Y_test=Y_test, folds=0, **{**GRID, "keep_prob": [0.8, (0.9, 0.6)]},
                  **RUN)
    two_members = 2 * 41_776 + 3 * X.shape[1] * 8  # two members (the figure above) and the data
    chunked = sweep(X, Y, DIMS, X_test=X_test, Y_test=Y_test, lambd=GRID["lambd"], folds=0,
                    keep_prob=[0.8, (0.9, 0.6)], seeds=GRID["seeds"], memory_budget=two_members, **RUN)
    assert whole.n_chunks == 1 and chunked.n_programs == 1 and chunked.n_chunks == 4  # 8 members, 2 at a time
    for i in range(len(whole.seed)):
        assert_same_run(whole.member(i), chunked.member(i))
        assert whole.member(i).test_accuracy == chunked.member(i).test_accuracy


def test_best_breaks_ties_towards_the_lower_cost_then_the_stronger_regularization(grid):
    # Equal mean validation accuracy and cost: the larger lambd wins, then the smaller keep_prob
    # (summed over the layers: (0.9, 0.6) keeps less than (0.8, 0.8)).
    tied = grid._replace(valid_accuracy=np.where(grid.seed == 0, 0.8, 0.9), valid_cost=np.full(12, 0.3))
    assert (tied.best()["lambd"], tied.best()["keep_prob"]) == (0.4, [0.9, 0.6])
    without_06 = tied._replace(keep_prob=tuple((0.95, 0.95) if kp == (0.9, 0.6) else kp for kp in tied.keep_prob))
    assert (without_06.best()["lambd"], without_06.best()["keep_prob"]) == (0.4, [0.8, 0.8])
    # then the validation cost: the lowest wins whatever its regularization
    cheaper = tied._replace(valid_cost=tied.valid_cost - 1e-3 * (np.arange(12) < 2))
    assert (cheaper.best()["lambd"], cheaper.best()["keep_prob"]) == (0.0, [1.0, 1.0])
    # and accuracy first: one configuration ahead by a little wins whatever its cost
    ahead = tied._replace(valid_accuracy=tied.valid_accuracy + 1e-3 * ((np.arange(12) >= 2) & (np.arange(12) < 4)),
                          valid_cost=tied.valid_cost + 1e-3 * ((np.arange(12) >= 2) & (np.arange(12) < 4)))
    assert (ahead.best()["lambd"], ahead.best()["keep_prob"]) == (0.0, [0.8, 0.8])


def test_diverging_member_keeps_its_last_finite_state_and_the_others_go_on():
    X, Y, _, _ = problem()
    options = dict(RUN, learning_rate=1.0, masks="fixed")
    result = sweep(X, Y, DIMS, lambd=[0.0, 150.0], keep_prob=0.8, seeds=[1], folds=0, **options)
    assert result.diverged_at[0] == -1 and result.diverged_at[1] > 0
    assert_same_run(train(X, Y, DIMS, seed=1, lambd=0.0, keep_prob=0.8, **options), result.member(0))
    with pytest.raises(TrainingDiverged) as diverged:
        train(X, Y, DIMS, seed=1, lambd=150.0, keep_prob=0.8, **options)
    assert diverged.value.iteration == result.diverged_at[1]
    assert_same_run(diverged.value.result, result.member(1))
    assert result.records()[1]["diverged_at"] == diverged.value.iteration
    assert result.summary()[1]["diverged"] == 1


def test_diverged_configurations_are_never_chosen():
    X, Y, _, _ = problem()
    options = dict(RUN, learning_rate=1.0)
    result = sweep(X, Y, DIMS, lambd=[0.0, 150.0], keep_prob=0.8, seeds=[1], folds=2, **options)
    assert np.all(result.diverged_at[result.lambd == 150.0] > 0)
    assert [r["lambd"] for r in result.ranking()] == [0.0] and result.refit.config.lambd == 0.0
    doomed = sweep(X, Y, DIMS, lambd=[150.0, 300.0], keep_prob=0.8, seeds=[1], folds=2, **options)
    assert doomed.ranking() == [] and doomed.refit is None
    with pytest.raises(NoChoice, match="every configuration had a diverged member"):
        doomed.best()


def test_early_stopping_keeps_the_best_check_and_stops_after_patience():
    X, Y, _, _ = problem()
    run = dict(RUN, iterations=3000, log_every=50, learning_rate=0.5, early_stopping=3)
    result = train(X, Y, [2, 16, 8, 1], seed=0, validation=validation_set(), **run)
    best = int(np.argmin(result.valid_costs))
    assert result.best_iteration == int(result.valid_iterations[best]) and result.stopped_at is not None
    assert result.stopped_at == result.best_iteration + 3 * 50 < 3000
    assert int(result.state.step) == result.stopped_at and result.valid_iterations[-1] == result.stopped_at
    assert result.valid_cost == pytest.approx(float(result.valid_costs[best]), abs=1e-12)
    # the kept parameters are those of a run that ends at the best check
    short = train(X, Y, [2, 16, 8, 1], seed=0, validation=validation_set(),
                  **{**run, "iterations": result.best_iteration, "early_stopping": None})
    for name in short.params:
        np.testing.assert_allclose(result.params[name], short.params[name], rtol=0, atol=TOL)


def test_early_stopping_members_equal_their_runs_alone_and_stop_apart():
    X, Y, _, _ = problem()
    run = dict(RUN, iterations=2000, log_every=50, learning_rate=0.5, early_stopping=2)
    result = sweep(X, Y, [2, 16, 8, 1], lambd=[0.0, 1.0], keep_prob=[1.0, 0.8], seeds=[0],
                   validation=validation_set(), refit=False, **run)
    assert len(set(result.stopped_at.tolist())) > 1  # members stop at their own checks
    for i in range(len(result.seed)):
        alone = train(X, Y, [2, 16, 8, 1], seed=0, lambd=float(result.lambd[i]), keep_prob=result.keep_prob[i],
                      validation=validation_set(), **run)
        assert_same_run(alone, result.member(i))


def test_the_early_stopping_refit_trains_to_the_mean_best_iteration_rounded_up_to_a_check():
    X, Y, _, _ = problem()
    run = dict(RUN, iterations=2000, log_every=50, learning_rate=0.5, early_stopping=2)
    result = sweep(X, Y, [2, 16, 8, 1], lambd=[0.0], keep_prob=[1.0], seeds=[0, 1, 2], validation=validation_set(),
                   **run)
    mean = np.mean([r["best_iteration"] for r in result.records()])
    assert result.best()["best_iteration_mean"] == pytest.approx(mean, rel=1e-15)
    checks = mean / 50
    assert 1 <= math.floor(checks) < checks  # the seeds' best checks differ: their mean falls between two checks
    refit = result.refit
    assert refit.config.iterations == math.ceil(checks) * 50 and refit.config.early_stopping is None
    assert int(refit.state.step) == refit.config.iterations and refit.best_iteration is None


def test_a_resumed_early_stopping_run_is_bitwise_the_whole_one(tmp_path):
    X, Y, _, _ = problem()
    run = dict(RUN, iterations=3000, log_every=50, learning_rate=0.5, early_stopping=4, keep_prob=0.9)
    path = tmp_path / "run.npz"
    whole = train(X, Y, [2, 16, 8, 1], seed=2, validation_split=0.25, **run)
    train(X, Y, [2, 16, 8, 1], seed=2, validation_split=0.25, checkpoint=path, **{**run, "iterations": 200})
    resumed = train(X, Y, [2, 16, 8, 1], seed=2, validation_split=0.25, checkpoint=path, resume=True, **run)
    assert (resumed.best_iteration, resumed.stopped_at) == (whole.best_iteration, whole.stopped_at)
    for name in whole.params:
        np.testing.assert_array_equal(resumed.params[name], whole.params[name])
    np.testing.assert_array_equal(resumed.valid_costs, whole.valid_costs)


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
    (dict(folds=1), "folds: got 1"),
    (dict(folds=100), "folds: got 100, expected an integer from 2 to 19, the examples of the smaller class"),
    (dict(folds=3, validation_split=0.2), "folds: got folds beside validation data"),
    (dict(validation_split=1.5), "validation_split: got 1.5"),
    (dict(folds=0, early_stopping=3), "early_stopping: got 3 without validation data"),
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
    from jaxreg.compilation import enable_cache
    enable_cache()  # the suite's cache (JAXREG_CACHE_DIR, from conftest): a warm run loads the programs
    from jaxreg.sweep import sweep
    from jaxreg.training import train_data_parallel
    from jaxreg.training import train

    rng = np.random.default_rng(0)
    X = rng.normal(size=(2, 48))
    Y = (X[0:1] * X[1:2] + 0.3 * rng.normal(size=(1, 48)) > 0).astype(np.float64)
    run = dict(dtype="float64", iterations=300, log_every=100, learning_rate=0.1)
    grid = dict(lambd=[0.0, 0.4, 1.0], keep_prob=[0.8, (0.9, 0.6)], seeds=[0, 3])  # 12 -> 3 per device
    many = sweep(X, Y, [2, 6, 3, 1], folds=0, **grid, **run)
    one = sweep(X, Y, [2, 6, 3, 1], folds=0, devices=jax.devices()[:1], **grid, **run)
    parallel = train_data_parallel(X, Y, [2, 6, 3, 1], seed=5, lambd=0.3, keep_prob=(0.9, 0.6), **run)
    padded = train_data_parallel(X[:, :46], Y[:, :46], [2, 6, 3, 1], seed=5, lambd=0.3, **run)  # 46 = 4 x 11 + 2
    unpadded = train(X[:, :46], Y[:, :46], [2, 6, 3, 1], seed=5, lambd=0.3, **run)
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
        "padded_params": diff(padded.params, unpadded.params),
        "padded_accuracy_equal": padded.train_accuracy == unpadded.train_accuracy,
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
    # 46 examples on 4 devices: padded to 48 with zero-weight examples, the same run (no dropout)
    assert report["padded_params"] <= TOL and report["padded_accuracy_equal"]


# ----------------------------------------------------------------------------- the CLI


def write_npz(tmp_path, m=48):
    X, Y, X_test, Y_test = problem(m)
    path = tmp_path / "data.npz"
    np.savez(path, X=X.T, y=Y.T, Xval=X_test.T, yval=Y_test.T)
    return path


QUICK = ["--iterations", "300", "--log-every", "100", "--layers", "6,3", "--learning-rate", "0.1",
         "--precision", "float64"]


def write_validation(tmp_path):
    X_val, Y_val = validation_set()
    path = tmp_path / "valid.npz"
    np.savez(path, X=X_val.T, y=Y_val.T)
    return path


def test_cli_json_entries_equal_jaxreg_train(tmp_path, capsys):
    data, valid = write_npz(tmp_path), write_validation(tmp_path)
    out = tmp_path / "out"
    assert main(["sweep", "--data", str(data), *QUICK, "--lambd", "0", "0.4", "--keep-prob", "1", "0.9,0.6",
                 "--seeds", "2", "--validation-data", str(valid), "--out", str(out), "--json"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1
    report = json.loads(printed)
    assert json.loads((out / "sweep.json").read_text()) == report
    assert report["validation"] == "validation set" and report["ranking"][0] == report["best"]
    results = report["results"]
    assert [(r["lambd"], r["keep_prob"], r["seed"]) for r in results] == [
        (lam, kp, s) for lam in (0.0, 0.4) for kp in ([1.0, 1.0], [0.9, 0.6]) for s in (0, 1)]
    for entry in results:
        argv = ["train", "--data", str(data), *QUICK, "--lambd", str(entry["lambd"]), "--validation-data", str(valid),
                "--keep-prob", ",".join(map(str, entry["keep_prob"])), "--seed", str(entry["seed"]), "--json"]
        assert main(argv) == 0
        alone = json.loads(capsys.readouterr().out)
        assert entry["train_accuracy"] == alone["train_accuracy"]
        assert entry["valid_accuracy"] == alone["valid_accuracy"] and "test_accuracy" not in entry
        assert entry["final_cost"] == pytest.approx(alone["final_cost"], rel=0, abs=TOL)
        assert [i for i, _ in entry["costs"]] == [i for i, _ in alone["costs"]]
        np.testing.assert_allclose([c for _, c in entry["costs"]], [c for _, c in alone["costs"]], rtol=0,
                                   atol=TOL)
    with open(out / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(float(r["lambd"]), r["keep_prob"], int(r["seed"])) for r in rows] == [
        (r["lambd"], ",".join(f"{p:g}" for p in r["keep_prob"]), r["seed"]) for r in results]
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    refit = report["refit"]
    assert (refit["config"]["lambd"], refit["config"]["keep_prob"]) == (report["best"]["lambd"],
                                                                         report["best"]["keep_prob"])
    argv = ["train", "--data", str(data), *QUICK, "--lambd", str(refit["config"]["lambd"]), "--keep-prob",
            ",".join(map(str, refit["config"]["keep_prob"])), "--seed", str(refit["seed"]), "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["test_accuracy"] == refit["test_accuracy"]


def test_cli_table_ranks_on_validation_and_judges_the_refit_alone(tmp_path, capsys):
    data = write_npz(tmp_path)
    out = tmp_path / "out"
    assert main(["sweep", "--data", str(data), *QUICK, "--lambd", "0", "0.4", "--keep-prob", "0.8",
                 "--seeds", "3:5", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "x 2 seeds x 5 folds = 20 runs" in text and "validation: 5-fold" in text
    rows = [line.split() for line in text.splitlines() if " ± " in line and line.split()[0].isdigit()]
    assert len(rows) == 2 and [r[0] for r in rows] == ["1", "2"] and {r[1] for r in rows} == {"0", "0.4"}
    report = json.loads((out / "sweep.json").read_text())
    assert report["seeds"] == [3, 4]
    best = report["best"]
    assert f"best by validation accuracy (5-fold): lambd {best['lambd']:g}, keep_prob 0.8" in text
    assert "test accuracy" not in text.split("best by")[0]  # the table shows no test figure
    assert f"test accuracy {report['refit']['test_accuracy']:.4f} (the only run the test set judged)" in text
    assert str(out / "sweep.png") in text


def test_cli_exits_1_when_every_configuration_diverged(tmp_path, capsys):
    data = write_npz(tmp_path)
    argv = ["sweep", "--data", str(data), *QUICK, "--lambd", "150", "300", "--keep-prob", "0.8",
            "--learning-rate", "1", "--folds", "2", "--out", str(tmp_path / "out")]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "every configuration had a diverged member" in captured.err
    assert "diverged: not ranked" in captured.out


@pytest.mark.parametrize("argv,message", [
    (["--lambd"], "expected at least one argument"),
    (["--keep-prob", "0"], "--keep-prob: got 0, expected"),
    (["--keep-prob", "1", "0.9,x"], "--keep-prob: expected a number"),
    (["--lambd", "-0.5"], "--lambd: got -0.5"),
    (["--seeds", "0"], "--seeds: got 0"),
    (["--seeds", "2", "2"], "--seeds: got 2 2"),
    (["--seeds", "5:3"], "--seeds: got 5:3"),
    (["--seeds", "two"], "--seeds: got two"),
    (["--memory-budget", "0"], "--memory-budget: got 0"),
    (["--folds", "1"], "--folds: got 1"),
    (["--validation-split", "2"], "--validation-split: got 2, expected"),
    (["--folds", "3", "--validation-split", "0.2"], "not allowed with argument"),
    (["--split-seed", "-1"], "--split-seed: got -1"),
    (["--early-stopping", "0"], "--early-stopping: got 0"),
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


def test_no_refit_trains_no_refit(tmp_path, capsys):
    assert main(["sweep", "--iterations", "20", "--log-every", "10", "--lambd", "0", "0.5", "--no-refit", "--json",
                 "--out", str(tmp_path), "--no-cache"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["best"] is not None and report["refit"] is None
