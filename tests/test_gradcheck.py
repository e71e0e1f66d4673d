"""jaxreg.gradcheck and ``jaxreg gradcheck``: finite differences vs jax.grad vs the NumPy backprop."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreg import cli, gradcheck, model, reference

THRESHOLD = 2e-7  # the textbook's verdict
EXACT = 1e-10  # jax.grad vs the NumPy backprop: both are exact up to rounding
NAMES = ("W1", "b1", "W2", "b2", "W3", "b3")


def textbook_case():
    """The textbook's gradient-check network [4, 5, 3, 1] (its ``gradient_check_n_test_case``)."""
    rng = np.random.RandomState(1)
    X = rng.randn(4, 3)
    Y = np.array([[1.0, 1.0, 0.0]])
    params = {}
    for name, shape in zip(NAMES, [(5, 4), (5, 1), (3, 5), (3, 1), (1, 3), (1, 1)], strict=True):
        params[name] = rng.randn(*shape)
    return params, X, Y


def wide_case():
    """The reference shape [2, 20, 3, 1] on 30 random examples, with non-zero biases."""
    rng = np.random.RandomState(0)
    params = reference.init_params([2, 20, 3, 1], seed=3)
    params = {k: v + 0.1 * rng.randn(*v.shape) if k.startswith("b") else v for k, v in params.items()}
    X = rng.randn(2, 30)
    Y = (rng.rand(1, 30) < 0.5).astype(float)
    return params, X, Y


CASES = {"textbook_4_5_3_1": textbook_case, "wide_2_20_3_1": wide_case}
REGS = {
    "no_reg": dict(),
    "l2": dict(lambd=0.7),
    "dropout": dict(keep_prob=0.86),
    "l2_dropout": dict(lambd=0.7, keep_prob=(0.8, 0.6)),
}


def backward_with_bugs(params, X, Y, *, lambd=0.0, masks=None, keep_prob=1.0, bugs=()):
    """A copy of ``reference.backward`` with optional planted bugs: ``"dW2x2"`` and ``"db1_4/m"``
    (the textbook's two deliberate ones) and ``"no_keep_prob"`` (dropout's dA not divided by
    keep_prob). Returns the textbook's dict, dA/dZ entries included."""
    L = len(params) // 2
    kps = np.broadcast_to(np.asarray(keep_prob, float), (L - 1,))
    m = X.shape[1]
    _, cache = reference.forward(params, X, masks=masks, keep_prob=keep_prob)
    grads = {}
    dZ = cache[f"A{L}"] - Y
    for l in range(L, 0, -1):
        grads[f"dZ{l}"] = dZ
        A_prev, W = cache[f"A{l - 1}"], params[f"W{l}"]
        grads[f"dW{l}"] = 1.0 / m * np.dot(dZ, A_prev.T) + lambd / m * W
        if l == 2 and "dW2x2" in bugs:
            grads["dW2"] = grads["dW2"] * 2
        scale = 4.0 if l == 1 and "db1_4/m" in bugs else 1.0
        grads[f"db{l}"] = scale / m * np.sum(dZ, axis=1, keepdims=True)
        if l > 1:
            dA = np.dot(W.T, dZ)
            if masks is not None:
                dA = dA * masks[l - 2]
                if "no_keep_prob" not in bugs:
                    dA = dA / kps[l - 2]
            grads[f"dA{l - 1}"] = dA
            dZ = dA * (A_prev > 0)
    return grads


def buggy(*bugs):
    def backward(*args, **kwargs):
        return backward_with_bugs(*args, bugs=bugs, **kwargs)

    return backward


def key(seed=0):
    return jax.random.PRNGKey(seed)


# ---------------------------------------------------------------------------------------------------
# The three-way check on honest gradients


@pytest.mark.parametrize("reg", REGS.values(), ids=REGS.keys())
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_three_way_agreement(case, reg):
    params, X, Y = case()
    # Key 0: some masks (key 1 on the wide case) leave b3's gradient near 0, where any relative
    # difference is finite-difference noise; the overall check passes there too.
    report = gradcheck.check_network(params, X, Y, key=key(0), **reg)
    assert report.passed and report.offenders == ()
    assert report.fd_vs_autodiff.names == NAMES and tuple(report.per_param) == NAMES
    for r in (report.fd_vs_autodiff, report.fd_vs_backward):
        assert r.difference < THRESHOLD
        assert max(r.per_param.values()) < THRESHOLD
        assert r.n_losses == 4 * sum(v.size for v in params.values())
        assert r.vectorised
    assert report.autodiff_vs_backward.difference < EXACT
    assert max(report.autodiff_vs_backward.per_param.values()) < EXACT
    assert report.difference == max(r.difference for r in report.reports.values())


