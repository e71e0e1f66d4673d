"""Threefry-2x32, the hash behind ``jax.random``'s default keys, written out for XLA.

Threefry-2x32 with 20 rounds (Salmon et al., "Parallel random numbers: as easy as 1, 2,
3", SC 2011) in counter mode, bit for bit what JAX computes, unrolled: XLA fuses it into
one vectorised elementwise kernel, where the ``threefry2x32`` primitive's CPU lowering
is a rolled loop of several kernels per call, compiled anew for every shape drawn.
:mod:`jaxreg.masks` draws dropout masks with it; :func:`normals` draws the initial
weights of every layer at once, exactly as ``jax.random.normal`` draws them one by one.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["threefry2x32", "key_words", "normals"]

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA


def threefry2x32(k0, k1, x0, x1):
    """The Threefry-2x32 block ``(x0, x1) -> (y0, y1)`` under the key ``(k0, k1)`` (uint32,
    broadcasting)."""
    ks = (k0, k1, k0 ^ k1 ^ jnp.uint32(_PARITY))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = ((x1 << jnp.uint32(r)) | (x1 >> jnp.uint32(32 - r))) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x0, x1


def key_words(key) -> tuple[jax.Array, jax.Array]:
    """Two uint32 words from a key (typed or legacy ``uint32[2]``); the words of keys with
    more data (``rbg``: four) are folded in by hashing, so any key works."""
    data = jnp.ravel(jax.random.key_data(key)).astype(jnp.uint32)
    k0, k1 = data[0], data[1]
    for j in range(2, data.shape[0], 2):
        k0, k1 = threefry2x32(k0, k1, data[j], data[j + 1] if j + 1 < data.shape[0] else jnp.uint32(0))
    return k0, k1


def _is_threefry(keys) -> bool:
    return not jnp.issubdtype(keys.dtype, jax.dtypes.prng_key) or str(jax.random.key_impl(keys)) == "threefry2x32"


def normals(keys, shapes: Sequence[tuple[int, ...]], dtype) -> list[jax.Array]:
    """``[jax.random.normal(keys[i], shapes[i], dtype) for i ...]``, bit for bit, in one
    kernel (``keys``: a batch of threefry keys, typed or ``uint32[..., 2]``; other key
    kinds and dtypes but float32 and float64 fall back to ``jax.random.normal``). Each key's ``j``-th number hashes the
    counter ``(j >> 32, j & 0xFFFFFFFF)``; its bits become a uniform in ``(-1, 1)`` and
    then ``sqrt(2) * erfinv(u)``, as ``jax.random.normal`` does."""
    dtype = np.dtype(dtype)
    if not _is_threefry(keys) or dtype not in (np.float32, np.float64):
        return [jax.random.normal(keys[i], shape, dtype) for i, shape in enumerate(shapes)]
    sizes = [int(np.prod(shape)) for shape in shapes]
    words = jax.random.key_data(keys).reshape(len(shapes), 2)
    owner = np.repeat(np.arange(len(shapes)), sizes)
    index = np.concatenate([np.arange(n, dtype=np.uint64) for n in sizes])
    y0, y1 = threefry2x32(words[owner, 0], words[owner, 1], jnp.asarray((index >> 32).astype(np.uint32)),
                          jnp.asarray((index & 0xFFFFFFFF).astype(np.uint32)))
    u = _open_uniform(y0, y1, dtype)
    z = jax.lax.mul(np.array(np.sqrt(2), dtype), jax.lax.erf_inv(u))
    return [part.reshape(shape) for part, shape in zip(jnp.split(z, np.cumsum(sizes)[:-1]), shapes, strict=True)]


def _open_uniform(y0, y1, dtype: np.dtype) -> jax.Array:
    """Uniform numbers in ``(-1, 1)`` from a block's two words, as ``jax.random.uniform``
    makes them: 64 bits (``y0`` high) for float64, ``y0 ^ y1`` for float32."""
    finfo = jnp.finfo(dtype)
    if finfo.bits == 64:
        bits, uint = (y0.astype(jnp.uint64) << 32) | y1.astype(jnp.uint64), np.uint64
    else:
        bits, uint = y0 ^ y1, np.uint32
    mantissa = (bits >> uint(finfo.bits - finfo.nmant)) | np.array(1.0, dtype).view(uint)
    floats = jax.lax.bitcast_convert_type(mantissa, dtype) - np.array(1.0, dtype)
    low = np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype), dtype=dtype)
    return jax.lax.max(low, floats * (np.array(1.0, dtype) - low) + low)
