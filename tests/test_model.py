"""The JAX model against the textbook's NumPy backprop, in float64."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import jaxreg
from jaxreg import reference

REGIMES = {
    "no_reg": dict(lambd=0.0, keep_prob=1.0),
    "l2": dict(lambd=0.7, keep_prob=1.0),
    "dropout": dict(lambd=0.0, keep_prob=0.86),
    "l2_dropout": dict(lambd=0.7, keep_prob=0.86),
    "per_layer": dict(lambd=0.3, keep_prob=(0.6, 0.9)),
}


def rel_diff(a, b) -> float:
    """``||a - b|| / (||a|| + ||b||)``, 0 where both are 0."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - b) / denom)


def random_problem(layer_dims, m, seed=0):
    """Seeded float64 params, data ``X (n_x, m)`` and 0/1 labels ``Y (1, m)``."""
    key = jax.random.key(seed)
    params = jaxreg.init_params(key, layer_dims, "he", jnp.float64)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(layer_dims[0], m))
    Y = (rng.random((1, m)) < 0.5).astype(np.float64)
    return params, X, Y


# Compiled once for the module: one program per network shape (and kind of keep_prob), shared by
# every test and example of that shape (eager op-by-op dispatch would compile every op apart, and a
# jit made anew per call would trace and compile again each time).
_masks = jax.jit(jaxreg.dropout_masks, static_argnums=(1, 2))
_value_and_grad = jax.jit(jax.value_and_grad(jaxreg.loss))


