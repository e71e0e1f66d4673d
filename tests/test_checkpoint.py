"""Checkpoints and atomic files: bitwise round trips, atomicity, and every refusal."""

import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxreg import checkpoint as ckpt
from jaxreg import files
from jaxreg.checkpoint import CheckpointError
from jaxreg.model import init_params

DIMS = (2, 20, 3, 1)
CONFIG = {"layer_dims": [2, 20, 3, 1], "lambd": 0.7, "keep_prob": [1.0, 1.0], "iterations": 3000, "seed": 3}


class TrainState(NamedTuple):
    params: dict
    opt_state: tuple
    step: jax.Array
    key: jax.Array
    legacy_key: jax.Array


def make_state(dims=DIMS, seed=0, optimizer=None, key_impl=None):
    """A state as training builds it, after one Adam step (so mu and nu are not zeros)."""
    params = init_params(jax.random.key(seed), dims)
    optimizer = optimizer or optax.adam(1e-3)
    opt_state = optimizer.init(params)
    grads = jax.tree.map(lambda p: jnp.sin(p) + 0.1, params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    key = jax.random.key(seed + 1) if key_impl is None else jax.random.key(seed + 1, impl=key_impl)
    return TrainState(params, opt_state, jnp.asarray(1), key, jax.random.PRNGKey(seed + 2))


def assert_bitwise(got, want):
    """Same structure, same kind of leaf, same dtype and shape, same bytes."""
    got_leaves, got_def = jax.tree_util.tree_flatten_with_path(got)
    want_leaves, want_def = jax.tree_util.tree_flatten_with_path(want)
    assert got_def == want_def
    for (path, g), (_, w) in zip(got_leaves, want_leaves, strict=True):
        where = jax.tree_util.keystr(path)
        assert type(g) is type(w) or (isinstance(g, jax.Array) and isinstance(w, jax.Array)), where
        if jax.dtypes.issubdtype(getattr(w, "dtype", np.float64), jax.dtypes.prng_key):
            assert g.dtype == w.dtype and jax.random.key_impl(g) == jax.random.key_impl(w), where
            g, w = jax.random.key_data(g), jax.random.key_data(w)
        elif isinstance(w, jax.Array):
            assert g.weak_type == w.weak_type, where
        g, w = np.asarray(g), np.asarray(w)
        assert (g.dtype, g.shape) == (w.dtype, w.shape), where
        assert g.tobytes() == w.tobytes(), where


@pytest.fixture
def saved(tmp_path):
    """(path, state) of a checkpoint written with CONFIG."""
    state = make_state()
    path = tmp_path / "run.ckpt.npz"
    ckpt.save(path, state, CONFIG)
    return path, state


def rewrite(path, drop=(), meta=None, **entries):
    """Rewrite the .npz at ``path`` with some entries changed, dropped, or the metadata edited."""
    arrays = files.load_npz(path)
    if meta is not None:
        m = json.loads(arrays["jaxreg_meta"].tobytes())
        meta(m)
        arrays["jaxreg_meta"] = np.frombuffer(json.dumps(m).encode(), dtype=np.uint8)
    arrays.update(entries)
    for name in drop:
        del arrays[name]
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def refused(path, match, **kwargs):
    """The CheckpointError that load raises; it names the file."""
    with pytest.raises(CheckpointError, match=match) as info:
        ckpt.load(path, **kwargs)
    assert str(path) in str(info.value)
    return info.value


# ----------------------------------------------------------------------------- round trips


def test_train_state_round_trip_is_bitwise(saved):
    path, state = saved
    restored, config = ckpt.load(path, like=make_state(seed=5), config=CONFIG)
    assert_bitwise(restored, state)
    assert isinstance(restored, TrainState)
    assert isinstance(restored.opt_state[1], optax.EmptyState)
    assert config == CONFIG
    # the restored key draws the same numbers as the saved one
    assert np.array_equal(jax.random.normal(restored.key, (4,)), jax.random.normal(state.key, (4,)))


def test_non_default_key_impl_round_trip(tmp_path):
    state = make_state(key_impl="rbg")
    ckpt.save(tmp_path / "c.npz", state, {})
    restored, _ = ckpt.load(tmp_path / "c.npz", like=make_state(seed=9, key_impl="rbg"))
    assert_bitwise(restored, state)


def test_leaf_kinds_and_special_values_round_trip(tmp_path):
    tree = {
        "int": 3,
        "float": 0.1,
        "bool": True,
        "np_scalar": np.float32(1.5),
        "np_array": np.arange(6, dtype=np.int16).reshape(2, 3),
        "bf16": jnp.asarray([1.5, -2.0, 3.0], dtype=jnp.bfloat16),
        "weak": jnp.asarray(2.0),
        "special": jnp.asarray([np.nan, -0.0, np.inf, -np.inf, 5e-324, -1.2345678901234567e300]),
        "complex": np.asarray([1 + 2j, -0.0 - 3j]),
        "empty": np.zeros((0, 4)),
    }
    ckpt.save(tmp_path / "c.npz", tree)
    like = jax.tree.map(lambda x: x * 0 if not isinstance(x, bool) else False, tree)
    restored, config = ckpt.load(tmp_path / "c.npz", like=like)
    assert_bitwise(restored, tree)
    assert config == {}


def test_load_without_template_gives_leaves_by_path(saved):
    path, state = saved
    flat, config = ckpt.load(path)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]]
    assert list(flat) == paths
    assert np.asarray(flat[".params['W1']"]).tobytes() == np.asarray(state.params["W1"]).tobytes()
    assert flat[".key"].dtype == state.key.dtype
    assert isinstance(flat[".step"], np.ndarray) and flat[".step"] == 1
    assert config == CONFIG


