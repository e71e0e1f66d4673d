"""Dropout mask generation: the hash, the layout, exact keep rates, and the compiled loop
drawing each step's masks exactly as ``dropout_masks(fold_in(mask_key, t), ...)`` would."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.extend.random import threefry2x32_p

import jaxreg
from jaxreg import masks as model
from jaxreg import threefry
from jaxreg.config import TrainConfig
from jaxreg.programs import Program, hyper_of, init_state, key_data, make_optimizer, run_chunk


def test_threefry_is_jaxs_bit_for_bit():
    rng = np.random.default_rng(0)
    k0, k1 = (np.uint32(v) for v in rng.integers(0, 2**32, 2))
    x0 = np.concatenate([[0, 1, 2**32 - 1], rng.integers(0, 2**32, 997)]).astype(np.uint32)
    x1 = np.concatenate([[0, 2**32 - 1, 7], rng.integers(0, 2**32, 997)]).astype(np.uint32)
    ours = jax.jit(threefry.threefry2x32)(k0, k1, x0, x1)
    theirs = threefry2x32_p.bind(jnp.uint32(k0), jnp.uint32(k1), jnp.asarray(x0), jnp.asarray(x1))
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("make_key", [jax.random.key, jax.random.PRNGKey], ids=["typed", "legacy"])
def test_normals_are_jax_random_normal_bit_for_bit(dtype, make_key):
    keys = jax.random.split(make_key(5), 4)
    shapes = [(20, 2), (3, 20), (0, 3), (1, 7)]
    ours = jax.jit(lambda k: threefry.normals(k, shapes, dtype))(keys)
    for i, shape in enumerate(shapes):
        theirs = jax.random.normal(keys[i], shape, dtype)
        assert ours[i].dtype == theirs.dtype and ours[i].shape == shape
        np.testing.assert_array_equal(ours[i], theirs)


def test_layout_is_the_documented_one():
    """Entry (r, j) of hidden layer i is 16-bit lane r % 4 (the low, then the high half of the
    first output, then of the second) of Threefry block (i, (r // 4) * m + j) under the key's
    two words, compared with floor(kp * 2**16)."""
    key, dims, m, kps = jax.random.key(11), [2, 9, 3, 1], 7, (0.6, 0.3)
    k0, k1 = (jnp.uint32(w) for w in jax.random.key_data(key))
    masks = jaxreg.dropout_masks(key, dims, m, kps)
    for i, (n, kp) in enumerate(zip(dims[1:-1], kps, strict=True)):
        r, j = np.meshgrid(np.arange(n), np.arange(m), indexing="ij")
        y = threefry2x32_p.bind(k0, k1, jnp.full((n, m), i, jnp.uint32), jnp.asarray((r // 4) * m + j, jnp.uint32))
        word = np.where(r % 4 < 2, np.asarray(y[0]), np.asarray(y[1]))
        lane = (word >> (16 * (r % 2))) & 0xFFFF
        np.testing.assert_array_equal(masks[i], lane < np.floor(kp * 2**16))


@pytest.mark.parametrize("keep_prob", [1 / 65536, 0.1, 0.5, 0.86, 0.9999, 65535 / 65536])
def test_keep_rate_is_exact_to_2_pow_16(keep_prob):
    # Every 16-bit value once in each lane: exactly floor(kp * 2**16) of them are kept.
    v = np.arange(2**16, dtype=np.uint32)
    y0, y1 = jnp.asarray(v | (v[::-1] << 16)), jnp.asarray(v[::-1] | (v << 16))
    expected = int(np.floor(keep_prob * 2**16))

    def masks(threshold):
        return model._unpack(model._pack(y0, y1, threshold)[None, :], 4)

    for mask in (masks(model._threshold(keep_prob)), jax.jit(masks)(model._threshold(jnp.float32(keep_prob)))):
        assert mask.shape == (4, 2**16)
        assert [int(row.sum()) for row in mask] == [expected] * 4


def test_lanes_and_neighbours_are_independent():
    a = np.asarray(jaxreg.dropout_masks(jax.random.key(2), [2, 200, 1], 2000, 0.5)[0], np.float64)
    # rows sharing a block (each pair of lanes), and adjacent columns
    pairs = [(a[i::4], a[k::4]) for i in range(4) for k in range(i + 1, 4)] + [(a[:, :-1], a[:, 1:])]
    for x, y in pairs:
        # P(both kept) = 1/4 for independent fair coins: within 5 standard errors
        assert abs(float(np.mean(x * y)) - 0.25) <= 5 * np.sqrt(0.25 * 0.75 / x.size)


def test_keep_mask_shapes_and_streams():
    key = jax.random.key(4)
    assert model.keep_mask(key, (), 0.5).shape == ()
    assert model.keep_mask(key, (3, 4, 5), 0.5).shape == (3, 4, 5)
    assert [model.keep_mask(key, s, 0.5).shape for s in [(0, 5), (3, 0), (0,)]] == [(0, 5), (3, 0), (0,)]
    with pytest.raises(ValueError, match="shape: got"):
        model.keep_mask(key, (2**18, 2**17), 0.5)
    np.testing.assert_array_equal(
        model.keep_mask(key, (6, 9), 0.7), jaxreg.dropout_masks(key, [2, 6, 1], 9, 0.7)[0]
    )
    assert bool(model.keep_mask(key, (6, 9), 1.0).all())


def test_every_key_kind_gives_deterministic_masks():
    for make in (lambda s: jax.random.key(s, impl="rbg"), jax.random.PRNGKey):
        a, b, c = (jaxreg.dropout_masks(make(s), [2, 20, 3, 1], 40, 0.7) for s in (1, 1, 2))
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        assert not np.array_equal(a[0], c[0])


def test_vmap_over_keys_gives_each_keys_masks():
    keys = jax.random.split(jax.random.key(9), 5)
    batched = jax.vmap(lambda k: jaxreg.dropout_masks(k, [2, 20, 3, 1], 33, (0.8, 0.6)))(keys)
    for i in range(5):
        for got, want in zip(
            batched, jaxreg.dropout_masks(keys[i], [2, 20, 3, 1], 33, (0.8, 0.6)), strict=True
        ):
            np.testing.assert_array_equal(got[i], want)


def _plain_loop(state, hyper, X, Y, dims, n_steps, shift=0):
    """The obvious loop: step t uses dropout_masks(fold_in(mask_key, t + shift), ...)."""
    mask_key = jax.random.split(state.key)[1]
    optimizer = make_optimizer("sgd", hyper.learning_rate)
    kps = tuple(hyper.keep_prob[i] for i in range(len(dims) - 2))

    def step(carry, t):
        params, opt_state = carry
        masks = jaxreg.dropout_masks(jax.random.fold_in(mask_key, t + shift), dims, X.shape[1], kps)
        cost, grads = jax.value_and_grad(jaxreg.loss)(
            params, X, Y, lambd=hyper.lambd, masks=masks, keep_prob=kps
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), cost

    steps = state.step + jnp.arange(n_steps, dtype=jnp.int32)
    return jax.jit(lambda c: jax.lax.scan(step, c, steps))((state.params, state.opt_state))


# (layer_dims, m, n_steps): 4 blocks of 500 steps; a block of 43 steps and a remainder of 4;
# one step's bits above the loop's 1 MiB per block (drawn one step ahead, carried)
@pytest.mark.parametrize(
    "dims,m,n_steps", [((2, 20, 3, 1), 211, 2000), ((2, 40, 1), 2400, 47), ((2, 64, 1), 70000, 3)]
)
def test_compiled_loop_uses_dropout_masks_of_fold_in(dims, m, n_steps):
    rng = np.random.default_rng(1)
    X = jnp.asarray(rng.standard_normal((2, m)))
    Y = jnp.asarray(rng.random((1, m)) < 0.5, jnp.float64)
    config = TrainConfig(dims, keep_prob=0.8, lambd=0.1, learning_rate=0.05, dtype="float64")
    data, impl = key_data(jax.random.key(3))
    state = init_state(data, impl=impl, program=Program.of(config).for_init())._replace(step=jnp.asarray(5, jnp.int32))
    hyper = hyper_of(config)
    new, costs, _ = run_chunk(state, hyper, None, None, X, Y, program=Program.of(config), n_steps=n_steps)
    (params, _), want = _plain_loop(state, hyper, X, Y, dims, n_steps)
    np.testing.assert_allclose(costs, want, rtol=1e-12, atol=0)
    for k in params:
        np.testing.assert_allclose(new.params[k], params[k], rtol=1e-11, atol=1e-14)
    # and the comparison can fail: the next step's masks give other costs
    _, shifted = _plain_loop(state, hyper, X, Y, dims, n_steps, shift=1)
    assert np.max(np.abs(np.asarray(costs) - np.asarray(shifted))) > 1e-6
