"""Files: atomic writes, and ``.npz`` reads that never unpickle (NumPy only).

* :func:`atomic_open` / :func:`atomic_write`: every output file of the project is
  written to a temporary file in the target's folder, flushed, fsync'ed and renamed
  over the target (then the folder is fsync'ed): a reader sees the old file or the
  new one, never half of one. Missing parent folders are created.
* :func:`load_npz`: every ``.npz`` the project reads (data, parameters, checkpoints),
  refusing pickled content before any of it is read.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import stat
import tempfile
import threading
import zipfile
import zlib

import numpy as np

__all__ = ["UnreadableFile", "atomic_open", "atomic_write", "load_npz"]


class UnreadableFile(ValueError):
    """A file refused on reading: not what it should be, damaged, or unsafe (pickled)."""


# Read once: os.umask can only be read by setting it, which is not thread-safe.
_UMASK = os.umask(0)
os.umask(_UMASK)



# ----------------------------------------------------------------------------- atomic files


def _fsync_dir(directory: str) -> None:
    """Make a rename in ``directory`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a folder; the rename itself is done
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path, mode: str = "wb", **open_kwargs):
    """Open a temporary file that replaces ``path`` only when the ``with`` block succeeds.

    ``mode`` is ``"wb"`` or ``"w"`` (text, UTF-8 unless ``encoding`` is given; other
    keyword arguments go to ``open``). On any exception the temporary file is removed
    and ``path`` is left as it was; SIGINT and SIGTERM (in the main thread) take effect
    when the block is done, so no signal leaves a temporary file behind. The new file
    keeps the old one's permissions, or gets the usual ``0o666 & ~umask``.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open: got mode {mode!r}, expected 'wb' or 'w'")
    if mode == "w":
        open_kwargs.setdefault("encoding", "utf-8")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    try:
        perms = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        perms = 0o666 & ~_UMASK
    # SIGINT and SIGTERM wait until the file is written or cleaned up (a write takes milliseconds):
    # a handler running halfway could leave the temporary file behind.
    with _signals_deferred():
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
        try:
            with os.fdopen(fd, mode, **open_kwargs) as f:
                yield f
                synced = not f.closed  # the caller may have closed it (some writers do)
                if synced:
                    f.flush()
                    os.fsync(f.fileno())
            if not synced:
                _fsync_path(tmp)
            os.chmod(tmp, perms)  # mkstemp creates the file 0o600
            os.replace(tmp, path)
        except BaseException:  # never leave a temporary file behind
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    _fsync_dir(directory)


@contextlib.contextmanager
def _signals_deferred():
    """SIGINT and SIGTERM wait until the block ends, then reach the handlers the caller had
    (Python's handlers, in the main thread; elsewhere signals are not Python's to defer).
    Blocking them (``pthread_sigmask``) would not do: another thread would take them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not None:  # None: a handler installed outside Python, left alone
            previous[sig] = signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(caught):
            signal.raise_signal(sig)


def _fsync_path(name: str) -> None:
    """fsync a closed file by name."""
    fd = os.open(name, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path, data) -> None:
    """Write the bytes ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(
            f"atomic_write: data got {type(data).__name__}, expected bytes "
            "(for text, use atomic_open(path, 'w'))"
        )
    with atomic_open(path, "wb") as f:
        f.write(data)


# ----------------------------------------------------------------------------- reading .npz safely

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or an empty archive
_NPY_MAGIC = b"\x93NUMPY"
_PICKLE_MAGIC = b"\x80"  # pickle protocols 2 and later
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)


def _pickled(path: str, where: str, error: type[UnreadableFile]) -> UnreadableFile:
    return error(
        f"{path}: {where} carries pickled Python objects; refused, since loading it could run code "
        "(jaxreg files hold only plain arrays and JSON)"
    )


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str, error: type[UnreadableFile]) -> np.ndarray:
    """One ``.npy`` entry, refusing object (pickled) arrays before reading any data."""
    name = info.filename
    with zf.open(info) as fp:
        version = np.lib.format.read_magic(fp)
        if version in ((1, 0), (2, 0)):
            reader = getattr(np.lib.format, f"read_array_header_{version[0]}_0")
            shape, _, dtype = reader(fp)
            if dtype.hasobject:
                raise _pickled(path, f"entry {name!r}", error)
            expected = math.prod(shape) * dtype.itemsize
            if info.file_size - fp.tell() < expected:
                raise error(
                    f"{path}: entry {name!r} is truncated: its header promises {expected} bytes of data, "
                    f"it holds {info.file_size - fp.tell()}"
                )
    with zf.open(info) as fp:
        try:
            return np.lib.format.read_array(fp, allow_pickle=False)
        except ValueError as err:  # object arrays (header version 3) or a damaged header
            raise error(
                f"{path}: entry {name!r} cannot be read without unpickling, or is damaged ({err}); refused"
            ) from None


def load_npz(path, error: type[UnreadableFile] = UnreadableFile) -> dict[str, np.ndarray]:
    """All arrays of the ``.npz`` file ``path``, by name, read with ``allow_pickle=False``.

    Raises ``FileNotFoundError`` for a missing file and ``error`` (an :class:`UnreadableFile`) for a
    file that is not an ``.npz`` archive, is truncated or damaged, or holds pickled objects.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(len(_NPY_MAGIC))
    if len(head) < len(_ZIP_MAGIC[0]) and _ZIP_MAGIC[0].startswith(head):
        raise error(f"{path}: truncated file ({len(head)} bytes), expected an .npz archive")
    if head.startswith(_PICKLE_MAGIC):
        raise _pickled(path, "the file", error)
    if head.startswith(_NPY_MAGIC):
        raise error(f"{path}: holds a single .npy array, expected an .npz archive")
    if not head.startswith(_ZIP_MAGIC):
        raise error(f"{path}: not an .npz archive (it does not start with a zip header)")
    try:
        with zipfile.ZipFile(path) as zf:
            arrays = {}
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    raise error(
                        f"{path}: entry {info.filename!r} is not an .npy array, expected only .npy entries"
                    )
                arrays[info.filename[: -len(".npy")]] = _read_member(zf, info, path, error)
            return arrays
    except _DAMAGED as err:
        raise error(f"{path}: truncated or corrupted .npz archive ({err})") from None
    except ValueError as err:
        if isinstance(err, UnreadableFile):
            raise
        raise error(f"{path}: corrupted .npz entry ({err})") from None