def test_dropout_masks_stay_fixed_and_matter():
    params, X, Y = wide_case()
    a = gradcheck.check_network(params, X, Y, keep_prob=0.86, key=key(1))
    b = gradcheck.check_network(params, X, Y, keep_prob=0.86, key=key(1))
    c = gradcheck.check_network(params, X, Y, keep_prob=0.86, key=key(2))
    np.testing.assert_array_equal(a.fd_vs_backward.approx, b.fd_vs_backward.approx)
    assert not np.allclose(a.fd_vs_backward.grad, c.fd_vs_backward.grad)  # other masks, other gradient
    masks = model.dropout_masks(key(1), [2, 20, 3, 1], X.shape[1], 0.86)
    d = gradcheck.check_network(params, X, Y, keep_prob=0.86, masks=masks)
    np.testing.assert_array_equal(a.fd_vs_backward.grad, d.fd_vs_backward.grad)


def test_textbook_data(course_data):
    X, Y, _, _ = course_data
    params = reference.init_params([2, 20, 3, 1], seed=3)
    report = gradcheck.check_network(params, X, Y, lambd=0.7, keep_prob=0.86, key=key(0))
    assert report.passed
    assert report.autodiff_vs_backward.difference < EXACT


# ---------------------------------------------------------------------------------------------------
# Planted bugs are caught and located


def test_textbook_bugs_are_caught_and_named():
    params, X, Y = textbook_case()
    report = gradcheck.check_network(params, X, Y, backward=buggy("dW2x2", "db1_4/m"))
    assert not report.passed
    assert report.offenders == ("b1", "W2")
    assert report.fd_vs_autodiff.passed  # jax.grad is right: the bug is in the backprop
    assert report.fd_vs_backward.offenders == report.autodiff_vs_backward.offenders == ("b1", "W2")
    assert {e.name for e in report.fd_vs_backward.worst[:3]} <= {"b1", "W2"}
    # A scaled gradient has a known per-array difference: |c - 1| / (c + 1).
    assert report.fd_vs_backward.per_param["W2"] == pytest.approx(1 / 3, rel=1e-6)
    assert report.fd_vs_backward.per_param["b1"] == pytest.approx(3 / 5, rel=1e-6)


def textbook_cost(p, X, Y):
    """The textbook's own NumPy cost (log of the sigmoid), which its gradient_check_n differences."""
    return reference.cost(reference.forward(p, X)[0], Y)


def test_check_reproduces_the_textbook_difference():
    """The textbook's gradient_check_n on its buggy backprop prints 0.2850931567761624."""
    params, X, Y = textbook_case()
    grads = backward_with_bugs(params, X, Y, bugs=("dW2x2", "db1_4/m"))  # dW1 keys, dZ/dA extras
    # With the textbook's own cost: its number, to the last digit or two.
    report = gradcheck.check(textbook_cost, params, X, Y, grads=grads)
    assert report.difference == pytest.approx(0.2850931567761624, rel=1e-15, abs=0)
    assert not report.textbook_passed and not report.passed and not report.vectorised
    # Every non-zero entry of db1 (x 4) and dW2 (x 2) fails, nothing else.
    assert report.offenders == ("b1", "W2")
    assert report.n_failed == np.count_nonzero(grads["db1"]) + np.count_nonzero(grads["dW2"]) > 0
    # jaxreg.loss is the same cost as one softplus per example: equal up to rounding.
    report = gradcheck.check(model.loss, params, X, Y, grads=grads)
    assert not report.textbook_passed and not report.passed and report.offenders == ("b1", "W2")
    assert report.difference == pytest.approx(0.2850931567761624, rel=1e-6)


def test_dropout_bug_is_caught_only_with_dropout():
    params, X, Y = textbook_case()
    bad = buggy("no_keep_prob")
    report = gradcheck.check_network(params, X, Y, keep_prob=0.86, key=key(1), backward=bad)
    assert not report.passed
    assert report.offenders == ("W1", "b1", "W2", "b2")  # everything below the last dropout layer
    assert gradcheck.check_network(params, X, Y, backward=bad).passed  # no dropout: nothing to forget


