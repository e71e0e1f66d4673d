"""The gradient check's error model, its fast path, autodiff's two modes, and its compilations."""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_gradcheck import backward_with_bugs, key, kinked_case, textbook_case, tiny_case, tiny_loss, wide_case

from jaxreg import cli, gradcheck, model, reference
from jaxreg.compilation import CompileClock

THRESHOLD = 2e-7
REGS = {
    "no_reg": dict(),
    "l2": dict(lambd=0.7),
    "dropout": dict(keep_prob=0.86),
    "l2_dropout": dict(lambd=0.7, keep_prob=(0.8, 0.6)),
}


def relu_pattern(p, X, Y, *, lambd=0.0, masks=None, keep_prob=1.0):
    """Which hidden units are on and kept, for every example: a flat boolean vector."""
    Z = model.preactivations(p, X, masks=masks, keep_prob=keep_prob)[:-1]
    kept = [None] * len(Z) if masks is None else masks
    return jnp.concatenate([(z > 0 if k is None else (z > 0) & k).ravel() for z, k in zip(Z, kept, strict=True)])


def network_options(params, X, reg, seed=0):
    """``check``'s keywords for ``model.loss`` with the masks ``check_network(key=key(seed))`` draws."""
    kp = reg.get("keep_prob", 1.0)
    dims = [X.shape[0]] + [params[f"W{l}"].shape[0] for l in range(1, len(params) // 2 + 1)]
    masks = None if kp == 1.0 else model.dropout_masks(key(seed), dims, X.shape[1], kp)
    return dict(lambd=reg.get("lambd", 0.0), masks=masks, keep_prob=kp if masks is not None else 1.0)


def one_entry_wrong(grads, name, index, delta):
    """``grads`` (the textbook's dW1, db1, ... dict) with ``d<name>[index]`` moved by ``delta``."""
    grads = {k: np.array(v, copy=True) for k, v in grads.items()}
    grads["d" + name][index] += delta
    return grads


# ---------------------------------------------------------------------------------------------------
# The fast path computes the generic path's losses


@pytest.mark.parametrize("reg", REGS.values(), ids=REGS.keys())
@pytest.mark.parametrize("case", [textbook_case, wide_case, kinked_case], ids=["textbook", "wide", "kinked"])
def test_fast_path_equals_generic_path(case, reg):
    params, X, Y = case()
    fast = gradcheck.check_network(params, X, Y, key=key(0), **reg).fd_vs_autodiff
    options = network_options(params, X, reg)
    generic = gradcheck.check(model.loss, params, X, Y, kink_pattern=relu_pattern, **options)
    assert fast.losses.shape == generic.losses.shape == (sum(v.size for v in params.values()), 4)
    # The same perturbed losses, up to a few roundings of J.
    np.testing.assert_allclose(fast.losses, generic.losses, rtol=8 * np.finfo(float).eps, atol=0)
    np.testing.assert_allclose(fast.grad, generic.grad, rtol=1e-13, atol=1e-16)
    assert [(k.name, k.index) for k in fast.kinks] == [(k.name, k.index) for k in generic.kinks]
    assert fast.passed and generic.passed
    if case is kinked_case:
        assert fast.n_kinks == 5


def test_directional_kinks_use_the_model_pattern():
    params, X, Y = kinked_case()
    report = gradcheck.check_network(params, X, Y, directions=3)
    # Every direction within W1 or b1 moves Z1[0, 0] off the kink; no other array reaches it.
    assert {(k.name, k.index) for k in report.kinks} == {(name, (k,)) for name in ("W1", "b1") for k in range(3)}
    assert report.passed and report.n_kinks == 6


# ---------------------------------------------------------------------------------------------------
# The error model


def test_rounding_bound_follows_the_loss_magnitude():
    """A loss of 1e5 rounds to ~1e-11, which 2 epsilon turns into ~1e-4 per coordinate: the
    textbook's verdict fails the honest gradient, the error model passes it."""
    params, X, y = tiny_case()
    report = gradcheck.check(lambda p, X, y: tiny_loss(p, X, y) + 1e5, params, X, y)
    assert not report.textbook_passed and report.difference > 1e-6
    assert report.passed and report.n_failed == 0
    # The bound is the rounding of J = 1e5 (4 u |J| / epsilon), not the gradient's size.
    assert np.all(report.bound >= 4 * np.finfo(float).eps * 1e5 / 1e-7)
    plain = gradcheck.check(tiny_loss, params, X, y)
    assert plain.passed and plain.textbook_passed and np.all(plain.bound < 1e-6)


def test_truncation_is_estimated_from_two_steps():
    """With epsilon = 1e-2 the difference is off by eps^2 J'''/6, far above the textbook's
    threshold; (approx(2 eps) - approx(eps)) / 3 estimates exactly that."""
    params, X, y = tiny_case()
    report = gradcheck.check(tiny_loss, params, X, y, epsilon=1e-2)
    assert not report.textbook_passed and report.passed
    error = np.abs(report.grad - report.approx)
    assert error.max() > 1e-6
    big = error > 1e-8  # where truncation dominates rounding, the estimate is within a few percent
    np.testing.assert_allclose(report.bound[big], error[big], rtol=0.1)


def test_wide_network_passes_the_error_model_only():
    """The textbook's difference sums every coordinate's rounding noise (~u |J| / epsilon, here
    |J| ~ 20 from the L2 term) over 30,000 coordinates: it fails a correct gradient."""
    rng = np.random.RandomState(0)
    dims = [2, 160, 160, 1]
    params = {}
    for l in range(1, len(dims)):
        params[f"W{l}"] = rng.randn(dims[l], dims[l - 1]) * np.sqrt(2 / dims[l - 1])
        params[f"b{l}"] = 0.1 * rng.randn(dims[l], 1)
    X, Y = rng.randn(2, 4), np.array([[1.0, 0.0, 0.0, 1.0]])
    report = gradcheck.check_network(params, X, Y, lambd=0.7)
    assert not report.textbook_passed and report.difference > 2 * THRESHOLD
    assert report.passed and max(e.ratio for e in report.fd_vs_backward.worst) < 1


def test_saturated_network_exact_comparison():
    """A network that is right and sure (logits -32 and 25): the NumPy backprop's dZ = AL - Y
    cancels, so its gradient is off by ~u / |AL - Y| relative, 10^10 times u. The bound of
    both gradients' rounding counts the cross-entropy's terms as if |AL - Y| were 1."""
    rng = np.random.RandomState(0)
    params = {"W1": rng.randn(16, 3), "b1": 0.1 * rng.randn(16, 1), "W2": rng.randn(1, 16), "b2": np.zeros((1, 1))}
    X = rng.randn(3, 2)
    logits = reference.forward(params, X)[1]["Z2"]
    Y = (logits > 0).astype(float)
    params["W2"] *= 25 / np.abs(logits).min()
    report = gradcheck.check_network(params, X, Y)
    exact = report.autodiff_vs_backward
    assert np.max(np.abs(exact.grad - exact.approx)) > 1e9 * np.finfo(float).eps * np.max(np.abs(exact.approx))
    assert report.passed, report.summary()


@pytest.mark.parametrize("path", ["fast", "generic"])
def test_safety_factor_separates_noise_from_a_bug(path):
    params, X, Y = wide_case()
    honest = reference.backward(params, X, Y, lambd=0.7)

    def run(grads):
        if path == "fast":
            return gradcheck.check_network(params, X, Y, lambd=0.7, backward=lambda *a, **k: grads).fd_vs_backward
        return gradcheck.check(model.loss, params, X, Y, grads=grads, lambd=0.7)

    bound = run(honest).bound[40 + 20 + 1 * 20 + 7]  # W2[1, 7], after W1 (40 entries) and b1 (20)
    within = run(one_entry_wrong(honest, "W2", (1, 7), 0.5 * gradcheck.SAFETY * bound))
    assert within.passed
    beyond = run(one_entry_wrong(honest, "W2", (1, 7), 2 * gradcheck.SAFETY * bound))
    assert not beyond.passed and beyond.offenders == ("W2",) and beyond.n_failed == 1
    assert (beyond.worst[0].name, beyond.worst[0].index) == ("W2", (1, 7))
    ratios = [e.ratio for e in beyond.worst]
    assert ratios == sorted(ratios, reverse=True) and ratios[0] > gradcheck.SAFETY


def test_nan_in_finite_differences_marks_the_array_as_an_offender():
    params = {"a": np.array([0.3, -1.2]), "b": np.array([1e-8, 2.0])}

    def loss(p):  # log of b[0] - epsilon < 0 is NaN
        return jnp.sum(jnp.sin(p["a"])) + jnp.sum(jnp.log(p["b"]))

    report = gradcheck.check(loss, params)
    assert np.isnan(report.approx[2]) and np.isfinite(report.approx[[0, 1, 3]]).all()
    assert report.offenders == ("b",) and report.n_failed == 1
    assert not report.passed and not report.textbook_passed and np.isnan(report.per_param["b"])
    assert (report.worst[0].name, report.worst[0].index) == ("b", (0,))


# ---------------------------------------------------------------------------------------------------
# Random networks: honest gradients pass, one entry 100x its bound off fails, on both paths


# Network shapes (layer_dims, m), fixed so that the examples share their compiled programs (a shape
# drawn per example compiled its own), spanning depth 1 to 4, widths 1 to 64 (to 12 on the generic
# path), 1 to 8 features and 1 to 64 examples (to 16); hypothesis draws among them and draws the values.
FAST_SHAPES = [((1, 1, 1), 1), ((8, 64, 1), 64), ((2, 20, 3, 1), 40), ((5, 7, 64, 2, 1), 9),
               ((3, 2, 30, 1, 12, 1), 64)]
GENERIC_SHAPES = [((1, 1, 1), 1), ((8, 12, 1), 16), ((2, 5, 3, 1), 7), ((4, 12, 1, 9, 3, 1), 16)]


@st.composite
def networks(draw, shapes=FAST_SHAPES):
    dims, m = draw(st.sampled_from(shapes))
    rng = np.random.RandomState(draw(st.integers(0, 2**31 - 1)))
    params = {}
    for l in range(1, len(dims)):
        params[f"W{l}"] = rng.randn(dims[l], dims[l - 1]) * np.sqrt(2 / dims[l - 1])
        params[f"b{l}"] = 0.1 * rng.randn(dims[l], 1)
    X, Y = rng.randn(dims[0], m), (rng.rand(1, m) < 0.5).astype(float)
    reg = dict(
        lambd=draw(st.sampled_from([0.0, 0.1, 0.7, 3.0])),
        keep_prob=draw(st.floats(0.5, 0.95)),  # dropout on
    )
    return params, X, Y, reg, rng


def perturbed_entry(report, params, rng):
    """A random coordinate off every kink: ``(name, index, flat position)``."""
    kinked = {(k.name, k.index) for k in report.kinks}
    names = [n for n in report.names for _ in range(params[n].size)]
    indices = [np.unravel_index(i, params[n].shape) for n in report.names for i in range(params[n].size)]
    free = [j for j in range(len(names)) if (names[j], tuple(map(int, indices[j]))) not in kinked]
    j = free[rng.randint(len(free))]
    return names[j], tuple(map(int, indices[j])), j


# derandomize: the same examples every run, so a warm run loads their compiled programs from the
# persistent cache instead of compiling a dozen new shapes (they still span depth, width, m, lambd, dropout)
PROPERTY = settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(networks())
def test_random_networks_fast_path(case):
    params, X, Y, reg, rng = case
    honest = gradcheck.check_network(params, X, Y, key=key(0), **reg)
    assert honest.passed, honest.summary()
    r = honest.fd_vs_backward
    name, index, j = perturbed_entry(r, params, rng)
    delta = 100 * r.bound[j] * rng.choice([-1, 1])
    grads = one_entry_wrong(reference.backward(params, X, Y, **network_options(params, X, reg)), name, index, delta)
    bad = gradcheck.check_network(params, X, Y, key=key(0), backward=lambda *a, **k: grads, **reg)
    assert not bad.passed and bad.fd_vs_autodiff.passed
    assert (bad.fd_vs_backward.worst[0].name, bad.fd_vs_backward.worst[0].index) == (name, index)
    assert bad.fd_vs_backward.offenders == (name,)


@PROPERTY
@given(networks(GENERIC_SHAPES))
def test_random_networks_generic_path(case):
    params, X, Y, reg, rng = case
    options = network_options(params, X, reg)
    # lambd and keep_prob as arrays: inputs of the check's program, not constants compiled into it
    options.update(lambd=np.asarray(options["lambd"]), keep_prob=np.asarray(options["keep_prob"]))
    grads = reference.backward(params, X, Y, **options)
    honest = gradcheck.check(model.loss, params, X, Y, grads=grads, kink_pattern=relu_pattern, **options)
    assert honest.passed, honest.summary()
    name, index, j = perturbed_entry(honest, params, rng)
    bad_grads = one_entry_wrong(grads, name, index, 100 * honest.bound[j] * rng.choice([-1, 1]))
    bad = gradcheck.check(model.loss, params, X, Y, grads=bad_grads, kink_pattern=relu_pattern, **options)
    assert not bad.passed and bad.offenders == (name,) and bad.n_failed == 1
    assert (bad.worst[0].name, bad.worst[0].index) == (name, index)


# ---------------------------------------------------------------------------------------------------
# Forward mode vs reverse mode vs finite differences


def two_outputs(p, x):
    hidden = jnp.tanh(p["w"] @ x + p["b"])
    return {"hidden": hidden, "norm": jnp.sum(p["w"] ** 2) * jnp.sum(hidden)}


def pytree_case(dtype):
    rng = np.random.RandomState(4)
    return {"w": rng.randn(3, 2).astype(dtype), "b": rng.randn(3).astype(dtype)}, rng.randn(2).astype(dtype)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_check_directions_passes_honest_derivatives(dtype, order):
    params, x = pytree_case(dtype)
    report = gradcheck.check_directions(two_outputs, params, x, order=order, directions=3)
    assert report.passed, report.summary()
    assert report.dtype == dtype and report.fd_tolerance == {"float64": 1e-5, "float32": 2e-3}[dtype]
    labels = {"f"} if order == 1 else {"f", "jvp of f", "vjp of f"}
    assert {e.function for e in report.entries} == labels and len(report.entries) == 3 * len(labels)


@jax.custom_vjp
def sin_bad_vjp(x):
    return jnp.sin(x)


sin_bad_vjp.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (1.1 * jnp.cos(x) * g,))


@jax.custom_jvp
def sin_bad_jvp(x):
    return jnp.sin(x)


sin_bad_jvp.defjvp(lambda primals, tangents: (jnp.sin(primals[0]), 1.1 * jnp.cos(primals[0]) * tangents[0]))


@jax.custom_jvp
def sin_first_order_only(x):
    return jnp.sin(x)


# Right first derivative, whose own derivative (stop_gradient) is wrong.
sin_first_order_only.defjvp(
    lambda primals, tangents: (jnp.sin(primals[0]), jax.lax.stop_gradient(jnp.cos(primals[0])) * tangents[0])
)

A = np.array([[2.0, 1.0], [0.5, 3.0]])


def solve_bad_transpose(b):
    """``A^-1 b`` whose transpose solve forgets the transpose: reverse mode alone is wrong."""
    def solve(_, b):
        return jnp.linalg.solve(A, b)

    return jax.lax.custom_linear_solve(lambda x: A @ x, b, solve=solve, transpose_solve=solve)


def verdicts(report):
    """Per entry: (modes agree, forward agrees with the finite difference, reverse agrees)."""
    return {(e.modes_agree, e.forward_agrees, e.reverse_agrees) for e in report.entries}


def test_check_directions_finds_each_wrong_rule():
    x = {"x": np.linspace(-1.0, 2.0, 5)}
    # A wrong transpose: forward mode and finite differences agree, reverse mode does not.
    transpose = gradcheck.check_directions(lambda p: solve_bad_transpose(p["x"][:2]), x)
    assert not transpose.passed and verdicts(transpose) == {(False, True, False)}
    # A wrong jvp rule: reverse mode transposes it, so the modes agree; finite differences do not.
    bad_jvp = gradcheck.check_directions(lambda p: sin_bad_jvp(p["x"]), x)
    assert verdicts(bad_jvp) == {(True, False, False)}
    # A custom_vjp function has no forward mode: check reverse mode alone.
    bad_vjp = gradcheck.check_directions(lambda p: sin_bad_vjp(p["x"]), x, modes=("rev",))
    assert verdicts(bad_vjp) == {(True, True, False)} and np.isnan(bad_vjp.entries[0].forward)
    assert gradcheck.check_directions(lambda p: jnp.sin(p["x"]), x, modes=("rev",)).passed
    first = gradcheck.check_directions(lambda p: sin_first_order_only(p["x"]), x)
    second = gradcheck.check_directions(lambda p: sin_first_order_only(p["x"]), x, order=2)
    assert first.passed and not second.passed
    assert {e.function for e in second.entries if not e.passed} == {"jvp of f", "vjp of f"}
    with pytest.raises(ValueError, match="order"):
        gradcheck.check_directions(jnp.sin, x, order=3)
    with pytest.raises(ValueError, match="modes"):
        gradcheck.check_directions(jnp.sin, x, modes=("forward",))


# ---------------------------------------------------------------------------------------------------
# A fixed, small set of compiled programs


@contextlib.contextmanager
def compilations():
    """Counts XLA compilations in the block: ``with compilations() as n: ...; n[0]``."""
    count = [0]

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            count[0] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def test_check_network_compiles_once_per_shape():
    params, X, Y = textbook_case()
    other = {k: v + 0.01 for k, v in params.items()}
    keys = key(0), key(1)  # made before counting: a key is a compiled program of its own
    jax.clear_caches()
    with compilations() as first:
        gradcheck.check_network(params, X, Y, lambd=0.3, keep_prob=0.8, key=keys[0])
    with compilations() as again:  # other values, other masks, same shapes: nothing new
        gradcheck.check_network(other, X, Y, lambd=0.7, keep_prob=0.8, key=keys[1])
    with compilations() as command:
        assert cli.main(["gradcheck", "--json", "--keep-prob", "0.9", "--lambd", "0.1"]) == 0
    assert first[0] <= 2  # the masks, the check
    assert again[0] == 0
    assert command[0] <= 2  # the inputs, the check (op by op it was 48)


CHECK_OPTIONS = {
    "jax_grad": dict(),
    "grads": dict(grads=True),
    "kink_pattern": dict(kink_pattern=relu_pattern),
    "directions": dict(directions=3),
}


@pytest.mark.parametrize("options", CHECK_OPTIONS.values(), ids=CHECK_OPTIONS.keys())
def test_check_compiles_once_per_shape(options):
    """The second check of the same loss, with the same options, on new values of the same
    shapes compiles nothing (it used to trace and compile anew: ~0.5 s on [2, 20, 3, 1])."""
    params, X, Y = textbook_case()

    def run(params, X, Y):
        kw = dict(options)
        if kw.pop("grads", False):
            kw["grads"] = reference.backward(params, X, Y, lambd=0.3)
        return gradcheck.check(model.loss, params, X, Y, lambd=0.3, **kw)

    run(params, X, Y)  # compiles, or loads from the persistent cache
    clock = CompileClock()
    report = run({k: v + 0.01 for k, v in params.items()}, X + 0.1, 1 - Y)
    assert clock.programs == [] and report.passed


def test_check_network_directions_compiles_once_per_shape():
    params, X, Y = textbook_case()
    keys = key(0), key(1), key(2), key(3)
    gradcheck.check_network(params, X, Y, lambd=0.3, keep_prob=0.8, key=keys[0], directions=3, direction_key=keys[2])
    clock = CompileClock()
    other = {k: v + 0.01 for k, v in params.items()}
    report = gradcheck.check_network(other, X, Y, lambd=0.7, keep_prob=0.8, key=keys[1], directions=3,
                                     direction_key=keys[3])  # fmt: skip
    assert clock.programs == [] and report.passed


# ---------------------------------------------------------------------------------------------------
# The model's layer loop, as the check uses it


def test_preactivations_from_any_layer():
    params, X, Y = wide_case()
    masks = model.dropout_masks(key(2), [2, 20, 3, 1], X.shape[1], 0.8)
    Z = model.preactivations(params, X, masks=masks, keep_prob=0.8)
    assert [z.shape for z in Z] == [(20, 30), (3, 30), (1, 30)]
    np.testing.assert_array_equal(Z[-1], model.forward(params, X, masks=masks, keep_prob=0.8))
    _, cache = reference.forward(params, X, masks=masks, keep_prob=0.8)
    tail = model.preactivations(params, cache["A1"], masks=masks, keep_prob=0.8, first=2)
    np.testing.assert_allclose(tail[0], cache["Z2"], rtol=1e-12)
    np.testing.assert_allclose(tail[1], cache["Z3"], rtol=1e-12)
    with pytest.raises(ValueError, match="first: got 4, expected a layer from 1 to 3"):
        model.preactivations(params, X, first=4)
    with pytest.raises(ValueError, match=r"X: got shape \(2, 30\), expected \(20, m\), the input of layer 2"):
        model.preactivations(params, X, first=2)


def test_textbook_bugs_under_both_rules():
    params, X, Y = textbook_case()
    grads = backward_with_bugs(params, X, Y, bugs=("dW2x2", "db1_4/m"))
    report = gradcheck.check_network(params, X, Y, backward=lambda *a, **k: grads)
    assert not report.verdict("textbook") and not report.verdict("error-model")
    assert report.fd_vs_backward.difference == pytest.approx(0.2850931567761624, rel=1e-6)
    with pytest.raises(ValueError, match="rule: got 'strict'"):
        report.verdict("strict")