def test_config_is_stored_as_json_and_compared_after_normalising(tmp_path):
    config = {"layer_dims": (2, 20, 3, 1), "lambd": np.float64(0.7), "seed": np.int64(3), "name": "é"}
    ckpt.save(tmp_path / "c.npz", {"x": np.zeros(2)}, config)
    _, stored = ckpt.load(tmp_path / "c.npz", config=config)  # tuple vs list, numpy vs Python: equal
    assert stored == {"layer_dims": [2, 20, 3, 1], "lambd": 0.7, "seed": 3, "name": "é"}
    assert type(stored["seed"]) is int


# ----------------------------------------------------------------------------- atomic files


def no_temporary_files(directory, *expected):
    assert sorted(os.listdir(directory)) == sorted(expected)


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_atomic_open_failure_leaves_old_file(tmp_path, exc):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old contents")
    with pytest.raises(exc), files.atomic_open(path) as f:
        f.write(b"partial new contents")
        f.flush()
        raise exc()
    assert path.read_bytes() == b"old contents"
    no_temporary_files(tmp_path, "out.bin")


def test_save_failing_mid_write_keeps_previous_checkpoint(saved, monkeypatch):
    path, state = saved
    before = path.read_bytes()

    def savez_that_fails(file, *args, **kwargs):
        file.write(b"PK\x03\x04 half an archive")
        raise OSError("No space left on device")

    monkeypatch.setattr(np, "savez", savez_that_fails)
    with pytest.raises(OSError, match="No space"):
        ckpt.save(path, make_state(seed=1), CONFIG)
    monkeypatch.undo()
    assert path.read_bytes() == before
    no_temporary_files(path.parent, path.name)
    assert_bitwise(ckpt.load(path, like=state)[0], state)


def test_failing_rename_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")

    def replace_that_fails(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", replace_that_fails)
    with pytest.raises(OSError, match="rename failed"):
        files.atomic_write(path, b"new")
    assert path.read_bytes() == b"old"
    no_temporary_files(tmp_path, "out.bin")


def test_atomic_write_fsyncs_file_then_folder(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    files.atomic_write(tmp_path / "out.bin", b"data")
    assert synced == ["file", "dir"]


@pytest.mark.parametrize("write", [lambda path: files.atomic_write(path, b"data"),
                                   lambda path: ckpt.save(path, {"w": np.zeros(3)})], ids=["atomic_write", "save"])
def test_the_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch, write):
    # The rename is durable only once its folder is fsync'ed; an fsync before it leaves it in the page cache.
    events = []
    real_fsync, folder = os.fsync, os.stat(tmp_path)

    def recording_fsync(fd):
        st = os.fstat(fd)
        events.append("fsync folder" if (st.st_dev, st.st_ino) == (folder.st_dev, folder.st_ino)
                      else "fsync file" if stat.S_ISREG(st.st_mode) else "fsync other")
        real_fsync(fd)

    def recording(rename):
        def call(src, dst, *args, **kwargs):
            events.append(f"rename to {os.path.basename(dst)}")
            return rename(src, dst, *args, **kwargs)
        return call

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording(os.replace))
    monkeypatch.setattr(os, "rename", recording(os.rename))
    write(tmp_path / "out.bin")
    assert events == ["fsync file", "rename to out.bin", "fsync folder"]