@pytest.mark.parametrize(
    "bugs, reg",
    [
        ((), {}),
        ((), dict(lambd=0.7, keep_prob=0.86)),
        (("dW2x2", "db1_4/m"), {}),
        (("no_keep_prob",), dict(keep_prob=0.86)),
        (("db1_4/m",), dict(lambd=0.7)),
    ],
    ids=["honest", "honest_l2_dropout", "textbook_bugs", "dropout_bug", "db1_bug_l2"],
)
def test_directional_check_agrees_with_full_check(bugs, reg):
    params, X, Y = wide_case()
    options = dict(backward=buggy(*bugs), key=key(1), **reg)
    full = gradcheck.check_network(params, X, Y, **options)
    directional = gradcheck.check_network(params, X, Y, directions=4, direction_key=key(7), **options)
    assert directional.passed == full.passed == (not bugs)
    assert directional.offenders == full.offenders
    assert directional.fd_vs_backward.mode == "directions"
    assert directional.fd_vs_backward.n_losses == 4 * 4 * len(NAMES)
    assert all(e.index[0] < 4 for e in directional.fd_vs_backward.worst)


def test_directions_are_seeded():
    params, X, Y = textbook_case()
    a, b, c = (
        gradcheck.check(model.loss, params, X, Y, directions=2, direction_key=key(s)) for s in (0, 0, 1)
    )
    np.testing.assert_array_equal(a.grad, b.grad)
    assert not np.allclose(a.grad, c.grad)


# ---------------------------------------------------------------------------------------------------
# ReLU kinks


def kinked_case():
    """The textbook network with hidden unit 0's pre-activation on example 0 put at the kink."""
    params, X, Y = textbook_case()
    params["b1"][0, 0] = -params["W1"][0] @ X[:, 0]
    return params, X, Y


def test_kinks_are_flagged_exactly_and_judged_between_one_sided_differences():
    params, X, Y = kinked_case()
    report = gradcheck.check_network(params, X, Y)
    # Only W1[0, :] and b1[0] move Z1[0, 0]; +-epsilon puts it on both sides of 0.
    assert {(k.name, k.index) for k in report.kinks} == {("b1", (0, 0))} | {("W1", (0, j)) for j in range(4)}
    assert report.n_kinks == report.fd_vs_backward.n_kinks == 5 and all(k.named for k in report.kinks)
    # Across the kink the two-sided difference is half a slope off: the textbook fails an honest
    # gradient there; the error model judges those five between their one-sided differences.
    assert not report.textbook_passed and report.per_param["W1"] > 1e-2
    assert report.passed and report.offenders == ()
    for k in report.kinks:
        assert k.passed and min(k.left, k.right) - 10 * k.bound <= k.grad <= max(k.left, k.right) + 10 * k.bound
    assert gradcheck.check_network(*textbook_case()).kinks == ()


def test_kinks_of_dropped_units_are_not_flagged():
    params, X, Y = kinked_case()
    masks = (np.ones((5, 3), bool), np.ones((3, 3), bool))
    masks[0][0, 0] = False  # the unit at the kink is dropped on that example
    assert gradcheck.check_network(params, X, Y, keep_prob=0.8, masks=masks).kinks == ()
    masks[0][0, 0], masks[0][1, 1] = True, False
    assert gradcheck.check_network(params, X, Y, keep_prob=0.8, masks=masks).kinks != ()


def near_kink_case(z=1e-8):
    """[2, 3, 1] on one example, hidden unit 0's pre-activation ``z`` above its kink (issue 22)."""
    rng = np.random.RandomState(0)
    params = {"W1": rng.randn(3, 2), "b1": rng.randn(3, 1), "W2": rng.randn(1, 3), "b2": rng.randn(1, 1)}
    X, Y = rng.randn(2, 1), np.array([[1.0]])  # X = [0.12, 0.44]
    params["b1"][0, 0] = z - params["W1"][0] @ X[:, 0]
    return params, X, Y


def kink_of(report, name, index):
    return next(k for k in report.kinks if (k.name, k.index) == (name, index))


