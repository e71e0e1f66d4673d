"""The regularized network as pure JAX functions.

LINEAR->RELU->...->LINEAR->SIGMOID on ``X`` of shape ``(n_x, m)`` (features x
examples), labels ``Y`` of shape ``(1, m)``, parameters ``{"W1": (n1, n0),
"b1": (n1, 1), ...}``. Two regularizers:

* L2: ``lambd/(2m) * sum_l ||W_l||^2`` is part of :func:`loss` (biases are not
  penalised); ``jax.grad(loss)`` gives the gradients, nothing is hand-derived.
* Inverted dropout on hidden layers: ``A = A * D / keep_prob``, where the
  boolean masks ``D`` are explicit values from :func:`dropout_masks` and an
  explicit key. ``keep_prob`` is the probability of *keeping* a unit (the
  textbook's word, never a drop rate); it may differ per hidden layer.

Everything here is pure and jit-able. Input is validated once, at the call,
before tracing (see :mod:`jaxreg.validate`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg import validate

__all__ = [
    "init_params",
    "dropout_masks",
    "forward",
    "loss",
    "predict_proba",
    "predict",
    "accuracy",
    "n_layers",
]

INIT_SCHEMES = ("he", "lecun", "zeros")


def n_layers(params: dict) -> int:
    """Number of weight layers ``L`` in ``params`` (hidden layers + 1)."""
    return len(params) // 2


def init_params(key, layer_dims: Sequence[int], scheme: str = "he", dtype=None) -> dict:
    """Keyed initialisation. Returns ``{"W<l>": (n_l, n_{l-1}), "b<l>": (n_l, 1)}``.

    ``scheme``: ``"he"`` (``N(0, 2/n_{l-1})``, for ReLU), ``"lecun"`` (the textbook's
    ``randn / sqrt(n_{l-1})``) or ``"zeros"`` (tests only: a zero network cannot learn).
    Biases start at zero. ``dtype`` defaults to JAX's default float."""
    dims = validate.layer_dims(layer_dims)
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"scheme: got {scheme!r}, expected one of {', '.join(INIT_SCHEMES)}")
    dtype = dtype or jnp.zeros(()).dtype
    gain = {"he": 2.0, "lecun": 1.0, "zeros": 0.0}[scheme]
    params = {}
    for l, layer_key in enumerate(jax.random.split(key, len(dims) - 1), start=1):
        n, n_prev = dims[l], dims[l - 1]
        params[f"W{l}"] = jax.random.normal(layer_key, (n, n_prev), dtype) * jnp.sqrt(
            jnp.asarray(gain / n_prev, dtype)
        )
        params[f"b{l}"] = jnp.zeros((n, 1), dtype)
    return params


# Mask bits: Threefry-2x32 with 20 rounds (Salmon et al., "Parallel random numbers: as easy as
# 1, 2, 3", SC 2011, the hash behind jax.random's default keys) in counter mode.
_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_THREEFRY_PARITY = 0x1BD11BDA
_LANE_BITS = 16  # random bits per mask entry: keep rates are exact to 2**-16
_LANES = 64 // _LANE_BITS  # mask entries per Threefry block (two 32-bit output words)


def _threefry2x32(k0, k1, x0, x1):
    """The Threefry-2x32 block ``(x0, x1) -> (y0, y1)`` under the key ``(k0, k1)`` (uint32,
    broadcasting). Bit for bit what jax's ``threefry2x32`` primitive computes, written
    out unrolled: XLA fuses it into one vectorised elementwise kernel, where the
    primitive's CPU lowering is a rolled loop of several kernels per call."""
    ks = (k0, k1, k0 ^ k1 ^ jnp.uint32(_THREEFRY_PARITY))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _THREEFRY_ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = ((x1 << jnp.uint32(r)) | (x1 >> jnp.uint32(32 - r))) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x0, x1


def _key_words(key) -> tuple[jax.Array, jax.Array]:
    """Two uint32 words from a key (typed or legacy ``uint32[2]``); the words of keys with
    more data (``rbg``: four) are folded in by hashing, so any key works."""
    data = jnp.ravel(jax.random.key_data(key)).astype(jnp.uint32)
    k0, k1 = data[0], data[1]
    for j in range(2, data.shape[0], 2):
        k0, k1 = _threefry2x32(k0, k1, data[j], data[j + 1] if j + 1 < data.shape[0] else jnp.uint32(0))
    return k0, k1


