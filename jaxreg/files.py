"""Files: atomic writes, and ``.npz`` reads that never unpickle (NumPy only).

* :func:`atomic_open` / :func:`atomic_write` / :func:`write_all`: every output file of
  the project is written to a temporary file ``.NAME.XXXXXXXX.tmp`` in the target's
  folder, flushed, fsync'ed and renamed over the target (then the folder is fsync'ed):
  a reader sees the old file or the new one, never half of one. Missing parent folders
  are created. Only a regular file is ever replaced (:func:`check_output`): a device,
  fifo, socket or folder is refused; a symbolic link is followed, the new file replacing
  its target and the link kept. Temporary files of ours that a killed writer left
  beside the target are removed on the next write to it (when stale and not locked).
* :func:`check_input` / :func:`check_outputs`: a path to read must be a regular file; the
  paths a command writes must be writable, and none of them the same file as an input
  or as another output (through links).
* :func:`load_npz`: every ``.npz`` the project reads (data, parameters, checkpoints),
  refusing pickled content before any of it is read.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import stat
import tempfile
import threading
import time
import zipfile
import zlib

import numpy as np

try:
    import fcntl
except ImportError:  # not POSIX: stale temporary files are recognised by their age alone
    fcntl = None

__all__ = [
    "STALE_SECONDS", "RefusedPath", "UnreadableFile", "atomic_open", "atomic_write", "check_input", "check_output",
    "check_outputs", "load_npz", "write_all",
]

STALE_SECONDS = 600  # a temporary file of ours this old, and not locked by its writer, was left by a killed one


class UnreadableFile(ValueError):
    """A file refused on reading: not what it should be, damaged, or unsafe (pickled)."""


class RefusedPath(ValueError):
    """A path refused before anything is read or written: not a regular file, or one of a command's
    outputs that is the same file as one of its inputs or outputs."""


# Read once: os.umask can only be read by setting it, which is not thread-safe.
_UMASK = os.umask(0)
os.umask(_UMASK)

# Temporary files being written; removed by a process that must exit at once (jaxreg.cli.interrupt).
PENDING: set[str] = set()


# ----------------------------------------------------------------------------- paths

_KINDS = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a fifo (named pipe)"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((words for test, words in _KINDS if test(mode)), "not a regular file")


def _via(path: str, target: str) -> str:
    """``path``, naming the target where ``path`` is a symbolic link."""
    return f"{path} (a symbolic link to {target})" if os.path.islink(path) else path


def check_input(path, expected: str = "a regular file") -> None:
    """Refuse a path to read that is missing (FileNotFoundError) or not a regular file
    (:class:`RefusedPath`: reading a fifo would block, a device never end)."""
    path = os.fspath(path)
    if not path:
        raise RefusedPath(f"an empty path: expected the path of {expected}")
    if _names_folder(path):
        raise RefusedPath(f"{path}: names a folder (it ends in {_ending(path)}), expected {expected}")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        dangling = f" (a symbolic link to {os.readlink(path)}, which does not exist)" if os.path.islink(path) else ""
        raise FileNotFoundError(f"{path}: no such file{dangling}, expected {expected}") from None
    if not stat.S_ISREG(mode):
        raise RefusedPath(f"{_via(path, os.path.realpath(path))}: is {_kind(mode)}, expected {expected}")


def check_output(path) -> str:
    """The file a write to ``path`` replaces: ``path``, or the target of the symbolic link(s)
    ``path`` is. Refuses (:class:`RefusedPath`) a target that exists and is not a regular
    file, and (PermissionError) one whose folder cannot be created or written."""
    path = os.fspath(path)
    if not path:
        raise RefusedPath("an empty path: expected the path of a file to write")
    if _names_folder(path):
        raise RefusedPath(f"{path}: names a folder (it ends in {_ending(path)}), expected the path of a file to write")
    target = os.path.realpath(path)
    try:
        mode = os.stat(path).st_mode  # the kernel follows links, /proc/self/fd/1 to a pipe included
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        raise RefusedPath(f"{_via(path, target)}: is {_kind(mode)}, expected a regular file or a new path "
                          "(refused: jaxreg replaces only regular files)")
    folder = os.path.dirname(target)
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise RefusedPath(f"{path}: cannot be written: {existing} is {_kind(os.stat(existing).st_mode)}, "
                          "expected a folder")
    try:  # what the folder takes, tried (permission bits do not tell root, nor /proc, nor a read-only mount)
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise PermissionError(f"{path}: cannot be written: {existing} takes no file ({err.strerror or err})") from None
    return target


def _names_folder(path: str) -> bool:
    """A path that can only name a folder: ending in a separator, or in ``.`` or ``..``."""
    return path.endswith((os.sep, os.altsep or os.sep)) or os.path.basename(path) in (".", "..")


def _ending(path: str) -> str:
    return path[-1] if path.endswith((os.sep, os.altsep or os.sep)) else os.path.basename(path)


def _same(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:  # one of them does not exist (yet)
        return False


def check_outputs(outputs, inputs=None) -> None:
    """Check a command's paths before it runs: each output (``{label: path}`` or ``(label, path)``
    pairs; None skipped) with :func:`check_output`, and none the same file (through links) as an
    input or as another output. Labels (e.g. ``"--save"``) name the paths in messages."""
    def pairs(paths):
        items = paths.items() if isinstance(paths, dict) else paths or ()
        return [(label, os.fspath(p)) for label, p in items if p is not None]

    seen = pairs(inputs)
    for label, path in pairs(outputs):
        check_output(path)
        for other, other_path in seen:
            if _same(path, other_path):
                raise RefusedPath(f"{label} {path}: is the same file as {other} {other_path}, expected another "
                                  "path (refused: writing it would destroy that file)")
        seen.append((label, path))


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
    keeps the old one's permissions, or gets the usual ``0o666 & ~umask``. ``path`` must
    be a regular file or new (:func:`check_output`); a symbolic link's target is
    replaced, the link kept. An OSError while writing names ``path``."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open: got mode {mode!r}, expected 'wb' or 'w'")
    if mode == "w":
        open_kwargs.setdefault("encoding", "utf-8")
    path = os.fspath(path)
    target = check_output(path)
    directory = os.path.dirname(target)
    try:
        os.makedirs(directory, exist_ok=True)
        perms = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        perms = 0o666 & ~_UMASK
    except OSError as err:
        raise _naming(err, path) from None
    _remove_stale(directory, os.path.basename(target))
    # SIGINT and SIGTERM wait until the file is written or cleaned up (a write takes milliseconds):
    # a handler running halfway could leave the temporary file behind.
    with _signals_deferred():
        try:
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(target)}.", suffix=".tmp")
        except OSError as err:
            raise _naming(err, path) from None
        PENDING.add(tmp)
        try:
            if fcntl is not None:  # held while writing: the mark of a live writer (see _remove_stale)
                with contextlib.suppress(OSError):  # a filesystem without locks: age alone tells
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with os.fdopen(fd, mode, **open_kwargs) as f:
                yield f
                synced = not f.closed  # the caller may have closed it (some writers do)
                if synced:
                    f.flush()
                    os.fsync(f.fileno())
            if not synced:
                _fsync_path(tmp)
            os.chmod(tmp, perms)  # mkstemp creates the file 0o600
            os.replace(tmp, target)
        except BaseException as err:  # never leave a temporary file behind
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if isinstance(err, OSError) and err.filename in (None, tmp, target):
                raise _naming(err, path) from None
            raise
        finally:
            PENDING.discard(tmp)
    _fsync_dir(directory)


def _naming(err: OSError, path: str) -> OSError:
    """``err`` (e.g. ENOSPC, EFBIG, EACCES) as a message naming the user's ``path`` and the cause."""
    message = f"{path}: cannot be written: {err.strerror or err}"
    return OSError(err.errno, message) if err.errno is not None else OSError(message)