def test_atomic_write_creates_folders_and_sets_usual_permissions(tmp_path):
    path = tmp_path / "a" / "b" / "out.bin"
    files.atomic_write(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    path.chmod(0o640)
    files.atomic_write(path, b"again")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.read_bytes() == b"again"
    no_temporary_files(path.parent, "out.bin")


def test_atomic_open_text_mode_and_caller_closing(tmp_path):
    with files.atomic_open(tmp_path / "t.csv", "w") as f:
        f.write("λ,accuracy\n")
    assert (tmp_path / "t.csv").read_text(encoding="utf-8") == "λ,accuracy\n"
    with files.atomic_open(tmp_path / "c.bin") as f:
        f.write(b"closed early")
        f.close()
    assert (tmp_path / "c.bin").read_bytes() == b"closed early"
    no_temporary_files(tmp_path, "t.csv", "c.bin")


def test_atomic_helpers_reject_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="data got str"):
        files.atomic_write(tmp_path / "x", "text")
    with pytest.raises(ValueError, match="got mode 'ab'"), files.atomic_open(tmp_path / "x", "ab"):
        pass
    no_temporary_files(tmp_path)


# ----------------------------------------------------------------------------- refusals: the file


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        ckpt.load(tmp_path / "nope.npz")


@pytest.mark.parametrize("keep", [0, 3, 0.5, -22, -1])
def test_truncated_file_is_refused(saved, keep):
    path, _ = saved
    data = path.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep % len(data) if keep else 0
    path.write_bytes(data[:cut])
    refused(path, "truncated")


def test_missing_leaf_is_refused(saved):
    path, _ = saved
    rewrite(path, drop=["leaf_3"])
    refused(path, "truncated checkpoint: missing 1 of 22 leaves \\(leaf_3\\)")


def test_flipped_byte_in_a_leaf_is_refused(saved):
    path, state = saved
    data = bytearray(path.read_bytes())
    at = data.find(np.asarray(state.params["W2"]).tobytes())
    assert at > 0
    data[at + 13] ^= 0x10
    path.write_bytes(bytes(data))
    refused(path, "corrupted")


def test_checksum_catches_a_changed_leaf_in_a_valid_archive(saved):
    path, state = saved
    w = np.asarray(state.params["W1"]).copy()
    w[0, 0] = np.nextafter(w[0, 0], np.inf)
    rewrite(path, leaf_0=w)
    refused(path, "corrupted checkpoint: sha256 checksum mismatch")


def test_leaf_disagreeing_with_its_checksummed_metadata_is_refused(saved):
    path, _ = saved
    arrays = files.load_npz(path)
    leaves = [arrays[f"leaf_{i}"] for i in range(len(arrays) - 1)]

    def reshape_w1(m):  # W1 is (20, 2): record (2, 20) and a checksum that agrees with it
        m["leaves"][0]["shape"] = [2, 20]
        del m["sha256"]
        m["sha256"] = ckpt._checksum(m, leaves)

    rewrite(path, meta=reshape_w1)
    refused(path, r"corrupted checkpoint: leaf \.params\['W1'\] holds float64\[20, 2\], "
                  r"expected float64\[2, 20\]")


def test_pickled_objects_are_refused_without_running_them(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    npz = tmp_path / "evil.npz"
    np.savez(npz, leaf_0=np.array([Payload()], dtype=object))
    refused(npz, "carries pickled Python objects; refused")
    with pytest.raises(CheckpointError, match="pickled"):
        ckpt.load_params(npz)
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(Payload()))
    refused(raw, "carries pickled Python objects; refused")
    assert not marker.exists()