def test_kinks_are_found_without_a_hint():
    """A unit 1e-8 above zero: the steps of b1[0] (moving it by s), W1[0, 1] (0.44 s) and W1[0, 0]
    (0.12 s) cross its kink at 0.1 e, 0.2 e and 0.8 e, where the two-sided difference of the
    first two is off by a third of the slope or more (before issue 22 they failed). Their
    one-sided differences disagree: the honest gradient, the slope with the unit on, is the
    right one (the left one mixes both slopes), and passes."""
    params, X, Y = near_kink_case()
    grads = reference.backward(params, X, Y)
    report = gradcheck.check(model.loss, params, X, Y, grads=grads)
    assert report.passed and report.offenders == () and report.n_failed == 0, report.summary()
    assert not report.textbook_passed and report.per_param["b1"] > 0.1
    kinks = [("W1", (0, 0)), ("W1", (0, 1)), ("b1", (0, 0))]
    assert [(k.name, k.index) for k in report.kinks] == kinks and report.n_kinks == 3
    for k in report.kinks:
        assert k.passed and not k.named
        assert k.right == pytest.approx(k.grad, rel=1e-7) and abs(k.left - k.right) > 0.001
    # The fast path names the same three by the ReLU pattern, and they pass.
    network = gradcheck.check_network(params, X, Y)
    assert network.passed, network.summary()
    assert [(k.name, k.index) for k in network.kinks] == kinks and all(k.named and k.passed for k in network.kinks)


@pytest.mark.parametrize("path", ["check", "check_network"])
@pytest.mark.parametrize("scale", [0.0, 2.0, -1.0], ids=["unit_off", "doubled", "sign"])
def test_a_wrong_value_at_a_kink_fails(scale, path):
    """db1[0] as if the unit were off (0: its left slope), doubled, or of the wrong sign: each
    lies outside its one-sided differences, [-0.012, -0.119], and fails, named first."""
    params, X, Y = near_kink_case()
    grads = reference.backward(params, X, Y)
    grads["db1"] = grads["db1"] * np.array([[scale], [1.0], [1.0]])
    if path == "check":
        report = gradcheck.check(model.loss, params, X, Y, grads=grads)
    else:
        report = gradcheck.check_network(params, X, Y, backward=lambda *a, **k: grads).fd_vs_backward
    assert not report.passed and report.offenders == ("b1",) and report.n_failed == 1
    assert (report.worst[0].name, report.worst[0].index, report.worst[0].kink) == ("b1", (0, 0), True)
    assert report.worst[0].ratio > gradcheck.SAFETY
    assert not kink_of(report, "b1", (0, 0)).passed
    assert all(k.passed for k in report.kinks if k.name != "b1")


def test_a_value_between_the_one_sided_differences_passes():
    """The rule's limit, stated: between the two one-sided differences a wrong value cannot be
    told from a subgradient, so it passes; a hair beyond them it does not."""
    params, X, Y = near_kink_case()
    grads = reference.backward(params, X, Y)
    k = kink_of(gradcheck.check(model.loss, params, X, Y, grads=grads), "b1", (0, 0))
    for value, passes in [((k.left + k.right) / 2, True), (max(k.left, k.right) + 0.001, False)]:
        grads["db1"] = grads["db1"].copy()
        grads["db1"][0, 0] = value
        assert gradcheck.check(model.loss, params, X, Y, grads=grads).passed == passes


C = np.array([0.3, -1.2, 0.7, 2.0])
HINGE_X = np.array([[1.0, 2.0], [-0.5, 1.5], [2.0, -1.0]])  # 3 examples (rows), 2 features
HINGE_Y = np.array([1.0, -1.0, 1.0])
HINGE_W = np.array([0.4, -0.3])


def near(values, offsets):
    """``values`` moved by ``offsets`` finite-difference steps."""
    return np.asarray(values, np.float64) + np.asarray(offsets, np.float64) * gradcheck.EPSILON


def with_value(tree, name, index, value):
    """A copy of the dict of arrays ``tree`` with ``tree[name][index] = value``."""
    tree = {k: np.array(v, np.float64) for k, v in tree.items()}
    tree[name][index] = value
    return tree