def _remove_stale(directory: str, name: str) -> None:
    """Remove the temporary files a killed writer of ``name`` left: ours (our naming pattern,
    our user), at least STALE_SECONDS old and not locked by a writer. Best effort."""
    pattern = re.compile(re.escape(f".{name}.") + r"[a-z0-9_]{8}\.tmp")
    uid, now = getattr(os, "getuid", lambda: None)(), time.time()
    try:
        entries = [e for e in os.scandir(directory) if pattern.fullmatch(e.name)]
    except OSError:
        return
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
            if (not stat.S_ISREG(st.st_mode) or (uid is not None and st.st_uid != uid)
                    or now - st.st_mtime < STALE_SECONDS or _locked(entry.path)):
                continue
            os.unlink(entry.path)
        except OSError:
            continue


def _locked(name: str) -> bool:
    """True when a live writer holds its lock on the file ``name``."""
    if fcntl is None:
        return False
    fd = os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases the lock taken here
    return False


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


def write_all(contents: dict) -> None:
    """Write several files at once, ``{path: bytes or str}``, each atomically: every temporary
    file is written and synced before any is renamed, so an error (a full disk) leaves all of
    them as they were."""
    with contextlib.ExitStack() as stack:
        for path, data in contents.items():
            f = stack.enter_context(atomic_open(path, "w" if isinstance(data, str) else "wb"))
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


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
    path that is not a regular file, a file that is not an ``.npz`` archive, is truncated or
    damaged, or holds pickled objects.
    """
    path = os.fspath(path)
    try:
        check_input(path, "an .npz archive")
    except RefusedPath as err:  # a fifo or device: never opened (reading it would block, or never end)
        raise error(str(err)) from None
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


