"""Parameters and gradients as float64 arrays in the textbook's order.

A pytree of float arrays is taken apart into its leaves in *check order*: parameter dicts
keyed ``W<l>``/``b<l>`` in the textbook's order W1, b1, W2, b2, ... (a dict flattens with
sorted keys, W1, W10, W2, ...), other pytrees in their own order. A coordinate ``j`` of
the check is entry ``j`` of the leaves' concatenation. Everything here is NumPy: taking
parameters apart runs no JAX computation, so it compiles nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Flat", "Structure", "flatten", "vector_like", "dtype_of"]

_LAYER_KEY = re.compile(r"[Wb]([1-9][0-9]*)")


class Structure(NamedTuple):
    """How leaves in check order become a pytree like the parameters: hashable (no arrays),
    so a compiled program can be keyed by it."""

    treedef: Any
    order: tuple[int, ...]  # check position -> pytree leaf position

    def tree(self, leaves):
        """Leaves in check order (NumPy or JAX arrays) -> a pytree like the parameters."""
        back = [None] * len(leaves)
        for position, i in enumerate(self.order):
            back[i] = leaves[position]
        return jax.tree_util.tree_unflatten(self.treedef, back)


class Flat(NamedTuple):
    """A pytree of parameters as float64 leaves in check order."""

    leaves: tuple[np.ndarray, ...]  # float64 arrays, check order
    names: tuple[str, ...]  # one per array, check order ("W1", "layer.w", ...)
    paths: tuple  # key paths of the arrays, check order
    order: tuple[int, ...]  # check position -> pytree leaf position
    treedef: Any

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(leaf.shape for leaf in self.leaves)

    @property
    def sizes(self) -> np.ndarray:
        """``(n_arrays,)`` entries per array."""
        return np.array([leaf.size for leaf in self.leaves], dtype=np.int64)

    @property
    def starts(self) -> np.ndarray:
        """``(n_arrays,)`` offset of each array in the concatenation."""
        return np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)

    @property
    def theta(self) -> np.ndarray:
        """``(P,)`` the leaves concatenated."""
        return np.concatenate([leaf.ravel() for leaf in self.leaves])

    @property
    def structure(self) -> Structure:
        return Structure(self.treedef, self.order)

    def tree(self, leaves):
        """Leaves in check order (NumPy or JAX arrays) -> a pytree like the parameters."""
        return self.structure.tree(leaves)

    def in_check_order(self, tree) -> list:
        """The leaves of a pytree like the parameters (a gradient), in check order."""
        leaves = jax.tree_util.tree_leaves(tree)
        return [leaves[i] for i in self.order]


def dtype_of(x) -> np.dtype:
    """The dtype of an array, a scalar or a ``ShapeDtypeStruct``."""
    dtype = getattr(x, "dtype", None)  # not `or`: a plain np.dtype has len 0, so it is falsy
    return np.asarray(x).dtype if dtype is None else np.dtype(dtype)


def flatten(params) -> Flat:
    """``params`` (a pytree of float arrays) as float64 NumPy leaves in check order."""
    path_leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    if not path_leaves:
        raise ValueError("params: got an empty pytree, expected at least one array")
    names = [jax.tree_util.keystr(path, simple=True, separator=".") or "params" for path, _ in path_leaves]
    leaves = []
    for name, (_, leaf) in zip(names, path_leaves, strict=True):
        dtype = dtype_of(leaf)
        if not jnp.issubdtype(dtype, np.floating):
            raise TypeError(
                f"params[{name!r}]: got dtype {dtype}, expected floating-point arrays (only they can be perturbed)"
            )
        leaves.append(np.asarray(leaf, np.float64))
    order = list(range(len(leaves)))
    if (
        isinstance(params, Mapping)
        and len(params) == len(leaves)
        and all(isinstance(k, str) and _LAYER_KEY.fullmatch(k) for k in params)
    ):
        order.sort(key=lambda i: (int(names[i][1:]), names[i][0] != "W"))
    return Flat(
        leaves=tuple(leaves[i] for i in order),
        names=tuple(names[i] for i in order),
        paths=tuple(path_leaves[i][0] for i in order),
        order=tuple(order),
        treedef=treedef,
    )


class _UnsupportedPath(Exception):
    """A key path entry of a custom pytree node, which cannot be looked up by key."""


def _leaf_at(tree, path):
    """The node of ``tree`` at a params key path; a top-level key ``W1`` also matches ``dW1``."""
    node = tree
    for depth, entry in enumerate(path):
        if isinstance(entry, jax.tree_util.DictKey):
            key = entry.key
            if depth == 0 and isinstance(node, Mapping) and key not in node and isinstance(key, str):
                key = "d" + key if "d" + key in node else key
            node = node[key]
        elif isinstance(entry, jax.tree_util.SequenceKey):
            node = node[entry.idx]
        elif isinstance(entry, jax.tree_util.GetAttrKey):
            node = getattr(node, entry.name)
        else:
            raise _UnsupportedPath(entry)
    return node


def _has(tree, path) -> bool:
    try:
        _leaf_at(tree, path)
    except (KeyError, IndexError, AttributeError, TypeError, _UnsupportedPath):
        return False
    return True


def vector_like(grads, params, flat: Flat, what: str = "grads") -> np.ndarray:
    """``grads`` (keyed like ``params`` or ``dW1``-style) as a float64 vector ``(P,)`` in check order.

    Entries of ``grads`` with no parameter (the textbook's backprop also returns dA1,
    dZ1, ...) are ignored. Gradients below float64 are refused: their rounding is as
    large as the differences the check looks for."""
    try:
        leaves = [_leaf_at(grads, path) for path in flat.paths]
    except _UnsupportedPath:  # custom pytree nodes: fall back to the same structure
        if jax.tree_util.tree_structure(grads) != jax.tree_util.tree_structure(params):
            raise ValueError(
                f"{what}: got structure {jax.tree_util.tree_structure(grads)}, expected the structure of "
                f"params, {jax.tree_util.tree_structure(params)}"
            ) from None
        leaves = flat.in_check_order(grads)
    except (KeyError, IndexError, AttributeError, TypeError):
        found = sorted(map(str, grads)) if isinstance(grads, Mapping) else type(grads).__name__
        missing = [n for n, p in zip(flat.names, flat.paths, strict=True) if not _has(grads, p)]
        raise ValueError(
            f"{what}: got {found}, expected one gradient per parameter, keyed like params "
            f"({', '.join(flat.names)}) or like the textbook (d{flat.names[0]}, ...); missing {missing}"
        ) from None
    out = []
    for name, shape, leaf in zip(flat.names, flat.shapes, leaves, strict=True):
        dtype = dtype_of(leaf)
        if jnp.issubdtype(dtype, np.complexfloating) or not jnp.issubdtype(dtype, np.number):
            raise TypeError(f"{what}[{name!r}]: got dtype {dtype}, expected real floating-point values")
        if jnp.issubdtype(dtype, np.floating) and jnp.finfo(dtype).bits < 64:
            raise ValueError(
                f"{what}[{name!r}]: got {dtype}, expected float64: "
                f"a {dtype} gradient carries rounding errors of about {float(jnp.finfo(dtype).eps):.1e} "
                "of its size, comparable to the threshold, so an honest backprop could fail the check; "
                "compute the gradients in float64 (NumPy's default; jax.enable_x64 in JAX)"
            )
        value = np.asarray(leaf, np.float64)
        if value.shape != shape:
            raise ValueError(f"{what}[{name!r}]: got shape {value.shape}, expected {shape} like params[{name!r}]")
        out.append(value.ravel())
    return np.concatenate(out)