KINKED_LOSSES = {
    # |w - c| summed, plus a smooth term: entries 0.3 e above and 0.2 e below their kink, one at it, one far.
    "abs": (lambda p: jnp.sum(jnp.abs(p["w"] - C)) + 0.5 * jnp.sum(p["w"] ** 2),
            {"w": near(C, [0.3, -0.2, 0.0, 4e5])},
            {("w", (0,)), ("w", (1,)), ("w", (2,))}),
    # max(a, b) per entry: a 0.4 e above b, 0.25 e below it, tied, far apart; both arrays' steps cross.
    "max": (lambda p: jnp.sum(jnp.maximum(p["a"], p["b"]) * jnp.array([1.0, 2.0, -1.0, 0.5])) + jnp.sum(p["b"] ** 2),
            {"a": near(C, [0.4, -0.25, 0.0, 3e5]), "b": C},
            {(name, (i,)) for name in "ab" for i in range(3)}),
    # The mean hinge loss of a linear classifier: example 0's margin 0.3 e above 1 (b moves it by s,
    # w by x0 s = (s, 2 s)); the others far from theirs.
    "hinge": (lambda p: jnp.mean(jax.nn.relu(1 - HINGE_Y * (HINGE_X @ p["w"] + p["b"]))) + 0.1 * jnp.sum(p["w"] ** 2),
              {"w": HINGE_W, "b": near(1 - HINGE_X[0] @ HINGE_W, 0.3)},
              {("b", ()), ("w", (0,)), ("w", (1,))}),
}  # fmt: skip


@pytest.mark.parametrize("name", KINKED_LOSSES)
def test_kinked_losses_pass_correct_gradients_and_fail_wrong_ones(name):
    loss, params, expected = KINKED_LOSSES[name]
    report = gradcheck.check(loss, params)
    assert report.passed, report.summary()
    assert {(k.name, k.index) for k in report.kinks} == expected and not any(k.named for k in report.kinks)
    assert not report.textbook_passed  # the two-sided differences across the kinks are off
    grads = jax.grad(loss)(params)
    for k in report.kinks:
        far = k.left if abs(k.left - k.grad) > abs(k.right - k.grad) else k.right
        # Past the farther one-sided difference (the slope on the wrong side of the kink, the
        # comparison the wrong way round), and below both sides.
        for wrong in (k.grad + 1.5 * (far - k.grad), min(k.left, k.right) - 1.0):
            broken = gradcheck.check(loss, params, grads=with_value(grads, k.name, k.index, wrong))
            assert not broken.passed and broken.offenders == (k.name,) and broken.n_failed == 1, (k, wrong)
            assert (broken.worst[0].name, broken.worst[0].index, broken.worst[0].kink) == (k.name, k.index, True)


# ---------------------------------------------------------------------------------------------------
# check(): any loss, any pytree


def tiny_loss(p, X, y):
    hidden = jnp.tanh(X @ p["layer"]["w"].T + p["layer"]["b"][None, :])
    return jnp.mean((hidden @ p["head"] - y) ** 2) * p["scale"]


def tiny_case():
    rng = np.random.RandomState(5)
    params = {
        "layer": {"w": rng.randn(3, 2), "b": rng.randn(3)},
        "head": rng.randn(3),
        "scale": np.float64(1.5),
    }
    return params, rng.randn(7, 2), rng.randn(7)


def test_check_nested_pytree_and_names():
    params, X, y = tiny_case()
    report = gradcheck.check(tiny_loss, params, X, y)
    assert report.passed and report.difference < THRESHOLD
    assert report.names == ("head", "layer.b", "layer.w", "scale")  # the pytree's own order
    grads = jax.grad(tiny_loss)(params, X, y)
    grads["layer"]["w"] = grads["layer"]["w"].at[1, 0].add(1e-3)
    bad = gradcheck.check(tiny_loss, params, X, y, grads=grads)
    assert not bad.passed and bad.offenders == ("layer.w",)
    assert (bad.worst[0].name, bad.worst[0].index) == ("layer.w", (1, 0))


def test_check_list_pytree():
    rng = np.random.RandomState(2)
    params, X = [rng.randn(3), rng.randn()], rng.randn(4, 3)
    report = gradcheck.check(lambda p, X: jnp.sum(jnp.sin(X @ p[0] + p[1])), params, X)
    assert report.passed and report.names == ("0", "1")