def assert_matches_reference(params, X, Y, lambd, keep_prob, key, skip_saturated=False):
    """jax.grad(jaxreg.loss) == reference.backward (1e-10) and the losses (1e-12), same masks."""
    dims = [X.shape[0]] + [params[f"W{l}"].shape[0] for l in range(1, len(params) // 2 + 1)]
    dropout = np.any(np.asarray(keep_prob) < 1)
    masks = _masks(key, tuple(dims), X.shape[1], keep_prob) if dropout else None
    J, grads = _value_and_grad(params, X, Y, lambd=lambd, masks=masks, keep_prob=keep_prob)
    np_params = {k: np.asarray(v) for k, v in params.items()}
    np_masks = None if masks is None else tuple(np.asarray(d) for d in masks)
    ref = reference.backward(np_params, X, Y, lambd=lambd, masks=np_masks, keep_prob=keep_prob)
    AL, _ = reference.forward(np_params, X, masks=np_masks, keep_prob=keep_prob)
    J_ref = reference.cost(AL, Y, np_params, lambd)
    # The textbook computes log(1 - AL) and AL - Y from AL = sigmoid(Z): for a saturated
    # unit the reference itself loses eps / min(AL, 1 - AL) (JAX works from the logits).
    # Where no unit saturates this adds < 1e-12 and the stated tolerances hold as they are.
    floor = float(np.min(np.minimum(AL, 1 - AL)))
    if skip_saturated:  # saturated networks are checked apart (test_saturated_logits), from the logits
        assume(floor >= 1e-4)
    own_error = 8 * np.finfo(np.float64).eps / max(floor, 1e-300)
    assert own_error <= 1e-10  # so that the tolerances below can fail
    assert abs(float(J) - J_ref) <= 1e-12 * max(1.0, abs(J_ref)) + own_error
    for name in params:
        if not np.any(grads[name]) or not np.any(ref[f"d{name}"]):
            # an exact zero on one side (e.g. no unit passes a signal and the labels balance, so
            # mean(AL - Y) = 0): the other is zero to the rounding of its sums, where a ratio means nothing
            assert np.max(np.abs(np.asarray(grads[name]) - ref[f"d{name}"])) <= 1e-15, name
        else:
            assert rel_diff(grads[name], ref[f"d{name}"]) <= 1e-10 + own_error, name


@pytest.mark.parametrize("regime", REGIMES.values(), ids=REGIMES.keys())
@pytest.mark.parametrize("layer_dims", [[2, 20, 3, 1], [4, 5, 3, 1]], ids=["course_net", "gradcheck_net"])
def test_grad_matches_reference(layer_dims, regime):
    params, X, Y = random_problem(layer_dims, m=211)
    assert_matches_reference(params, X, Y, key=jax.random.key(7), **regime)


@pytest.mark.parametrize("regime", REGIMES.values(), ids=REGIMES.keys())
def test_grad_matches_reference_on_course_data(course_data, regime):
    X, Y, _, _ = course_data
    params = {k: jnp.asarray(v) for k, v in reference.init_params([2, 20, 3, 1]).items()}
    assert_matches_reference(params, X, Y, key=jax.random.PRNGKey(1), **regime)


# Network shapes (n_x, hidden widths, m) spanning what the property covers: depth 1 to 5, widths
# 1 to 32 (a width-1 layer first, inside and last), 1 to 8 features, 1 to 300 examples. Hypothesis
# draws among them and draws the values (parameters, data, lambd, keep_prob): each shape compiles
# its few programs once, where a shape drawn per example compiled new ones every example.
SHAPES = [
    (1, (1,), 1),
    (8, (32,), 300),
    (2, (20, 3), 211),
    (3, (1, 7), 2),
    (5, (9, 1, 4), 37),
    (4, (32, 2, 17, 1), 128),
    (6, (3, 32, 12, 5, 8), 300),
    (7, (16, 16, 16, 16, 16), 1),
]


@settings(max_examples=30, deadline=None, derandomize=True)  # fixed examples: a warm run loads their programs
@given(
    shape=st.sampled_from(SHAPES),
    lambd=st.floats(0, 5),
    keep=st.floats(0.05, 1.0, exclude_min=True),
    per_layer=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_grad_matches_reference_on_random_networks(shape, lambd, keep, per_layer, seed):
    n_x, widths, m = shape
    dims = [n_x, *widths, 1]
    params, X, Y = random_problem(dims, m, seed)
    keep_prob = tuple(np.linspace(keep, 1.0, len(widths))) if per_layer else keep
    assert_matches_reference(params, X, Y, lambd, keep_prob, jax.random.key(seed), skip_saturated=True)


def test_course_initial_cost(course_data):
    X, Y, _, _ = course_data
    params = reference.init_params([2, 20, 3, 1])
    AL, _ = reference.forward(params, X)
    assert abs(reference.cost(AL, Y) - 0.6557412523481002) <= 1e-12
    assert abs(float(jaxreg.loss(params, X, Y)) - 0.6557412523481002) <= 1e-12


def test_course_masks_are_the_textbooks_stream():
    masks = reference.course_masks([2, 20, 3, 1], 5, 0.8)
    rng = np.random.RandomState(1)
    np.testing.assert_array_equal(masks[0], rng.rand(20, 5) < 0.8)
    np.testing.assert_array_equal(masks[1], rng.rand(3, 5) < 0.8)


# --- masks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("make_key", [jax.random.key, jax.random.PRNGKey], ids=["typed", "legacy"])
def test_masks_are_deterministic_per_key(make_key):
    a = jaxreg.dropout_masks(make_key(3), [2, 20, 3, 1], 50, 0.7)
    b = jaxreg.dropout_masks(make_key(3), [2, 20, 3, 1], 50, 0.7)
    c = jaxreg.dropout_masks(make_key(4), [2, 20, 3, 1], 50, 0.7)
    assert [d.shape for d in a] == [(20, 50), (3, 50)]
    assert all(d.dtype == jnp.bool_ for d in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("keep_prob", [0.1, 0.5, 0.86, (0.3, 0.95)])
def test_keep_rate_and_inverted_scaling(keep_prob):
    m = 20000
    masks = jaxreg.dropout_masks(jax.random.key(0), [2, 64, 64, 1], m, keep_prob)
    kps = np.broadcast_to(keep_prob, (2,))
    for mask, kp in zip(masks, kps, strict=True):
        n = mask.size
        # the keep rate is a binomial proportion: 5 standard errors
        assert abs(float(mask.mean()) - kp) <= 5 * np.sqrt(kp * (1 - kp) / n)
    # the model's inverted dropout keeps the expected activation: a network whose output sums
    # its first hidden layer's units gives, with the first mask, about what it gives without
    params, X, _ = random_problem([2, 64, 1], m)
    params = {**params, "W2": jnp.ones((1, 64)), "b2": jnp.zeros((1, 1))}
    plain = np.asarray(jaxreg.forward(params, X))
    dropped = np.asarray(jaxreg.forward(params, X, masks=masks[:1], keep_prob=kps[0]))
    assert abs(dropped.mean() - plain.mean()) <= 0.02 * plain.mean()
    # and exactly: A * D / keep_prob, summed
    A1 = np.maximum(np.asarray(params["W1"]) @ X + np.asarray(params["b1"]), 0)
    np.testing.assert_allclose(dropped, np.sum(np.where(masks[0], A1, 0) / kps[0], axis=0, keepdims=True),
                               rtol=1e-12)


def test_keep_prob_one_is_the_identity():
    params, X, _ = random_problem([2, 20, 3, 1], 40)
    masks = jaxreg.dropout_masks(jax.random.key(0), [2, 20, 3, 1], 40, 1.0)
    assert all(bool(d.all()) for d in masks)
    np.testing.assert_array_equal(
        jaxreg.forward(params, X, masks=masks, keep_prob=1.0), jaxreg.forward(params, X)
    )


def test_traced_keep_prob_gives_the_same_masks():
    key = jax.random.key(5)
    eager = jaxreg.dropout_masks(key, [2, 20, 3, 1], 30, (0.86, 1.0))
    traced = jax.jit(lambda kp: jaxreg.dropout_masks(key, [2, 20, 3, 1], 30, kp))(jnp.array([0.86, 1.0]))
    for a, b in zip(eager, traced, strict=True):
        np.testing.assert_array_equal(a, b)


# --- saturation, jit ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype,scale,tol", [(jnp.float32, 40.0, 1e-5), (jnp.float64, 800.0, 1e-10)])
def test_saturated_logits(dtype, scale, tol):
    params, X, Y = random_problem([2, 20, 3, 1], 100, seed=1)
    Z = np.asarray(jaxreg.forward(params, X))
    params["W3"] = params["W3"] * (scale / np.abs(Z).max())
    params = {k: v.astype(dtype) for k, v in params.items()}
    Xd, Yd = jnp.asarray(X, dtype), jnp.asarray(Y, dtype)
    Z = np.asarray(jaxreg.forward(params, Xd), np.float64)
    assert np.abs(Z).max() >= 0.99 * scale
    J, grads = jax.value_and_grad(jaxreg.loss)(params, Xd, Yd, lambd=0.1)
    assert J.dtype == dtype and np.isfinite(float(J))
    # exact cross-entropy from the logits: softplus(-z) for y = 1, softplus(z) for y = 0
    expected = np.mean(np.logaddexp(0, np.where(Y == 1, -Z, Z)))
    expected += 0.1 / 200 * sum(float(np.sum(np.asarray(params[f"W{l}"], np.float64) ** 2)) for l in (1, 2, 3))
    assert abs(float(J) - expected) <= tol * expected
    ref = reference.backward({k: np.asarray(v, np.float64) for k, v in params.items()}, X, Y, lambd=0.1)
    for name in params:
        assert np.all(np.isfinite(grads[name]))
        assert rel_diff(grads[name], ref[f"d{name}"]) <= tol, name


def test_well_classified_examples_keep_their_tiny_loss():
    # z = 30 with y = 1 (and z = -30 with y = 0) costs log1p(exp(-30)) ~ 9.4e-14: relative accuracy,
    # not the absolute ~1e-15 of computing softplus(z) - y * z
    def cost(w2, y):  # one hidden unit passes x = 30 through: the logit is 30 * w2
        params = {"W1": jnp.ones((1, 1)), "b1": jnp.zeros((1, 1)), "W2": jnp.full((1, 1), w2), "b2": jnp.zeros((1, 1))}
        return float(jaxreg.loss(params, jnp.full((1, 1), 30.0), jnp.full((1, 1), y)))

    for w2, y in [(1.0, 1.0), (-1.0, 0.0), (1.25, 1.0)]:
        assert cost(w2, y) == pytest.approx(math.log1p(math.exp(-30 * abs(w2))), rel=1e-14)


def test_loss_compiles_once():
    traces = []

    @jax.jit
    def objective(params, X, Y, lambd, keep_prob, key):
        traces.append(1)
        masks = jaxreg.dropout_masks(key, [2, 20, 3, 1], X.shape[1], keep_prob)
        return jax.grad(jaxreg.loss)(params, X, Y, lambd=lambd, masks=masks, keep_prob=keep_prob)

    params, X, Y = random_problem([2, 20, 3, 1], 50)
    objective(params, X, Y, 0.7, 0.86, jax.random.key(0))
    objective(params, X * 2, Y, 0.1, 0.5, jax.random.key(1))
    assert len(traces) == 1


def test_predict_and_accuracy():
    params, X, Y = random_problem([2, 20, 3, 1], 64)
    proba = jaxreg.predict_proba(params, X)
    assert proba.shape == (1, 64)
    np.testing.assert_array_equal(jaxreg.predict(params, X), (np.asarray(proba) > 0.5).astype(int))
    np.testing.assert_array_equal(jaxreg.predict(params, X), reference.predict(dict(params), X))
    assert float(jaxreg.accuracy(params, X, Y)) == pytest.approx(reference.accuracy(dict(params), X, Y))


@pytest.mark.parametrize("scheme,expected_std", [("he", np.sqrt(2 / 100)), ("lecun", np.sqrt(1 / 100))])
def test_init_schemes(scheme, expected_std):
    params = jaxreg.init_params(jax.random.key(0), [100, 400, 1], scheme)
    assert params["W1"].shape == (400, 100) and params["b1"].shape == (400, 1)
    assert float(jnp.std(params["W1"])) == pytest.approx(expected_std, rel=0.02)
    assert not np.any(params["b1"])
    zeros = jaxreg.init_params(jax.random.key(0), [2, 3, 1], "zeros")
    assert not any(np.any(v) for v in zeros.values())


# --- bad input ----------------------------------------------------------------------------------

GOOD_PARAMS, GOOD_X, GOOD_Y = random_problem([2, 20, 3, 1], 10)


def call_loss(params=None, X=None, Y=None, **kw):
    return jaxreg.loss(
        GOOD_PARAMS if params is None else params,
        GOOD_X if X is None else X,
        GOOD_Y if Y is None else Y,
        **kw,
    )


BAD_CALLS = {
    "xy_mismatch": (lambda: call_loss(Y=GOOD_Y[:, :5]), "examples"),
    "y_shape": (lambda: call_loss(Y=GOOD_Y[0]), r"Y: got shape \(10,\), expected \(1, m\)"),
    "y_labels": (lambda: call_loss(Y=GOOD_Y * 2), "expected only 0 and 1"),
    "x_nan": (lambda: call_loss(X=np.where(np.eye(2, 10) > 0, np.nan, GOOD_X)), "NaN or infinite"),
    "x_inf": (lambda: call_loss(X=np.full((2, 10), np.inf)), "NaN or infinite"),
    "x_features": (lambda: call_loss(X=np.ones((3, 10))), r"expected \(20, 3\)"),
    "keep_zero": (lambda: jaxreg.dropout_masks(jax.random.key(0), [2, 20, 3, 1], 10, 0.0),
                  r"keep_prob: got \[0.0, 0.0\], expected values in \(0, 1\]"),
    "keep_above_one": (lambda: jaxreg.dropout_masks(jax.random.key(0), [2, 20, 3, 1], 10, 1.5), r"\(0, 1\]"),
    "keep_length": (lambda: jaxreg.dropout_masks(jax.random.key(0), [2, 20, 3, 1], 10, (0.5, 0.5, 0.5)),
                    "got 3 values, expected 1 or 2"),
    "lambd_negative": (lambda: call_loss(lambd=-1.0), r"lambd: got -1.0, expected a finite number >= 0"),
    "dims_short": (lambda: jaxreg.init_params(jax.random.key(0), [2, 1]), "expected at least 3"),
    "dims_zero": (lambda: jaxreg.init_params(jax.random.key(0), [2, 0, 1]), "positive"),
    "dims_output": (lambda: jaxreg.init_params(jax.random.key(0), [2, 5, 2]), "output width 2, expected 1"),
    "params_missing": (lambda: call_loss(params={k: v for k, v in GOOD_PARAMS.items() if k != "b2"}),
                       r"missing \['b2'\]"),
    "params_one_layer": (lambda: call_loss(params={"W1": jnp.ones((1, 2)), "b1": jnp.zeros((1, 1))}),
                         r"got keys \['W1', 'b1'\], expected W1, b1, W2, b2, ...: at least one hidden layer"),
    "params_shape": (lambda: call_loss(params={**GOOD_PARAMS, "b1": jnp.zeros((20,))}),
                     r"params\['b1'\]: got shape \(20,\), expected \(20, 1\)"),
    "masks_shape": (lambda: call_loss(masks=(jnp.ones((20, 9), bool), jnp.ones((3, 10), bool)),
                                      keep_prob=0.5), r"masks\[0\]: got shape \(20, 9\), expected \(20, 10\)"),
    "scheme": (lambda: jaxreg.init_params(jax.random.key(0), [2, 3, 1], "xavier"), "he, lecun, zeros"),
}


@pytest.mark.parametrize("call,message", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_wrong_types_are_named():
    with pytest.raises(TypeError, match="layer_dims: got str"):
        jaxreg.init_params(jax.random.key(0), "2,3,1")
    with pytest.raises(TypeError, match="params: got list"):
        jaxreg.forward([GOOD_PARAMS], GOOD_X)
