"""The compiled training loop: the textbook's results exactly, chunking, resume, options."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxreg
from jaxreg import checkpoint
from jaxreg.programs import run_chunk
from jaxreg.training import TrainingDiverged, train

COURSE_TABLE = {
    "no_reg": ({}, 0.9478672985781991, 0.915, (0.6557412523481002, 0.16329987525724196, 0.13851642423266772)),
    "l2": (dict(lambd=0.7), 0.9383886255924171, 0.93, (0.6974484493131264, 0.2684918873282239, 0.26809163371273004)),
    "dropout": (dict(keep_prob=0.86), 0.9289099526066351, 0.95,
                (0.6543912405149824, 0.06101698657490556, 0.06058243579851314)),
}


# The final cost of the full network (L2 included, no dropout) as the README prints it, and its
# cost at iteration 0 (the textbook's initial cost 0.6557412523481002, plus the L2 term with lambd).
FINAL_COSTS = {"no_reg": 0.125133, "l2": 0.267823, "dropout": 0.657864}
INITIAL_CLEAN = {"no_reg": 0.6557412523481002, "l2": 0.6974484493131264, "dropout": 0.6557412523481002}


@pytest.mark.parametrize("options,train_acc,test_acc,costs", COURSE_TABLE.values(), ids=COURSE_TABLE.keys())
def test_reproduces_the_textbook(course_data, options, train_acc, test_acc, costs, request):
    regime = request.node.callspec.id
    X, Y, X_test, Y_test = course_data
    result = train(X, Y, [2, 20, 3, 1], X_test=X_test, Y_test=Y_test, init="course", masks="course",
                   dtype="float64", learning_rate=0.3, iterations=30000, **options)
    assert result.train_accuracy == train_acc
    assert result.test_accuracy == test_acc
    np.testing.assert_array_equal(result.iterations, np.arange(0, 30000, 1000))
    np.testing.assert_allclose(result.costs[[0, 10, 20]], costs, rtol=0, atol=1e-9)
    assert abs(result.clean_costs[0] - INITIAL_CLEAN[regime]) <= 1e-12
    # the final cost, computed apart in NumPy from the final parameters (from the logits: the
    # reference's log(AL) loses digits where AL rounds to 1)
    p = {k: np.asarray(v) for k, v in result.params.items()}
    Z = p["W3"] @ np.maximum(p["W2"] @ np.maximum(p["W1"] @ X + p["b1"], 0) + p["b2"], 0) + p["b3"]
    lambd = options.get("lambd", 0.0)
    expected = np.mean(np.logaddexp(0, (1 - 2 * Y) * Z)) + lambd / (2 * X.shape[1]) * sum(
        np.sum(p[f"W{l}"] ** 2) for l in (1, 2, 3))
    assert abs(result.final_cost - expected) <= 1e-12
    assert round(result.final_cost, 6) == FINAL_COSTS[regime]


def small_problem(m=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(2, m))
    Y = (X[0:1] * X[1:2] + 0.3 * rng.normal(size=(1, m)) > 0).astype(np.float64)
    return X, Y


RUN = dict(dtype="float64", iterations=600, learning_rate=0.1, lambd=0.2, keep_prob=(0.8, 0.9))


def assert_same_params(a, b):
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_per_step_masks_do_not_depend_on_chunking():
    X, Y = small_problem()
    coarse = train(X, Y, [2, 8, 4, 1], seed=1, log_every=300, **RUN)
    fine = train(X, Y, [2, 8, 4, 1], seed=1, log_every=75, **RUN)
    assert_same_params(coarse.params, fine.params)
    np.testing.assert_array_equal(coarse.costs, fine.costs[np.isin(fine.iterations, coarse.iterations)])


def test_history_records_training_and_clean_costs():
    X, Y = small_problem()
    plain = train(X, Y, [2, 8, 4, 1], seed=0, log_every=100, **{**RUN, "keep_prob": 1.0})
    np.testing.assert_array_equal(plain.iterations, np.arange(0, 600, 100))
    np.testing.assert_array_equal(plain.costs, plain.clean_costs)  # no dropout: the same network
    dropped = train(X, Y, [2, 8, 4, 1], seed=0, log_every=100, **RUN)
    assert not np.array_equal(dropped.costs, dropped.clean_costs)
    assert dropped.clean_costs[-1] < dropped.clean_costs[0]


@pytest.mark.parametrize("schedule", ["per-step", "fixed", "course"])
def test_mask_schedules_are_reproducible(schedule):
    X, Y = small_problem()
    a = train(X, Y, [2, 8, 4, 1], seed=3, masks=schedule, **RUN)
    b = train(X, Y, [2, 8, 4, 1], seed=3, masks=schedule, **RUN)
    assert_same_params(a.params, b.params)


def test_mask_schedules_differ():
    X, Y = small_problem()
    runs = [train(X, Y, [2, 8, 4, 1], seed=3, masks=s, **RUN).params["W1"] for s in ("per-step", "fixed")]
    assert not np.array_equal(*runs)


def test_resume_is_bitwise_identical(tmp_path):
    X, Y = small_problem()
    path = tmp_path / "run.ckpt.npz"
    whole = train(X, Y, [2, 8, 4, 1], seed=2, log_every=100, **{**RUN, "iterations": 900})
    first = train(X, Y, [2, 8, 4, 1], seed=2, log_every=100, checkpoint=path, **{**RUN, "iterations": 350})
    assert int(first.state.step) == 350
    resumed = train(X, Y, [2, 8, 4, 1], seed=2, log_every=100, checkpoint=path, resume=True,
                    **{**RUN, "iterations": 900})
    assert int(resumed.state.step) == 900
    assert_same_params(whole.params, resumed.params)
    np.testing.assert_array_equal(whole.iterations, resumed.iterations)
    np.testing.assert_array_equal(whole.costs, resumed.costs)


def test_checkpoint_every_writes_complete_checkpoints(tmp_path):
    X, Y = small_problem()
    path = tmp_path / "run.npz"
    steps = []

    def stop_at_400(step, total):
        tree, _ = checkpoint.load(path) if path.exists() else (None, None)
        steps.append(step)
        if step == 400:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(X, Y, [2, 8, 4, 1], seed=2, log_every=100, checkpoint=path, checkpoint_every=200,
              on_chunk=stop_at_400, **RUN)
    tree, meta = checkpoint.load(path)
    assert int(tree[".step"]) == 400 and steps == [100, 200, 300, 400]
    resumed = train(X, Y, [2, 8, 4, 1], seed=2, log_every=100, checkpoint=path, resume=True, **RUN)
    whole = train(X, Y, [2, 8, 4, 1], seed=2, log_every=100, **RUN)
    assert_same_params(whole.params, resumed.params)


@pytest.mark.parametrize(
    "change,message",
    [(dict(lambd=0.3), "incompatible configuration.*lambd"), (dict(iterations=100), "past iterations = 100"),
     (dict(keep_prob=(0.8, 0.5)), "incompatible configuration.*keep_prob")],
    ids=["config", "shorter", "keep_prob"],
)
def test_resume_refuses_another_run(tmp_path, change, message):
    X, Y = small_problem()
    path = tmp_path / "run.npz"
    train(X, Y, [2, 8, 4, 1], seed=2, checkpoint=path, **{**RUN, "iterations": 300})
    with pytest.raises(ValueError, match=message):
        train(X, Y, [2, 8, 4, 1], seed=2, checkpoint=path, resume=True, **{**RUN, **change})


def test_a_validated_runs_clean_costs_are_those_of_its_training_examples_alone():
    X, Y = small_problem()
    validation = small_problem(m=30, seed=1)
    options = dict(dtype="float64", learning_rate=0.1, lambd=0.7, keep_prob=(0.8, 0.9), log_every=100, seed=3)
    run = train(X, Y, [2, 8, 4, 1], validation=validation, iterations=300, **options)
    np.testing.assert_array_equal(run.iterations, [0, 100, 200])
    for i, clean in zip(run.iterations, run.clean_costs, strict=True):
        # the parameters at iteration i: those of the same run ended there (0: the initial ones)
        params = train(X, Y, [2, 8, 4, 1], validation=validation, iterations=int(i), **options).params
        assert abs(clean - float(jaxreg.loss(params, X, Y, lambd=0.7))) <= 1e-12


@pytest.mark.parametrize("change", ["features", "labels"])
def test_resume_refuses_other_data(tmp_path, change):
    X, Y = small_problem()
    path = tmp_path / "run.npz"
    train(X, Y, [2, 8, 4, 1], seed=2, checkpoint=path, **{**RUN, "iterations": 300})
    other = (X + 1, Y) if change == "features" else (X, 1 - Y)
    with pytest.raises(ValueError, match="other training data"):
        train(*other, [2, 8, 4, 1], seed=2, checkpoint=path, resume=True, **RUN)


def test_decoupled_weight_decay_equals_l2_under_sgd_only():
    X, Y = small_problem()
    m, lambd = X.shape[1], 0.5
    base = dict(dtype="float64", iterations=300, learning_rate=0.1, seed=4)
    l2 = train(X, Y, [2, 8, 4, 1], lambd=lambd, **base)
    decay = train(X, Y, [2, 8, 4, 1], weight_decay=lambd / m, **base)
    for name in l2.params:
        np.testing.assert_allclose(l2.params[name], decay.params[name], rtol=1e-12, atol=1e-14)
    adam = dict(base, optimizer="adam", learning_rate=0.01)
    l2_adam = train(X, Y, [2, 8, 4, 1], lambd=lambd, **adam)
    decay_adam = train(X, Y, [2, 8, 4, 1], weight_decay=lambd / m, **adam)
    assert np.abs(l2_adam.params["W1"] - decay_adam.params["W1"]).max() > 1e-4


@pytest.mark.parametrize("optimizer,lr", [("momentum", 0.05), ("adam", 0.01)])
def test_other_optimizers_learn(optimizer, lr):
    X, Y = small_problem()
    result = train(X, Y, [2, 8, 4, 1], seed=0, optimizer=optimizer, learning_rate=lr, iterations=500,
                   log_every=100, dtype="float64")
    assert result.clean_costs[-1] < 0.8 * result.clean_costs[0]


def test_divergence_stops_with_the_last_finite_parameters(tmp_path):
    X, Y = small_problem()
    path = tmp_path / "run.npz"
    # lr * lambd / m = 50: each step multiplies the weights by about -49, until they overflow
    with pytest.raises(TrainingDiverged, match=r"diverged at iteration \d+") as info:
        train(X, Y, [2, 8, 4, 1], seed=0, learning_rate=3000.0, lambd=1.0, iterations=2000, log_every=100,
              checkpoint=path)
    kept = info.value.result
    assert int(kept.state.step) < info.value.iteration
    assert all(np.all(np.isfinite(v)) for v in kept.params.values())
    tree, _ = checkpoint.load(path)
    assert int(tree[".step"]) == int(kept.state.step)


def test_float32_is_the_default():
    X, Y = small_problem()
    result = train(X, Y, [2, 8, 4, 1], seed=0, iterations=50)
    assert result.params["W1"].dtype == jnp.float32


def test_hyperparameter_values_do_not_recompile():
    X, Y = small_problem()
    train(X, Y, [2, 8, 4, 1], seed=0, iterations=100, log_every=100, lambd=0.1, keep_prob=0.9)
    size = run_chunk._cache_size()
    train(X, Y, [2, 8, 4, 1], seed=5, iterations=100, log_every=100, lambd=0.7, keep_prob=0.5,
          learning_rate=0.01)
    assert run_chunk._cache_size() == size


@pytest.mark.parametrize("make_key", [jax.random.key, jax.random.PRNGKey], ids=["typed", "legacy"])
def test_keys_of_both_kinds(make_key):
    X, Y = small_problem()
    a = train(X, Y, [2, 8, 4, 1], key=make_key(9), **RUN)
    b = train(X, Y, [2, 8, 4, 1], key=make_key(9), **RUN)
    assert_same_params(a.params, b.params)


BAD_OPTIONS = {
    "learning_rate": (dict(learning_rate=0.0), r"learning_rate: got 0.0, expected a finite number > 0"),
    "iterations": (dict(iterations=-5), r"iterations: got -5, expected an integer >= 0"),
    "log_every": (dict(log_every=0), r"log_every: got 0, expected an integer >= 1"),
    "optimizer": (dict(optimizer="rmsprop"), "optimizer: got 'rmsprop', expected one of sgd, momentum, adam"),
    "masks": (dict(masks="random"), "masks: got 'random', expected one of per-step, fixed, course"),
    "init": (dict(init="xavier"), "init: got 'xavier', expected one of he, lecun, zeros, course"),
    "keep_prob": (dict(keep_prob=1.2), r"keep_prob: got \[1.2, 1.2\]"),
    "lambd": (dict(lambd=-0.1), "lambd: got -0.1"),
    "weight_decay": (dict(weight_decay=-1.0), "weight_decay: got -1.0"),
    "layers": (dict(layer_dims=[3, 8, 1]), "n_x = 3, expected 2"),
    "resume": (dict(resume=True), "without a checkpoint path"),
    "checkpoint_every": (dict(checkpoint_every=0, checkpoint="x.npz"), "checkpoint_every: got 0"),
}


@pytest.mark.parametrize("options,message", BAD_OPTIONS.values(), ids=BAD_OPTIONS.keys())
def test_bad_options_are_named(options, message):
    X, Y = small_problem()
    options = {"layer_dims": [2, 8, 4, 1], **options}
    with pytest.raises(ValueError, match=message):
        train(X, Y, options.pop("layer_dims"), **options)


def test_bad_test_set_is_named():
    X, Y = small_problem()
    with pytest.raises(ValueError, match="X_test: got 3 features, expected 2"):
        train(X, Y, [2, 8, 4, 1], X_test=np.zeros((3, 5)), Y_test=np.zeros((1, 5)))


def test_float64_needs_x64():
    X, Y = small_problem()
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(ValueError, match="jax_enable_x64"):
            train(X, Y, [2, 8, 4, 1], dtype="float64")
    finally:
        jax.config.update("jax_enable_x64", True)


def test_momentum_is_the_heavy_ball_of_0_9_and_the_validation_cost_is_the_mean_over_its_examples():
    """Two constants no other test pins: optimizer='momentum' is optax.sgd(lr, momentum=0.9), and the
    validation cost is the mean cross-entropy over the validation examples alone."""
    import optax

    X, Y = np.random.default_rng(3).normal(size=(2, 30)), (np.arange(30)[None] % 2).astype(float)
    X_val, Y_val = X[:, :12] * 0.5, Y[:, :12]
    run = train(X, Y, [2, 4, 1], optimizer="momentum", iterations=5, log_every=5, dtype="float64",
                validation=(X_val, Y_val))
    params = jaxreg.init_params(jax.random.split(jax.random.key(0))[0], [2, 4, 1], "he", "float64")
    opt = optax.sgd(0.3, momentum=0.9)
    state = opt.init(params)
    for _ in range(5):
        updates, state = opt.update(jax.grad(jaxreg.loss)(params, X, Y), state, params)
        params = optax.apply_updates(params, updates)
    for k in params:
        np.testing.assert_allclose(run.params[k], params[k], rtol=1e-12, atol=1e-14)
    p = np.asarray(jaxreg.predict_proba(run.params, X_val))
    expected = -np.mean(Y_val * np.log(p) + (1 - Y_val) * np.log(1 - p))
    assert abs(run.valid_cost - expected) <= 1e-12 and abs(run.valid_costs[-1] - expected) <= 1e-12
