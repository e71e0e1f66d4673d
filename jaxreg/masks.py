"""Dropout masks from explicit keys: Threefry-2x32 in counter mode, 16 bits per entry.

:func:`dropout_masks` gives one boolean ``(n_l, m)`` mask per hidden layer, True where a
unit is kept, from a key and ``keep_prob`` (the probability of *keeping* a unit). The
same key gives the same masks, always. Underneath, a training loop draws many steps'
masks at once as packed bits (:func:`mask_bits`, then :func:`masks_from_bits` per step):
entries are compared with ``floor(keep_prob * 2**16)`` inside the hashing kernel and
four of them packed per byte, so the hash runs once, in one vectorised kernel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg import validate
from jaxreg.errors import ConfigError
from jaxreg.threefry import key_words, threefry2x32

__all__ = ["dropout_masks", "all_masks", "keep_mask", "mask_bits", "masks_from_bits", "mask_bits_bytes"]

_LANE_BITS = 16  # random bits per mask entry: keep rates are exact to 2**-16
_LANES = 64 // _LANE_BITS  # mask entries per Threefry block (two 32-bit output words)


def _threshold(keep_prob) -> jax.Array:
    """``floor(keep_prob * 2**16)`` as uint32: a 16-bit lane below it keeps its unit."""
    p = jnp.asarray(keep_prob)
    return jnp.clip(jnp.floor(p * 2.0**_LANE_BITS), 0, 2**_LANE_BITS).astype(jnp.uint32)


def _pack(y0, y1, thresholds) -> jax.Array:
    """uint8 of 4 mask bits from a block's words: bit ``k`` is lane ``k`` (16 bits: the low
    then the high half of ``y0``, then of ``y1``) below ``thresholds`` (broadcasting)."""
    lanes = (y0, y0 >> 16, y1, y1 >> 16)
    return sum(((lane & 0xFFFF) < thresholds).astype(jnp.uint8) << jnp.uint8(k) for k, lane in enumerate(lanes))


def _bits(words, streams: np.ndarray, groups: np.ndarray, cols: int, thresholds, stride=None) -> jax.Array:
    """Packed mask bits, uint8 ``(len(groups), cols)``: entry ``(g, j)`` holds the 4 bits
    (see :func:`_pack`, under ``thresholds[g]``) of Threefry block ``(streams[g],
    groups[g] * cols + j)``. Rows of several streams are drawn in one kernel.

    Both words of a block are used, and compared inside the hashing kernel: XLA's CPU
    backend has no multi-output fusion, so a kernel returning both words would be split
    in two, each hashing the block again; one byte holding four comparisons is one output.

    ``stride`` (traced, default ``cols``) replaces ``cols`` as the row stride of the counters: the
    first ``stride`` columns then hold the bits of a ``stride``-wide draw, whatever ``cols`` is (the
    columns beyond are padding)."""
    if groups.size and (int(groups.max()) + 1) * cols > 2**32:
        raise ConfigError("shape", (_LANES * (int(groups.max()) + 1), cols), "at most 2**34 per mask (a stream "
                          "has 2**32 Threefry blocks)",
                          shown=f"{_LANES * (int(groups.max()) + 1)} x {cols} mask entries")
    k0, k1 = words
    thresholds = jnp.asarray(thresholds)[:, None]

    def draw():
        if stride is None:
            start = jnp.asarray(groups[:, None] * cols, jnp.uint32)
        else:
            start = jnp.asarray(groups[:, None], jnp.uint32) * jnp.asarray(stride, jnp.uint32)
        counter = start + jax.lax.iota(jnp.uint32, cols)[None, :]
        return _pack(*threefry2x32(k0, k1, jnp.asarray(streams[:, None], jnp.uint32), counter), thresholds)

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
    validate.key(key)
    shape = tuple(shape)
    if not _draws(keep_prob):
        return jnp.ones(shape, bool)
    rows, cols = math.prod(shape[:-1]), (shape[-1] if shape else 1)
    groups = np.arange(-(-rows // _LANES))
    thresholds = jnp.broadcast_to(_threshold(keep_prob), groups.shape)
    return _unpack(_bits(key_words(key), np.zeros_like(groups), groups, cols, thresholds), rows).reshape(shape)


def mask_bits(key, dims: Sequence[int], m: int, keep_prob, width=None) -> jax.Array | None:
    """All the packed bits of :func:`dropout_masks`, uint8 ``(G, m)``: for each hidden layer
    ``i`` that draws (all but those with a concrete ``keep_prob`` of 1), in turn, the
    ``ceil(n_i / 4)`` rows of its bits, stream ``i`` of ``key`` (see :func:`_bits`); None
    when no layer draws. One kernel draws them all; apart from :func:`masks_from_bits`,
    a training loop can draw many steps' bits in one vectorised call. Checked input:
    ``dims`` a valid ``layer_dims``, ``keep_prob`` one value per hidden layer (a sequence, or
    an array ``(n_hidden,)``, traced or not). ``width`` (traced; default ``m``): the examples that
    are real, the first ``width`` of ``m``: their bits are those of an ``width``-wide draw, so
    padding examples change no real example's mask."""
    hidden = [(n, keep_prob[i]) for i, n in enumerate(dims[1:-1])]
    layers = [(i, -(-n // _LANES), kp) for i, (n, kp) in enumerate(hidden) if _draws(kp)]
    if not layers:
        return None
    streams = np.concatenate([np.full(g, i) for i, g, _ in layers])
    groups = np.concatenate([np.arange(g) for _, g, _ in layers])
    thresholds = jnp.concatenate([jnp.broadcast_to(_threshold(kp), (g,)) for _, g, kp in layers])
    return _bits(key_words(key), streams, groups, m, thresholds, width)


def mask_bits_bytes(dims: Sequence[int], m: int) -> int:
    """Bytes of one step's packed mask bits (:func:`mask_bits`) when every hidden layer drops."""
    return sum(-(-n // _LANES) for n in dims[1:-1]) * m


def masks_from_bits(bits, dims: Sequence[int], m: int, keep_prob) -> tuple[jax.Array, ...]:
    """The masks of :func:`dropout_masks` from :func:`mask_bits` (checked input, as there)."""
    masks, row = [], 0
    for i, n in enumerate(dims[1:-1]):
        if _draws(keep_prob[i]):
            groups = -(-n // _LANES)
            masks.append(_unpack(bits[row: row + groups], n))
            row += groups
        else:
            masks.append(jnp.ones((n, m), bool))
    return tuple(masks)


def all_masks(key, dims: Sequence[int], m: int, keep_prob, width=None) -> tuple[jax.Array, ...]:
    """:func:`dropout_masks` of checked input (as :func:`mask_bits` takes it)."""
    return masks_from_bits(mask_bits(key, dims, m, keep_prob, width), dims, m, keep_prob)


def dropout_masks(key, layer_dims: Sequence[int], m: int, keep_prob) -> tuple[jax.Array, ...]:
    """One boolean ``(n_l, m)`` mask per hidden layer, True where a unit is kept.

    ``keep_prob`` is a float or one value per hidden layer. Hidden layer ``i`` (from 0)
    draws from stream ``i`` of ``key`` (16 bits per entry, see :func:`keep_mask`): the
    same key gives the same masks, always, and a layer's mask does not depend on the
    other layers' ``keep_prob``."""
    validate.key(key)
    dims = validate.layer_dims(layer_dims)
    return all_masks(key, dims, m, validate.keep_prob(keep_prob, len(dims) - 2))