def _threshold(keep_prob) -> jax.Array:
    """``floor(keep_prob * 2**16)`` as uint32: a 16-bit lane below it keeps its unit."""
    p = jnp.asarray(keep_prob)
    return jnp.clip(jnp.floor(p * 2.0**_LANE_BITS), 0, 2**_LANE_BITS).astype(jnp.uint32)


def _pack(y0, y1, thresholds) -> jax.Array:
    """uint8 of 4 mask bits from a block's words: bit ``k`` is lane ``k`` (16 bits: the low
    then the high half of ``y0``, then of ``y1``) below ``thresholds`` (broadcasting)."""
    lanes = (y0, y0 >> 16, y1, y1 >> 16)
    return sum(((lane & 0xFFFF) < thresholds).astype(jnp.uint8) << jnp.uint8(k) for k, lane in enumerate(lanes))


def _bits(key_words, streams: np.ndarray, groups: np.ndarray, cols: int, thresholds) -> jax.Array:
    """Packed mask bits, uint8 ``(len(groups), cols)``: entry ``(g, j)`` holds the 4 bits
    (see :func:`_pack`, under ``thresholds[g]``) of Threefry block ``(streams[g],
    groups[g] * cols + j)``. Rows of several streams are drawn in one kernel.

    Both words of a block are used, and compared inside the hashing kernel: XLA's CPU
    backend has no multi-output fusion, so a kernel returning both words would be split
    in two, each hashing the block again; one byte holding four comparisons is one output."""
    if groups.size and (int(groups.max()) + 1) * cols > 2**32:
        raise ValueError(
            f"shape: got {_LANES * (int(groups.max()) + 1)} x {cols} mask entries, expected at most 2**34 per "
            "mask (a stream has 2**32 Threefry blocks)"
        )
    k0, k1 = key_words
    thresholds = jnp.asarray(thresholds)[:, None]

    def draw():
        counter = jnp.asarray(groups[:, None] * cols, jnp.uint32) + jax.lax.iota(jnp.uint32, cols)[None, :]
        return _pack(*_threefry2x32(k0, k1, jnp.asarray(streams[:, None], jnp.uint32), counter), thresholds)

    def all_kept():  # every lane (here 0) is below a threshold of 2**16; from the same inputs as
        # the draw, so that both branches vary alike under shard_map
        return jnp.broadcast_to(_pack(k0 & 0, k1 & 0, thresholds), (groups.size, cols))

    # A conditional, which XLA neither removes nor fuses into: the bits are hashed once, in their
    # own kernel, however many kernels read them (fused into the forward and backward passes, the
    # hash would run again for each of them and for each of a block's four entries); and traced
    # keep_probs that are all 1 draw nothing.
    return jax.lax.cond(jnp.any(thresholds < 2**_LANE_BITS), draw, all_kept)


def _unpack(bits: jax.Array, rows: int) -> jax.Array:
    """Boolean ``(rows, cols)`` from :func:`_bits`: row ``r`` is bit ``r % 4`` of row ``r // 4``.
    Rows share bytes, not columns: a kernel reading the mask row by row then loads
    contiguous bytes and shifts them all alike, which vectorises."""
    groups, cols = bits.shape
    repeated = jnp.broadcast_to(bits[:, None, :], (groups, _LANES, cols)).reshape(groups * _LANES, cols)
    shift = (jax.lax.iota(jnp.uint8, rows) % jnp.uint8(_LANES))[:, None]
    return ((repeated[:rows] >> shift) & jnp.uint8(1)) != 0


def _draws(keep_prob) -> bool:
    """False for a concrete keep_prob of 1: nothing is dropped, no bits are drawn."""
    return not (validate.is_concrete(keep_prob) and float(keep_prob) == 1.0)