def test_unknown_format_version_is_refused(saved):
    path, _ = saved
    rewrite(path, meta=lambda m: m.update(version=2))
    refused(path, "unsupported checkpoint format version 2, this jaxreg reads version 1")


@pytest.mark.parametrize("kind", ["params", "other_format", "text", "npy"])
def test_files_that_are_not_checkpoints_are_refused(tmp_path, saved, kind):
    path = tmp_path / "x.npz"
    if kind == "params":
        ckpt.save_params(path, saved[1].params)
        match = "not a jaxreg checkpoint \\(it has no 'jaxreg_meta' entry\\)"
    elif kind == "other_format":
        path = saved[0]
        rewrite(path, meta=lambda m: m.update(format="something-else"))
        match = "not a jaxreg checkpoint \\(format 'something-else'"
    elif kind == "text":
        path.write_text("W1,b1\n1,2\n")
        match = "not an .npz archive"
    else:
        np.save(path.with_suffix(".npy"), np.zeros(3))
        path = path.with_suffix(".npy")
        match = "single .npy array"
    refused(path, match)


# ----------------------------------------------------------------------------- refusals: compatibility


@pytest.mark.parametrize(
    "like, match",
    [
        (lambda: make_state(dims=(2, 5, 3, 1)),
         r"leaf \.params\['W1'\]: expected float64\[5, 2\], got float64\[20, 2\]"),
        (lambda: make_state()._replace(params=jax.tree.map(lambda p: p.astype(jnp.float32), make_state()[0])),
         r"leaf \.params\['W1'\]: expected float32\[20, 2\], got float64\[20, 2\]"),
        # sgd keeps no state: 6 params + 3 others; adam adds count, mu and nu (13)
        (lambda: make_state(optimizer=optax.sgd(0.1)), r"expected 9 leaves, got 22; leaf 6: expected \.step"),
        (lambda: make_state(dims=(2, 20, 3, 3, 1)), r"expected 28 leaves, got 22"),
        (lambda: make_state(key_impl="rbg"), r"leaf \.key: expected key<rbg>\[\], got key<fry>\[\]"),
        (lambda: make_state()._replace(key=jax.random.PRNGKey(0)),
         r"leaf \.key: expected uint32\[2\], got key<fry>"),
    ],
    ids=["shape", "dtype", "optimizer", "depth", "key_impl", "legacy_key"],
)
def test_mismatched_template_is_refused(saved, like, match):
    refused(saved[0], "incompatible checkpoint: " + match, like=like())


def test_mismatched_config_is_refused_naming_keys_and_values(saved):
    path, state = saved
    other = {**CONFIG, "lambd": 0.0, "keep_prob": [0.86, 0.86], "iterations": 30000}
    del other["seed"]
    err = refused(path, "incompatible checkpoint: the configuration differs", like=state, config=other,
                  ignore=("iterations",))
    assert "keep_prob (checkpoint: [1.0, 1.0], now: [0.86, 0.86])" in str(err)
    assert "lambd (checkpoint: 0.7, now: 0.0)" in str(err)
    assert "seed (checkpoint: 3, now: absent)" in str(err)
    assert "iterations" not in str(err)
    # only the allowed key differs: accepted
    tree, stored = ckpt.load(path, like=state, config={**CONFIG, "iterations": 30000}, ignore="iterations")
    assert stored["iterations"] == 3000
    assert_bitwise(tree, state)


# ----------------------------------------------------------------------------- refusals: saving


@pytest.mark.parametrize(
    "config, error, match",
    [
        ({"f": object()}, TypeError, r"config\['f'\]: got object"),
        ({"a": {"b": [1, {2, 3}]}}, TypeError, r"config\['a'\]\['b'\]\[1\]: got set"),
        ({1: 2}, TypeError, r"config: got key 1 \(int\), expected str keys"),
        ({"lambd": float("nan")}, ValueError, r"config\['lambd'\]: got nan, expected a finite number"),
        ([("a", 1)], TypeError, r"config: got list, expected a dict"),
    ],
)
def test_config_that_json_cannot_hold_is_refused(tmp_path, config, error, match):
    with pytest.raises(error, match=match):
        ckpt.save(tmp_path / "c.npz", {"x": np.zeros(1)}, config)
    no_temporary_files(tmp_path)