def test_textbook_order_beyond_nine_layers():
    # A dict flattens with sorted keys (W1, W10, W11, W2, ...); the check keeps the textbook's order.
    rng = np.random.RandomState(3)
    params = {f"{c}{l}": rng.randn(2) for l in range(1, 12) for c in "bW"}
    weights = {k: float(i) for i, k in enumerate(sorted(params))}

    def loss(p):
        return sum(w * jnp.sum(jnp.sin(p[k])) for k, w in weights.items())

    report = gradcheck.check(loss, params)
    expected = tuple(f"{c}{l}" for l in range(1, 12) for c in "Wb")
    assert report.names == expected and tuple(report.per_param) == expected
    assert report.passed
    # The flat vector follows the same order: its first two values are W1's gradient.
    np.testing.assert_allclose(report.grad[:2], weights["W1"] * np.cos(params["W1"]), rtol=1e-12)


def test_perturbed_losses_are_one_compiled_call():
    params, X, Y = textbook_case()
    calls = []

    def counted(p, X, Y):
        calls.append(1)
        return model.loss(p, X, Y)

    report = gradcheck.check(counted, params, X, Y)
    assert report.passed and report.vectorised and report.n_losses == 4 * 47
    # Python runs the loss a handful of times (shape, grad, a trace or two per array), not once
    # per perturbation.
    assert len(calls) <= 2 + 2 * len(params)


def test_batches_with_a_remainder_give_the_same_losses(monkeypatch):
    params, X, Y = textbook_case()  # W1 has 20 entries, W2 15
    whole = gradcheck.check(model.loss, params, X, Y)
    network = gradcheck.check_network(params, X, Y, lambd=0.3)
    monkeypatch.setattr(gradcheck.core, "BATCH_ELEMENTS", 4 * 20 * 3)  # W1: batches of 3, 6 full and 2 left
    batched = gradcheck.check(model.loss, params, X, Y)
    # Other batches round a little differently: equal to a few ulps.
    np.testing.assert_allclose(batched.losses, whole.losses, rtol=4e-16, atol=0)
    monkeypatch.setattr(gradcheck.core, "BATCH_ELEMENTS", 4 * 3 * 4 * 7)  # the fast path's layer 1: batches of 4
    network_batched = gradcheck.check_network(params, X, Y, lambd=0.3)
    np.testing.assert_allclose(network_batched.fd_vs_backward.losses, network.fd_vs_backward.losses, rtol=4e-16, atol=0)


def test_numpy_loss_runs_in_a_loop():
    params, X, Y = textbook_case()
    report = gradcheck.check(textbook_cost, params, X, Y, grads=reference.backward(params, X, Y))
    # The textbook's NumPy cost (log(1 - sigmoid)) is noisier than jaxreg.loss, but still passes.
    assert report.passed and report.difference < THRESHOLD and not report.vectorised
    bad = gradcheck.check(textbook_cost, params, X, Y, grads=buggy("dW2x2")(params, X, Y))
    assert not bad.passed and "W2" in bad.offenders and bad.worst[0].name == "W2"
    with pytest.raises(TypeError, match="grads="):
        gradcheck.check(textbook_cost, params, X, Y)


@pytest.mark.parametrize(
    "grads, match",
    [
        (lambda g: {k: v for k, v in g.items() if k != "db2"}, r"missing \['b2'\]"),
        (lambda g: {**g, "dW1": g["dW1"].T}, r"grads\['W1'\]: got shape \(4, 5\), expected \(5, 4\)"),
    ],
    ids=["missing", "shape"],
)
def test_bad_grads_are_named(grads, match):
    params, X, Y = textbook_case()
    with pytest.raises(ValueError, match=match):
        gradcheck.check(model.loss, params, X, Y, grads=grads(reference.backward(params, X, Y)))


@pytest.mark.parametrize(
    "option",
    [dict(epsilon=-1.0), dict(epsilon=float("nan")), dict(threshold=0.0), dict(directions=0)],
    ids=["epsilon", "epsilon_nan", "threshold", "directions"],
)
def test_bad_options(option):
    params, X, Y = textbook_case()
    with pytest.raises(ValueError, match=next(iter(option))):
        gradcheck.check(model.loss, params, X, Y, **option)


def test_dropout_needs_key_or_masks():
    params, X, Y = textbook_case()
    with pytest.raises(ValueError, match="key"):
        gradcheck.check_network(params, X, Y, keep_prob=0.8)


# ---------------------------------------------------------------------------------------------------
# Precision guard: the check runs in float64 even when x64 is off, and refuses float32