def keep_mask(key, shape: tuple[int, ...], keep_prob) -> jax.Array:
    """Boolean mask of ``shape``, each entry True with probability ``keep_prob``.

    Each entry compares 16 random bits (Threefry-2x32 in counter mode, four entries per
    block) with ``floor(keep_prob * 2**16)``: no conversion to floats, and the keep rate
    is exact to 2**-16. A concrete ``keep_prob == 1`` draws nothing; a traced one gives
    the same mask as the concrete value would."""
    shape = tuple(shape)
    if not _draws(keep_prob):
        return jnp.ones(shape, bool)
    rows, cols = math.prod(shape[:-1]), (shape[-1] if shape else 1)
    groups = np.arange(-(-rows // _LANES))
    thresholds = jnp.broadcast_to(_threshold(keep_prob), groups.shape)
    return _unpack(_bits(_key_words(key), np.zeros_like(groups), groups, cols, thresholds), rows).reshape(shape)


def _mask_bits(key, layer_dims: Sequence[int], m: int, keep_prob) -> jax.Array | None:
    """All the packed bits of :func:`dropout_masks`, uint8 ``(G, m)``: for each hidden layer
    ``i`` that draws (all but those with a concrete ``keep_prob`` of 1), in turn, the
    ``ceil(n_i / 4)`` rows of its bits, stream ``i`` of ``key`` (see :func:`_bits`); None
    when no layer draws. One kernel draws them all; apart from :func:`_masks_from_bits`,
    a training loop can draw many steps' bits in one vectorised call."""
    dims = validate.layer_dims(layer_dims)
    kps = validate.keep_prob(keep_prob, len(dims) - 2)
    hidden = zip(dims[1:-1], kps, strict=True)
    layers = [(i, -(-n // _LANES), kp) for i, (n, kp) in enumerate(hidden) if _draws(kp)]
    if not layers:
        return None
    streams = np.concatenate([np.full(g, i) for i, g, _ in layers])
    groups = np.concatenate([np.arange(g) for _, g, _ in layers])
    thresholds = jnp.concatenate([jnp.broadcast_to(_threshold(kp), (g,)) for _, g, kp in layers])
    return _bits(_key_words(key), streams, groups, m, thresholds)


def mask_bits_bytes(layer_dims: Sequence[int], m: int) -> int:
    """Bytes of one step's packed mask bits (:func:`_mask_bits`) when every hidden layer drops."""
    return sum(-(-n // _LANES) for n in validate.layer_dims(layer_dims)[1:-1]) * m


def _masks_from_bits(bits, layer_dims: Sequence[int], m: int, keep_prob) -> tuple[jax.Array, ...]:
    """The masks of :func:`dropout_masks` from :func:`_mask_bits`."""
    dims = validate.layer_dims(layer_dims)
    kps = validate.keep_prob(keep_prob, len(dims) - 2)
    masks, row = [], 0
    for n, kp in zip(dims[1:-1], kps, strict=True):
        if _draws(kp):
            groups = -(-n // _LANES)
            masks.append(_unpack(bits[row: row + groups], n))
            row += groups
        else:
            masks.append(jnp.ones((n, m), bool))
    return tuple(masks)


def dropout_masks(key, layer_dims: Sequence[int], m: int, keep_prob) -> tuple[jax.Array, ...]:
    """One boolean ``(n_l, m)`` mask per hidden layer, True where a unit is kept.

    ``keep_prob`` is a float or one value per hidden layer. Hidden layer ``i`` (from 0)
    draws from stream ``i`` of ``key`` (16 bits per entry, see :func:`keep_mask`): the
    same key gives the same masks, always, and a layer's mask does not depend on the
    other layers' ``keep_prob``."""
    return _masks_from_bits(_mask_bits(key, layer_dims, m, keep_prob), layer_dims, m, keep_prob)


def _check_masks(masks, dims: tuple[int, ...], m: int) -> None:
    hidden = dims[1:-1]
    if len(masks) != len(hidden):
        raise ValueError(
            f"masks: got {len(masks)} masks, expected {len(hidden)} (one per hidden layer)"
        )
    for l, (mask, n) in enumerate(zip(masks, hidden, strict=True), start=1):
        if tuple(mask.shape) != (n, m):
            raise ValueError(f"masks[{l - 1}]: got shape {tuple(mask.shape)}, expected ({n}, {m})")


def forward(params: dict, X, *, masks=None, keep_prob=1.0) -> jax.Array:
    """The logits ``Z_L`` of shape ``(1, m)`` for ``X`` of shape ``(n_x, m)``.

    Hidden layers are LINEAR->RELU, then ``A * D / keep_prob`` where ``masks`` (from
    :func:`dropout_masks`) are given; without masks there is no dropout."""
    return preactivations(params, X, masks=masks, keep_prob=keep_prob)[-1]


def preactivations(params: dict, X, *, masks=None, keep_prob=1.0, first: int = 1) -> tuple[jax.Array, ...]:
    """``(Z_first, ..., Z_L)``, each ``Z_l = W_l A_{l-1} + b_l`` of shape ``(n_l, m)`` (``Z_L``: the logits).

    ``X`` is ``A_{first-1}`` of shape ``(n_{first-1}, m)``: the data for ``first = 1`` (the
    default), else the output of hidden layer ``first - 1`` after its dropout. Hidden layers
    are LINEAR->RELU, then ``A * D / keep_prob`` where ``masks`` are given."""
    dims = validate.params(params, n_x=validate.features(X).shape[0] if first == 1 else None)
    L = len(dims) - 1
    if not 1 <= first <= L:
        raise ValueError(f"first: got {first}, expected a layer from 1 to {L}")
    if X.shape[0] != dims[first - 1]:
        raise ValueError(f"X: got shape {tuple(X.shape)}, expected ({dims[first - 1]}, m), the input of layer {first}")
    if masks is not None:
        _check_masks(masks, dims, X.shape[1])
        kps = validate.keep_prob(keep_prob, L - 1)
    Z = [params[f"W{first}"] @ X + params[f"b{first}"]]
    for l in range(first + 1, L + 1):
        A = jax.nn.relu(Z[-1])
        if masks is not None:
            A = _dropout(A, masks[l - 2], kps[l - 2])
        Z.append(params[f"W{l}"] @ A + params[f"b{l}"])
    return tuple(Z)


def _dropout(A, mask, keep_prob):
    if validate.is_concrete(keep_prob) and float(keep_prob) == 1.0:
        return A  # Nothing is dropped, nothing to scale (as Equinox's Dropout does).
    return jnp.where(mask, A, 0) / keep_prob


def l2_penalty(params: dict) -> jax.Array:
    """``sum_l ||W_l||^2`` over the weights (biases excluded)."""
    return sum(jnp.sum(jnp.square(params[f"W{l}"])) for l in range(1, n_layers(params) + 1))


def loss(params: dict, X, Y, *, lambd=0.0, masks=None, keep_prob=1.0) -> jax.Array:
    """Scalar cost: mean binary cross-entropy plus ``lambd/(2m) * sum_l ||W_l||^2``.

    The cross-entropy is computed from the logits ``z``: for a label ``y`` of 0 or 1,
    ``-y log(sigmoid(z)) - (1-y) log(1-sigmoid(z)) = softplus((1 - 2y) z)``, one stable
    softplus per example (half the work of two ``log_sigmoid``), so saturated units give
    neither ``log(0)`` nor NaN. ``X`` is ``(n_x, m)``, ``Y`` is ``(1, m)`` of 0/1."""
    validate.features_and_labels(X, Y)
    validate.lambd(lambd)
    logits = forward(params, X, masks=masks, keep_prob=keep_prob)
    cost = jnp.mean(jax.nn.softplus((1 - 2 * Y.astype(logits.dtype)) * logits))
    if validate.is_concrete(lambd) and float(lambd) == 0.0:
        return cost
    return cost + lambd / (2 * X.shape[1]) * l2_penalty(params)


def predict_proba(params: dict, X) -> jax.Array:
    """``P(y = 1 | x)`` of shape ``(1, m)``, the full network without dropout."""
    return jax.nn.sigmoid(forward(params, X))


def predict(params: dict, X) -> jax.Array:
    """0/1 predictions ``(1, m)`` (int32): probability above 0.5, as in the textbook."""
    return (predict_proba(params, X) > 0.5).astype(jnp.int32)


def accuracy(params: dict, X, Y) -> jax.Array:
    """Fraction of the ``m`` examples predicted right (scalar, JAX's default float)."""
    validate.features_and_labels(X, Y)
    return jnp.mean(predict(params, X) == Y, dtype=jnp.result_type(float))
