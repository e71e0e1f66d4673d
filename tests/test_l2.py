"""jaxreg.convert_l2: each conversion proved by the gradient or by training (optax; no PyTorch),
against the course's loss ``cross_entropy + lambd/(2m) sum ||W||^2`` (float64)."""

import inspect
import itertools
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxreg
from jaxreg import model, reference
from jaxreg.l2 import CONVENTIONS, convert_l2
from jaxreg.programs import make_optimizer

LAMBD = 0.7
DIMS = [2, 8, 4, 1]
M = 40
LR = 0.1
STEPS = 25


def problem():
    """The network [2, 8, 4, 1] (non-zero biases) on 40 random examples, float64."""
    rng = np.random.RandomState(0)
    params = reference.init_params(DIMS, seed=3)
    params = {k: v + 0.1 * rng.randn(*v.shape) if k.startswith("b") else v for k, v in params.items()}
    X = rng.randn(2, M)
    Y = (rng.rand(1, M) < 0.5).astype(np.float64)
    return params, X, Y


def weights_only(params):
    return {k: k.startswith("W") for k in params}


def course_loss(lambd):
    return lambda p, X, Y: model.loss(p, X, Y, lambd=lambd)


def cross_entropy(p, X, Y):
    return model.loss(p, X, Y)  # the mean cross-entropy, no penalty


def trained(optimizer, loss, params, X, Y):
    """``STEPS`` full-batch steps of ``optimizer`` (optax) on ``loss``; the final parameters."""

    @jax.jit
    def step(params, state):
        updates, state = optimizer.update(jax.grad(loss)(params, X, Y), state, params)
        return optax.apply_updates(params, updates), state

    params = jax.tree_util.tree_map(jnp.asarray, params)
    state = optimizer.init(params)
    for _ in range(STEPS):
        params, state = step(params, state)
    return params


def assert_same_params(a, b, rtol=1e-12):
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=1e-15, err_msg=k)


# ---------------------------------------------------------------------------------------------------
# The table


def test_the_table():
    assert convert_l2(LAMBD, "course", "sklearn", m=M) == LAMBD
    assert convert_l2(LAMBD, "course", "keras", m=M) == pytest.approx(LAMBD / (2 * M), rel=1e-15)
    for wd in ("pytorch", "optax", "decoupled"):
        assert convert_l2(LAMBD, "course", wd, m=M) == pytest.approx(LAMBD / M, rel=1e-15)
    # Between conventions of the same kind, m is not needed: keras l2 is pytorch's weight_decay / 2.
    assert convert_l2(0.01, "keras", "pytorch") == 0.02
    assert convert_l2(0.3, "sklearn", "course") == 0.3
    assert convert_l2(0.0, "course", "keras", m=M) == 0.0


@pytest.mark.parametrize("a, b", list(itertools.product(CONVENTIONS, repeat=2)))
def test_round_trips_and_paths_agree(a, b):
    x = 0.37
    assert convert_l2(convert_l2(x, a, b, m=M), b, a, m=M) == pytest.approx(x, rel=1e-14)
    via_course = convert_l2(convert_l2(x, a, "course", m=M), "course", b, m=M)
    assert convert_l2(x, a, b, m=M) == pytest.approx(via_course, rel=1e-14)


# ---------------------------------------------------------------------------------------------------
# Each conversion, proved