def test_non_numeric_leaf_is_refused(tmp_path):
    with pytest.raises(TypeError, match=r"leaf \['names'\]: got dtype <U3, expected numbers or a PRNG key"):
        ckpt.save(tmp_path / "c.npz", {"names": np.array(["abc"]), "x": np.zeros(1)}, {})
    no_temporary_files(tmp_path)


# ----------------------------------------------------------------------------- trained parameters


def test_save_params_is_a_plain_npz(tmp_path):
    params = make_state().params
    path = tmp_path / "params.npz"
    ckpt.save_params(path, params)
    with np.load(path, allow_pickle=False) as d:
        assert sorted(d.files) == ["W1", "W2", "W3", "b1", "b2", "b3"]
        for k in d.files:
            assert d[k].dtype == np.float64 and d[k].tobytes() == np.asarray(params[k]).tobytes()
    loaded = ckpt.load_params(path)
    assert list(loaded) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert_bitwise(loaded, {k: np.asarray(v) for k, v in params.items()})


def test_bad_parameter_files_are_refused(tmp_path, saved):
    params = {k: np.asarray(v) for k, v in make_state().params.items()}
    path = tmp_path / "p.npz"
    np.savez(path, **{k: v for k, v in params.items() if k != "b2"})
    with pytest.raises(CheckpointError, match=r"p\.npz: not a jaxreg parameter file: .*missing \['b2'\]"):
        ckpt.load_params(path)
    np.savez(path, **{**params, "W2": np.full_like(params["W2"], np.nan)})
    with pytest.raises(CheckpointError, match=r"params\['W2'\]: got NaN or infinite values"):
        ckpt.load_params(path)
    np.savez(path, **{**params, "b1": params["b1"].astype(np.int64)})
    with pytest.raises(CheckpointError, match=r"params\['b1'\]: got dtype int64, expected a floating dtype"):
        ckpt.load_params(path)
    with pytest.raises(CheckpointError, match="not a jaxreg parameter file"):
        ckpt.load_params(saved[0])
    with pytest.raises(ValueError, match="params"):
        ckpt.save_params(tmp_path / "q.npz", {k: v for k, v in params.items() if k != "W3"})
    assert not (tmp_path / "q.npz").exists()


WRITER = """
import signal, sys, time
from jaxreg.files import atomic_write

def interrupt(signum, frame):
    raise KeyboardInterrupt

signal.signal(signal.SIGTERM, interrupt)
path, payloads = sys.argv[1], [b"old" * 1000, b"new" * 2000]
writes = interrupted = 0
end = time.monotonic() + float(sys.argv[2])

def run():
    global writes, interrupted
    while time.monotonic() < end:
        try:
            atomic_write(path, payloads[writes % 2])
            writes += 1
        except KeyboardInterrupt:
            interrupted += 1

print("ready", flush=True)
while time.monotonic() < end:  # a signal between the statements above lands here
    try:
        run()
    except KeyboardInterrupt:
        interrupted += 1
print(writes, interrupted, flush=True)
"""


def test_signals_during_atomic_writes_leave_no_temporary_file(tmp_path):
    """Thousands of SIGINT and SIGTERM at random moments while a process writes one file over
    and over: every interruption cleans up after itself, and the file is always whole."""
    path = tmp_path / "target.bin"
    rng = np.random.default_rng(0)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "4"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.1)  # into its loop
        sent, stop = 0, time.monotonic() + 3
        while time.monotonic() < stop:
            proc.send_signal(signal.SIGINT if sent % 2 else signal.SIGTERM)
            sent += 1
            time.sleep(rng.uniform(0, 2e-3))
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    writes, interrupted = (int(v) for v in out.split())
    assert proc.returncode == 0 and writes > 100 and interrupted > 100, (writes, interrupted, sent)
    assert sorted(os.listdir(tmp_path)) == ["target.bin"]
    assert path.read_bytes() in (b"old" * 1000, b"new" * 2000)
