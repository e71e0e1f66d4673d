"""Checkpoints and parameter files. Nothing here ever unpickles.

* :func:`save` / :func:`load`: a pytree of arrays (e.g. a training state: params,
  optax state, step, PRNG key) plus a JSON configuration, as ONE ``.npz`` file:
  entries ``leaf_0 .. leaf_{N-1}`` and ``jaxreg_meta`` (UTF-8 JSON as a uint8 array)
  holding the format name and version, each leaf's path, shape and dtype, the
  configuration and a sha256 over all of it.
* :func:`save_params` / :func:`load_params`: trained parameters as a plain ``.npz``
  (``W1, b1, ...``) that ``numpy.load`` reads.

Files are written atomically and read without pickle (:mod:`jaxreg.files`).

Every refusal is a :class:`CheckpointError` (a ``ValueError``) naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from collections.abc import Iterable, Mapping

import jax
import numpy as np

from jaxreg import validate
from jaxreg.files import UnreadableFile, atomic_open, load_npz

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "json_data",
    "save",
    "load",
    "save_params",
    "params_bytes",
    "load_params",
]

FORMAT = "jaxreg-checkpoint"
VERSION = 1
_META = "jaxreg_meta"
MAX_DEPTH = 32  # how deeply a checkpoint's metadata may nest (jaxreg's own nests 5 deep)
_STORAGES = ("array", "raw_bytes", "key_data")

class CheckpointError(UnreadableFile):
    """A file refused on loading: not readable, damaged, unsafe or incompatible."""


# ----------------------------------------------------------------------------- configuration


def json_data(value, where: str = "value"):
    """``value`` as plain JSON data (tuples -> lists, NumPy scalars -> Python numbers).

    Raises TypeError naming ``where`` for anything JSON cannot hold."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        value = value.item()
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: got {value}, expected a finite number (JSON has no NaN or infinity)")
        return float(value)
    if isinstance(value, list | tuple):
        return [json_data(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: got key {k!r} ({type(k).__name__}), expected str keys (JSON)")
            out[k] = json_data(v, f"{where}[{k!r}]")
        return out
    raise TypeError(
        f"{where}: got {type(value).__name__} {value!r}, expected JSON data "
        "(None, bool, int, float, str, list, tuple or dict with str keys)"
    )


def _config(config) -> dict:
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise TypeError(f"config: got {type(config).__name__}, expected a dict")
    config = json_data(config, "config")
    if _depth(config) >= MAX_DEPTH:
        raise ValueError(f"config: nested {_depth(config)} levels deep, expected at most {MAX_DEPTH - 1}")
    return config


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _checksum(meta: dict, arrays: list[np.ndarray]) -> str:
    """sha256 over the metadata (without its checksum) and every stored leaf's bytes, in order."""
    h = hashlib.sha256(_canonical({k: v for k, v in meta.items() if k != "sha256"}))
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- leaves


def _is_key(leaf) -> bool:
    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _encode(leaf, where: str) -> tuple[dict, np.ndarray]:
    """(metadata, stored array) for one leaf.

    Typed PRNG keys are stored as their ``key_data``; dtypes NumPy's ``.npy`` format
    cannot name (bfloat16 and other ml_dtypes) as raw bytes; numbers as themselves."""
    if _is_key(leaf):
        data = np.asarray(jax.random.key_data(leaf))
        info = {"shape": list(leaf.shape), "dtype": str(leaf.dtype), "storage": "key_data",
                "key_impl": str(jax.random.key_impl(leaf))}
        return info, data
    a = np.asarray(leaf)
    info = {"shape": list(a.shape), "dtype": a.dtype.name}
    if a.dtype.isbuiltin == 2 and a.dtype.kind == "V":  # a registered extension dtype, e.g. bfloat16
        return {**info, "storage": "raw_bytes"}, np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    if a.dtype.kind not in "biufc":
        raise TypeError(f"save: leaf {where}: got dtype {a.dtype}, expected numbers or a PRNG key")
    return {**info, "storage": "array"}, a


def _decode(info: dict, a: np.ndarray, path: str, where: str):
    """Invert :func:`_encode`: a NumPy array, or a typed key (jax.Array)."""
    shape, storage = tuple(info["shape"]), info["storage"]

    def damaged(what):
        return CheckpointError(f"{path}: corrupted checkpoint: leaf {where} {what}")

    if storage == "key_data":
        try:
            key = jax.random.wrap_key_data(a, impl=info["key_impl"])
        except (ValueError, TypeError) as err:
            raise damaged(f"does not hold {info['key_impl']} key data ({err})") from None
        if key.shape != shape or str(key.dtype) != info["dtype"]:
            raise damaged(f"holds keys {key.dtype}{list(key.shape)}, expected {info['dtype']}{list(shape)}")
        return key
    dtype = np.dtype(info["dtype"])
    if storage == "raw_bytes":
        if a.dtype != np.uint8 or a.size != math.prod(shape) * dtype.itemsize:
            raise damaged(f"holds {a.dtype}{list(a.shape)}, expected the raw bytes of {dtype}{list(shape)}")
        return a.view(dtype).reshape(shape)
    if storage == "array":
        if a.dtype != dtype or a.shape != shape:
            raise damaged(f"holds {a.dtype}{list(a.shape)}, expected {dtype}{list(shape)}")
        return a
    raise damaged(f"has an unknown storage {storage!r}")


def _describe(leaf) -> tuple[tuple[int, ...], str]:
    """(shape, dtype name) of a template leaf, as :func:`_encode` records them."""
    if _is_key(leaf):
        return tuple(leaf.shape), str(leaf.dtype)
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
        return tuple(leaf.shape), np.dtype(leaf.dtype).name
    a = np.asarray(leaf)
    return a.shape, a.dtype.name


def _like(template, value):
    """``value`` (NumPy array or typed key) as the same kind of object as ``template``."""
    if _is_key(value):
        return value
    if isinstance(template, np.ndarray):
        return value
    if isinstance(template, np.generic):
        return value[()]
    if isinstance(template, bool | int | float | complex):
        return type(template)(value.item())
    if isinstance(template, jax.Array) and template.weak_type:
        # keeps the weak type (jnp.asarray would drop it, and with it the dtype promotion of a resumed run)
        return template.at[...].set(value)
    return jax.device_put(value)  # a transfer, not an operation: nothing is compiled


# ----------------------------------------------------------------------------- checkpoints


def save(path, tree, config=None) -> None:
    """Write the pytree ``tree`` and the JSON-able dict ``config`` to ``path`` atomically.

    Leaves are arrays (JAX or NumPy, typed PRNG keys included) or Python/NumPy scalars.
    Raises TypeError naming the leaf or the config key that cannot be stored.
    """
    cfg = _config(config)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    infos, arrays = [], []
    for keypath, leaf in leaves:
        where = jax.tree_util.keystr(keypath)
        info, a = _encode(leaf, where)
        infos.append({"path": where, **info})
        arrays.append(a)
    meta = {"format": FORMAT, "version": VERSION, "treedef": str(treedef), "leaves": infos, "config": cfg}
    meta["sha256"] = _checksum(meta, arrays)
    entries = {f"leaf_{i}": a for i, a in enumerate(arrays)}
    entries[_META] = np.frombuffer(_canonical(meta), dtype=np.uint8)
    with atomic_open(path, "wb") as f:
        np.savez(f, allow_pickle=False, **entries)


def _read_checkpoint(path) -> tuple[dict, list]:
    """(metadata, decoded leaves) of a checked checkpoint file."""
    path = os.fspath(path)
    entries = load_npz(path, CheckpointError)
    if _META not in entries:
        raise CheckpointError(f"{path}: not a jaxreg checkpoint (it has no {_META!r} entry)")
    raw = entries.pop(_META)
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError(f"metadata is {raw.dtype}{list(raw.shape)}, expected 1-d uint8")
        meta = json.loads(raw.tobytes().decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("metadata is not a JSON object")
    except RecursionError:
        raise CheckpointError(f"{path}: corrupted checkpoint: metadata nested too deeply to read") from None
    except ValueError as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CheckpointError(f"{path}: corrupted checkpoint: unreadable metadata ({err})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a jaxreg checkpoint (format {meta.get('format')!r}, expected {FORMAT!r})"
        )
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: unsupported checkpoint format version {meta.get('version')!r}, "
            f"this jaxreg reads version {VERSION}"
        )
    _check_meta(path, meta)
    infos, stored_sha = meta["leaves"], meta["sha256"]
    names = [f"leaf_{i}" for i in range(len(infos))]
    missing = [n for n in names if n not in entries]
    if missing:
        raise CheckpointError(
            f"{path}: truncated checkpoint: missing {len(missing)} of {len(names)} leaves "
            f"({', '.join(missing[:5])})"
        )
    extra = sorted(set(entries) - set(names))
    if extra:
        raise CheckpointError(f"{path}: corrupted checkpoint: unexpected entries {extra}")
    arrays = [entries[n] for n in names]
    if _checksum(meta, arrays) != stored_sha:
        raise CheckpointError(f"{path}: corrupted checkpoint: sha256 checksum mismatch")
    try:
        leaves = [_decode(info, a, path, info["path"]) for info, a in zip(infos, arrays, strict=True)]
    except TypeError as err:  # a dtype NumPy does not know
        raise CheckpointError(f"{path}: corrupted checkpoint: malformed leaf metadata ({err})") from None
    return meta, leaves


def _depth(value) -> int:
    """How deeply JSON data nests (without recursion: a forged file may nest thousands deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:
                stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return deepest


def _check_meta(path: str, meta: dict) -> None:
    """The metadata's schema, checked before any of it is used: a file with a valid checksum may
    still be forged, and must be refused in words (not KeyError, TypeError or RecursionError)."""
    def malformed(where, got, expected):
        return CheckpointError(f"{path}: corrupted checkpoint: metadata {where}: got {got!r:.80}, expected {expected}")

    if _depth(meta) > MAX_DEPTH:
        raise CheckpointError(f"{path}: corrupted checkpoint: metadata nested more than {MAX_DEPTH} levels deep")
    for key, kind, expected in (("leaves", list, "a list"), ("sha256", str, "a string"),
                                ("treedef", str, "a string"), ("config", dict, "a JSON object")):
        if key not in meta and key != "config":
            raise CheckpointError(f"{path}: corrupted checkpoint: incomplete metadata (no {key!r})")
        if key in meta and not isinstance(meta[key], kind):
            raise malformed(repr(key), meta[key], expected)
    for i, info in enumerate(meta["leaves"]):
        where = f"leaves[{i}]"
        if not isinstance(info, dict):
            raise malformed(where, info, "a JSON object")
        for key in ("path", "dtype", "storage") + (("key_impl",) if info.get("storage") == "key_data" else ()):
            if not isinstance(info.get(key), str):
                raise malformed(f"{where}[{key!r}]", info.get(key), "a string")
        if info["storage"] not in _STORAGES:
            raise malformed(f"{where}['storage']", info["storage"], f"one of {', '.join(_STORAGES)}")
        shape = info.get("shape")
        if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                for d in shape)):
            raise malformed(f"{where}['shape']", shape, "a list of integers >= 0")


def _check_config(path: str, stored: dict, config, ignore: Iterable[str]) -> None:
    given = _config(config)
    ignore = set(ignore)

    def show(d, k):
        return json.dumps(d[k]) if k in d else "absent"

    diffs = [
        f"{k} (checkpoint: {show(stored, k)}, now: {show(given, k)})"
        for k in sorted(set(stored) | set(given))
        if k not in ignore and (k not in stored or k not in given or stored[k] != given[k])
    ]
    if diffs:
        raise CheckpointError(
            f"{path}: incompatible checkpoint: the configuration differs on " + "; ".join(diffs)
        )


def _check_template(path: str, infos: list[dict], like) -> tuple[list, object]:
    """The template's leaves and treedef, after checking that they match the stored leaves."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(like)
    paths = [jax.tree_util.keystr(p) for p, _ in leaves]
    stored = [info["path"] for info in infos]
    if paths != stored:
        n = min(len(paths), len(stored))
        first = next((i for i in range(n) if paths[i] != stored[i]), n)
        got = stored[first] if first < len(stored) else "<end>"
        want = paths[first] if first < len(paths) else "<end>"
        raise CheckpointError(
            f"{path}: incompatible checkpoint: expected {len(paths)} leaves, got {len(stored)}; "
            f"leaf {first}: expected {want}, got {got}"
        )
    for (_, leaf), info in zip(leaves, infos, strict=True):
        shape, dtype = _describe(leaf)
        if shape != tuple(info["shape"]) or dtype != info["dtype"]:
            raise CheckpointError(
                f"{path}: incompatible checkpoint: leaf {info['path']}: expected {dtype}{list(shape)}, "
                f"got {info['dtype']}{info['shape']}"
            )
        if _is_key(leaf) and isinstance(leaf, jax.Array):
            impl = str(jax.random.key_impl(leaf))
            if impl != info["key_impl"]:
                raise CheckpointError(
                    f"{path}: incompatible checkpoint: leaf {info['path']}: expected a {impl} key, "
                    f"got {info['key_impl']}"
                )
    return [leaf for _, leaf in leaves], treedef


def load(path, like=None, config=None, ignore: Iterable[str] = ()):
    """Read a checkpoint written by :func:`save`. Returns ``(tree, stored_config)``.

    With ``like`` (a pytree of the same structure, e.g. a freshly initialised state),
    ``tree`` has like's structure and each leaf like's kind: ``jax.Array`` (with like's
    weak type when like's leaf is a concrete array; a ``ShapeDtypeStruct`` leaf gives a
    strongly typed array), NumPy array or scalar, Python scalar; typed keys come back
    as typed keys.
    Leaf paths, shapes and dtypes must match like's. Without ``like``, ``tree`` is a
    dict ``{keystr path: NumPy array or typed key}`` in leaf order.

    With ``config``, the stored configuration must equal it on every top-level key
    but those in ``ignore``. ``stored_config`` is the JSON data saved (tuples as lists).

    Raises FileNotFoundError for a missing file, :class:`CheckpointError` (a ValueError)
    for a file that is truncated, corrupted, not a jaxreg checkpoint, of another
    format version, carrying pickled objects, or incompatible with ``like``/``config``.
    """
    path = os.fspath(path)
    meta, values = _read_checkpoint(path)
    stored_config = meta.get("config", {})
    if config is not None:
        if isinstance(ignore, str):
            ignore = (ignore,)
        _check_config(path, stored_config, config, ignore)
    infos = meta["leaves"]
    if like is None:
        return {info["path"]: v for info, v in zip(infos, values, strict=True)}, stored_config
    templates, treedef = _check_template(path, infos, like)
    restored = [_like(t, v) for t, v in zip(templates, values, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, restored), stored_config


# ----------------------------------------------------------------------------- trained parameters


def save_params(path, params) -> None:
    """Write ``{"W1": (n1, n0), "b1": (n1, 1), ...}`` to ``path`` as a plain ``.npz`` (atomically)."""
    data = params_bytes(params)
    with atomic_open(path, "wb") as f:
        f.write(data)


def params_bytes(params) -> bytes:
    """The ``.npz`` file :func:`save_params` writes, as bytes (to write it with others, all or nothing)."""
    dims = validate.params(params)
    names = [f"{c}{l}" for l in range(1, len(dims)) for c in "Wb"]
    arrays = {k: np.asarray(params[k]) for k in names}
    for k, a in arrays.items():
        if a.dtype.kind != "f":
            raise TypeError(f"params[{k!r}]: got dtype {a.dtype}, expected a floating dtype")
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()


def load_params(path) -> dict[str, np.ndarray]:
    """The parameter dict saved by :func:`save_params`, as NumPy arrays of the stored dtype.

    Refuses (CheckpointError naming the file) anything but finite floating ``W1, b1, ...``
    of matching shapes, and pickled content."""
    path = os.fspath(path)
    arrays = load_npz(path, CheckpointError)
    try:
        dims = validate.params(arrays)
    except ValueError as err:
        raise CheckpointError(f"{path}: not a jaxreg parameter file: {err}") from None
    for k, a in arrays.items():
        if a.dtype.kind != "f":
            raise CheckpointError(f"{path}: params[{k!r}]: got dtype {a.dtype}, expected a floating dtype")
    return {f"{c}{l}": arrays[f"{c}{l}"] for l in range(1, len(dims)) for c in "Wb"}