def sklearn_loss_and_grads(params, X, Y, alpha):
    """scikit-learn's own loss and gradients (``MLPClassifier._backprop``, a private method) for
    the same network: ReLU hidden layers, one logistic output, log loss, L2 ``alpha``, all
    ``m`` examples in one step (as solver="lbfgs" takes them). Its weights are ``W.T``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    L = len(params) // 2
    hidden = tuple(params[f"W{l}"].shape[0] for l in range(1, L))
    Xr, y = X.T, Y.T  # examples as rows; y (m, 1) as scikit-learn binarizes two classes
    clf = MLPClassifier(hidden_layer_sizes=hidden, activation="relu", alpha=alpha, solver="lbfgs", max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(Xr, Y.ravel())  # sets up the network's layout; its weights are replaced next
    clf.coefs_ = [np.array(params[f"W{l}"].T) for l in range(1, L + 1)]
    clf.intercepts_ = [np.array(params[f"b{l}"].ravel()) for l in range(1, L + 1)]
    units = [Xr.shape[1], *hidden, 1]
    buffers = dict(
        activations=[Xr] + [None] * L,
        deltas=[None] * L,
        coef_grads=[np.empty((a, b)) for a, b in itertools.pairwise(units)],
        intercept_grads=[np.empty(b) for b in units[1:]],
    )
    if "sample_weight" in inspect.signature(clf._backprop).parameters:  # scikit-learn >= 1.7
        buffers["sample_weight"] = None
    loss, coef_grads, intercept_grads = clf._backprop(X=Xr, y=y, **buffers)
    grads = {}
    for l in range(1, L + 1):
        grads[f"W{l}"], grads[f"b{l}"] = coef_grads[l - 1].T, intercept_grads[l - 1][:, None]
    return loss, grads


def test_sklearn_alpha_is_the_courses_lambd():
    """scikit-learn's loss and every gradient entry, with alpha, equal the course's with
    lambd = convert_l2(alpha, "sklearn", "course")."""
    params, X, Y = problem()
    alpha = 0.9
    lambd = convert_l2(alpha, "sklearn", "course", m=M)
    loss, grads = sklearn_loss_and_grads(params, X, Y, alpha)
    value, course = jax.value_and_grad(model.loss)(params, X, Y, lambd=lambd)
    assert loss == pytest.approx(float(value), rel=1e-12)
    assert_same_params(grads, course, rtol=1e-10)
    # The penalty is what differs from alpha = 0, and it is lambd/m W, the course's.
    _, plain = sklearn_loss_and_grads(params, X, Y, 0.0)
    for l in (1, 2, 3):
        np.testing.assert_allclose(grads[f"W{l}"] - plain[f"W{l}"], lambd / M * params[f"W{l}"], rtol=1e-8)


def keras_l2(l2, params):
    """Keras's ``kernel_regularizer=l2(l2)`` on every layer's weights: ``l2 * sum(square(W))``
    each (``keras.regularizers.L2.__call__``), added to the mean loss."""
    return sum(l2 * jnp.sum(jnp.square(params[k])) for k in params if k.startswith("W"))


def test_keras_l2_has_the_courses_loss_and_gradient():
    params, X, Y = problem()
    l2 = convert_l2(LAMBD, "course", "keras", m=M)
    value, keras = jax.value_and_grad(lambda p: model.loss(p, X, Y) + keras_l2(l2, p))(params)
    course_value, course = jax.value_and_grad(model.loss)(params, X, Y, lambd=LAMBD)
    assert float(value) == pytest.approx(float(course_value), rel=1e-14)
    assert_same_params(keras, course)


OPTIMIZERS = {
    "sgd": lambda: optax.sgd(LR),
    "momentum": lambda: optax.sgd(LR, momentum=0.9),
    "adam": lambda: optax.adam(0.01),
}


@pytest.mark.parametrize("convention", ["pytorch", "optax"])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_gradient_weight_decay_trains_as_the_course(convention, name):
    """PyTorch's weight_decay (its optimizers add wd * W to the gradient first) and optax's
    add_decayed_weights before the optimizer: the same steps as the course's L2 loss, under
    every optimizer."""
    params, X, Y = problem()
    wd = convert_l2(LAMBD, "course", convention, m=M)
    decayed = optax.chain(optax.add_decayed_weights(wd, mask=weights_only), OPTIMIZERS[name]())
    assert_same_params(trained(decayed, cross_entropy, params, X, Y),
                       trained(OPTIMIZERS[name](), course_loss(LAMBD), params, X, Y), rtol=1e-11)  # fmt: skip


def test_decoupled_decay_is_multiplied_by_the_learning_rate():
    """The definition: optax.adamw's decay subtracts lr * wd * W beside Adam's step."""
    params, X, Y = problem()
    wd, lr = 0.05, 0.01
    g = jax.grad(cross_entropy)(params, X, Y)
    adamw, adam = optax.adamw(lr, weight_decay=wd, mask=weights_only), optax.adam(lr)
    with_decay, _ = adamw.update(g, adamw.init(params), params)
    without, _ = adam.update(g, adam.init(params), params)
    for k in params:
        np.testing.assert_allclose(with_decay[k] - without[k], -lr * wd * params[k] * k.startswith("W"), atol=1e-15)


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
def test_decoupled_decay_equals_the_course_under_plain_sgd_only(name):
    """jaxreg's own --weight-decay (optax.add_decayed_weights after the optimizer's
    transformation, before the learning rate, as adamw): under plain SGD the course's steps;
    under momentum or Adam another optimization, which no decay value matches."""
    params, X, Y = problem()
    wd = convert_l2(LAMBD, "course", "decoupled", m=M)
    lr = LR if name != "adam" else 0.01
    decoupled = trained(make_optimizer(name, lr, wd), cross_entropy, params, X, Y)
    course = trained(make_optimizer(name, lr), course_loss(LAMBD), params, X, Y)
    if name == "sgd":
        assert_same_params(decoupled, course, rtol=1e-11)
    else:
        assert max(float(np.max(np.abs(decoupled[k] - course[k]))) for k in params) > 1e-6


def test_jaxreg_train_weight_decay_is_lambd_under_sgd():
    """By training: jaxreg.train with weight_decay = convert_l2(lambd, "course", "decoupled")
    and no lambd ends where the same run with lambd does."""
    _, X, Y = problem()
    options = dict(iterations=200, learning_rate=0.3, log_every=100, dtype="float64", seed=0)
    with_lambd = jaxreg.train(X, Y, DIMS, lambd=LAMBD, **options)
    with_decay = jaxreg.train(X, Y, DIMS, weight_decay=convert_l2(LAMBD, "course", "decoupled", m=M), **options)
    assert_same_params(with_decay.params, with_lambd.params, rtol=1e-10)


# ---------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        ((0.7, "torch", "course"), {}, ValueError,
         "from_: got 'torch', expected one of course, sklearn, keras, pytorch, optax, decoupled"),
        ((0.7, "course", "Keras"), {}, ValueError,
         "to: got 'Keras', expected one of course, sklearn, keras, pytorch, optax, decoupled"),
        ((-0.1, "course", "sklearn"), {}, ValueError, "value: got -0.1, expected a finite number >= 0"),
        ((float("nan"), "course", "sklearn"), {}, ValueError, "value: got nan, expected a finite number >= 0"),
        ((float("inf"), "keras", "pytorch"), {}, ValueError, "value: got inf, expected a finite number >= 0"),
        (("0.7", "course", "sklearn"), {}, TypeError, "value: got '0.7', expected a finite number >= 0"),
        ((0.7, "course", "keras"), {"m": 0}, ValueError,
         "m: got 0, expected an integer >= 1 (the number of training examples)"),
        ((0.7, "course", "keras"), {"m": 2.5}, ValueError,
         "m: got 2.5, expected an integer >= 1 (the number of training examples)"),
        ((0.7, "course", "pytorch"), {}, ValueError,
         "m: got None, expected the number of training examples (an integer >= 1): converting course to pytorch "
         "needs it (course: lambd; pytorch: weight_decay = lambd/m)"),
    ],
    ids=["from_", "to", "negative", "nan", "inf", "text", "m_zero", "m_float", "m_missing"],
)  # fmt: skip
def test_bad_input_is_named(args, kwargs, error, message):
    with pytest.raises(error) as info:
        convert_l2(*args, **kwargs)
    assert str(info.value) == message


def test_numpy_only():
    """jaxreg.convert_l2 loads without JAX (the command line's --help and bad input answer before JAX starts)."""
    code = "import sys, jaxreg; print(jaxreg.convert_l2(0.7, 'course', 'keras', m=7)); print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert float(out[0]) == pytest.approx(0.05, rel=1e-15) and out[1] == "False"