def test_float32_inputs_are_checked_in_float64():
    with jax.enable_x64(False):
        params = model.init_params(key(0), [4, 5, 3, 1])
        X = jax.random.normal(key(1), (4, 3))
        Y = jnp.array([[1.0, 0.0, 1.0]])
        assert params["W1"].dtype == X.dtype == jnp.float32
        report = gradcheck.check(model.loss, params, X, Y)
        network = gradcheck.check_network(params, X, Y)
        assert jnp.zeros(()).dtype == jnp.float32  # the caller's setting is back
    assert report.passed and report.difference < THRESHOLD
    assert network.passed and network.autodiff_vs_backward.difference < EXACT


def test_float32_loss_is_refused():
    params, X, Y = textbook_case()
    with pytest.raises(ValueError, match="float32.*float64"):
        gradcheck.check(lambda p, X, Y: model.loss(p, X, Y).astype(jnp.float32), params, X, Y)


def test_float32_grads_are_refused():
    params, X, Y = textbook_case()
    grads = {k: v.astype(np.float32) for k, v in reference.backward(params, X, Y).items()}
    with pytest.raises(ValueError, match=r"grads\['W1'\]: got float32, expected float64"):
        gradcheck.check(model.loss, params, X, Y, grads=grads)


# ---------------------------------------------------------------------------------------------------
# The command line


def test_cli_passes_and_prints_a_table(capsys):
    assert cli.main(["gradcheck"]) == 0
    out = capsys.readouterr().out
    assert "PASSED" in out and "[4, 5, 3, 1]" in out
    assert all(any(line.startswith(name) for line in out.splitlines()) for name in NAMES)


def test_cli_json(capsys):
    argv = ["gradcheck", "--json", "--lambd", "0.7", "--keep-prob", "0.86", "--seed", "3"]
    assert cli.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["passed"] is True and result["layer_dims"] == [4, 5, 3, 1] and result["keep_prob"] == [0.86]
    assert tuple(result["per_param"]) == NAMES and result["difference"] < THRESHOLD
    assert result["comparisons"]["autodiff_vs_backward"]["difference"] < EXACT


def test_cli_directions(capsys):
    assert cli.main(["gradcheck", "--json", "--directions", "3", "--keep-prob", "0.8"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["comparisons"]["fd_vs_backward"]["mode"] == "directions"
    assert result["comparisons"]["fd_vs_backward"]["n_losses"] == 4 * 3 * len(NAMES)


def test_cli_rules(capsys):
    # A step of 1e-2 leaves a truncation error far above the textbook's threshold; the error
    # model estimates it (Richardson) and passes the honest gradient.
    assert cli.main(["gradcheck", "--epsilon", "1e-2"]) == 0
    out = capsys.readouterr().out
    assert "PASSED under the error model" in out and "(under the textbook rule: difference" in out
    assert cli.main(["gradcheck", "--epsilon", "1e-2", "--rule", "textbook"]) == 1
    out = capsys.readouterr().out
    assert "FAILED under the textbook rule" in out and "offenders" in out
    assert cli.main(["gradcheck", "--epsilon", "1e-2", "--rule", "textbook", "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["rule"] == "textbook" and result["passed"] is False and result["textbook_passed"] is False


@pytest.mark.parametrize(
    "argv",
    [
        ["--epsilon", "-1"],
        ["--keep-prob", "1.5"],
        ["--layers", "0"],
        ["--layers", "a"],
        ["--directions", "0"],
        ["--m", "0"],
        ["--lambd", "-1"],
    ],
    ids=["epsilon", "keep_prob", "layers", "layers_text", "directions", "m", "lambd"],
)
def test_cli_bad_input(argv, capsys):
    assert cli.main(["gradcheck", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1


def test_cli_data(tmp_path, capsys):
    pytest.importorskip("jaxreg.data")
    rng = np.random.RandomState(0)
    path = tmp_path / "toy.npz"
    # The textbook file's layout: one example per row.
    np.savez(
        path,
        X=rng.randn(12, 2),
        y=(rng.rand(12, 1) < 0.5).astype(np.uint8),
        Xval=rng.randn(5, 2),
        yval=(rng.rand(5, 1) < 0.5).astype(np.uint8),
    )
    assert cli.main(["gradcheck", "--json", "--data", str(path), "--m", "10"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["layer_dims"] == [2, 5, 3, 1] and result["m"] == 10 and result["passed"] is True


def test_cli_subprocess_exit_status():
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "jaxreg.cli", "gradcheck", "--m", "4"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "PASSED" in done.stdout
