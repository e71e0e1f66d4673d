"""Datasets: files (``.npz``, ``.mat``, ``.csv``) and built-in generated ones.

Every dataset comes back as a :class:`Dataset` in the network's layout: ``X`` is
``(n_x, m)`` (features x examples), ``Y`` is ``(1, m)`` of 0/1, both float64
NumPy arrays, plus an optional test set in the same layout. Files hold one
example per *row* (as the textbook's ``data.mat`` does) and are transposed here.

* ``.npz`` / ``.mat``: keys ``X`` (m, n_x) and ``y`` (m, 1) or (m,), and
  optionally ``Xval`` and ``yval`` (the test set), both or neither. ``.npz`` is
  read with ``allow_pickle=False``: a file holding pickled objects is refused, as
  loading data must never run code. ``.mat`` needs scipy (``pip install
  'jaxreg[mat]'``) and MATLAB v5/v7 files (not v7.3/HDF5).
* ``.csv``: comma-separated numbers, one example per row, the label in the last
  column. The first row is taken as a header when none of its fields is a
  number (so ``x1,x2,label`` is skipped and ``0.5,abc,1`` is an error); blank
  lines are ignored. A CSV gives the training set; ``test_path`` may name a
  second file (any of the three formats) holding the test set.

Every dataset, loaded or generated, goes through :func:`check`, whose errors
name the file and the problem.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxreg import validate
from jaxreg.errors import ConfigError, ConfigTypeError
from jaxreg.files import check_input, load_npz

__all__ = [
    "DATASETS",
    "DATA_ENV",
    "EXTENSIONS",
    "Dataset",
    "check",
    "test_split",
    "course_data_dir",
    "load",
    "load_course",
    "make_dataset",
]

DATASETS = ("default", "moons", "circles", "spiral")
EXTENSIONS = (".npz", ".mat", ".csv")
DATA_ENV = "JAXREG_DATA"

# Keys of the textbook's file: training set, and the optional test ("validation") set.
_KEYS = ("X", "y")
_TEST_KEYS = ("Xval", "yval")


class Dataset(NamedTuple):
    """A training set and an optional test set, in the network's layout (float64 NumPy).

    ``X`` (n_x, m), ``Y`` (1, m) of 0/1, ``X_test`` (n_x, m_test) or None,
    ``Y_test`` (1, m_test) or None; ``name`` is the file name or the built-in name."""

    X: np.ndarray
    Y: np.ndarray
    X_test: np.ndarray | None
    Y_test: np.ndarray | None
    name: str


# --------------------------------------------------------------------------- checks


def check(
    X,
    Y,
    X_test=None,
    Y_test=None,
    *,
    source: str,
    test_source: str | None = None,
    names: tuple[str, str, str, str] = ("X", "Y", "X_test", "Y_test"),
    name: str | None = None,
) -> Dataset:
    """Validate a dataset in the ``(n_x, m)`` layout and return it as a float64 :class:`Dataset`.

    Raises ``ValueError`` starting with ``source`` (``test_source`` for the test
    set, when it came from another file) and naming the array (``names``) for:
    NaN/inf, labels other than 0/1, a single-class training set, X/Y example
    counts that differ, train/test feature counts that differ, a test set with
    only one of its two arrays. ``name`` (default ``source``) names the result."""
    xn, yn, xtn, ytn = names
    test_source = test_source or source
    X, Y = _check_part(X, Y, source, xn, yn)
    classes = np.unique(Y)
    if classes.size < 2:
        raise ValueError(
            f"{source}: {yn}: all {Y.shape[1]} training labels are {classes[0]:g}, expected both "
            "classes 0 and 1 (a single-class training set cannot train a classifier)"
        )
    if (X_test is None) != (Y_test is None):
        given, absent = (xtn, ytn) if Y_test is None else (ytn, xtn)
        raise ValueError(f"{test_source}: got {given} without {absent}, expected both or neither")
    if X_test is not None:
        X_test, Y_test = _check_part(X_test, Y_test, test_source, xtn, ytn)
        if X_test.shape[0] != X.shape[0]:
            where = "" if test_source == source else f" in {source}"
            raise ValueError(
                f"{test_source}: {xtn}: got {X_test.shape[0]} features, expected {X.shape[0]} "
                f"as in the training set ({xn}{where})"
            )
    return Dataset(X, Y, X_test, Y_test, source if name is None else name)


def _check_part(X, Y, source: str, xname: str, yname: str) -> tuple[np.ndarray, np.ndarray]:
    """One (X, Y) pair: numeric, then validate's shape, finiteness, 0/1 and count checks."""
    X, Y = _numeric(X, source, xname), _numeric(Y, source, yname)
    try:
        validate.features_and_labels(X, Y, xname, yname)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{source}: {err}") from None
    return X, Y


def _numeric(a, source: str, name: str) -> np.ndarray:
    """``a`` as float64, refusing strings, objects and complex numbers."""
    try:
        a = np.asarray(a)
    except (TypeError, ValueError) as err:  # e.g. ragged nested lists
        raise ValueError(f"{source}: {name}: not an array of numbers ({err})") from None
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{source}: {name}: got non-numeric values (dtype {a.dtype}), expected real numbers")
    return a.astype(np.float64)


# --------------------------------------------------------------------------- files


def load(path, test_path=None) -> Dataset:
    """Read a dataset file (``.npz``, ``.mat`` or ``.csv``, see the module doc); ``test_path``
    optionally names a second file whose examples become the test set.

    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` naming the file
    for anything wrong inside it, ``ImportError`` for ``.mat`` without scipy."""
    for given in (path, test_path):  # as typed: a Path would drop a trailing slash
        if given is not None:
            check_input(os.fspath(given), f"a data file ({', '.join(EXTENSIONS)})")
    path = Path(path)
    X, Y, X_test, Y_test, names = _read(path)
    test_source = None
    if test_path is not None:
        test_path = Path(test_path)
        if X_test is not None:
            raise ValueError(
                f"{path}: already holds a test set ({names[2]}, {names[3]}), "
                f"expected no test_path (got {test_path})"
            )
        X_test, Y_test, extra_X, _, test_names = _read(test_path)
        if extra_X is not None:
            raise ValueError(
                f"{test_path}: holds a test set of its own ({test_names[2]}, {test_names[3]}), "
                "expected only X and y when given as test_path"
            )
        test_source = str(test_path)
        names = (*names[:2], f"{test_names[0]} (test)", f"{test_names[1]} (test)")
    return check(X, Y, X_test, Y_test, source=str(path), test_source=test_source, names=names, name=path.name)


def _read(path: Path):
    """``(X, Y, X_test, Y_test, names)`` from one file, transposed to ``(n_x, m)``, unchecked."""
    check_input(path, f"a data file ({', '.join(EXTENSIONS)})")
    ext = path.suffix.lower()
    if ext == ".csv":
        X, Y = _read_csv(path)
        return X, Y, None, None, ("features", "labels", "features", "labels")
    if ext == ".npz":
        arrays = _read_npz(path)
    elif ext == ".mat":
        arrays = _read_mat(path)
    else:
        raise ValueError(
            f"{path}: unknown extension {path.suffix or '(none)'!r}, expected one of {', '.join(EXTENSIONS)}"
        )
    X, Y = _rows_to_columns(arrays, _KEYS, path)
    if _TEST_KEYS[0] in arrays or _TEST_KEYS[1] in arrays:
        X_test, Y_test = _rows_to_columns(arrays, _TEST_KEYS, path)
    else:
        X_test = Y_test = None
    return X, Y, X_test, Y_test, (*_KEYS, *_TEST_KEYS)


def _require_keys(arrays: dict, path: Path) -> None:
    missing = [k for k in _KEYS if k not in arrays]
    if missing:
        raise ValueError(
            f"{path}: missing key(s) {', '.join(missing)}, expected X and y (and optionally Xval and yval); "
            f"found {sorted(arrays) or 'no arrays'}"
        )
    half = [k for k in _TEST_KEYS if k in arrays]
    if len(half) == 1:
        other = _TEST_KEYS[1 - _TEST_KEYS.index(half[0])]
        raise ValueError(f"{path}: has {half[0]} but not {other}, expected both (the test set) or neither")


def _rows_to_columns(arrays: dict, keys: tuple[str, str], path: Path) -> tuple[np.ndarray, np.ndarray]:
    """File layout (one example per row) to the network's: X (m, n_x) -> (n_x, m), y -> (1, m)."""
    xk, yk = keys
    X, y = arrays[xk], arrays[yk]
    if X.ndim != 2 or 0 in X.shape:
        raise ValueError(
            f"{path}: {xk}: got shape {X.shape}, expected (m, n_x) with one example per row, m, n_x >= 1"
        )
    if not (y.ndim == 1 or (y.ndim == 2 and 1 in y.shape)):
        raise ValueError(f"{path}: {yk}: got shape {y.shape}, expected (m, 1) or (m,): one label per example")
    return X.T, y.reshape(1, -1)


def _read_npz(path: Path) -> dict:
    """The arrays ``X, y`` (and ``Xval, yval``) of an ``.npz``, read without unpickling."""
    arrays = load_npz(path)
    _require_keys(arrays, path)
    return {key: arrays[key] for key in (*_KEYS, *_TEST_KEYS) if key in arrays}


def _read_mat(path: Path) -> dict:
    try:
        from scipy import io as sio
    except ImportError:
        raise ImportError(
            f"{path}: reading .mat files needs scipy; install the mat extra: pip install 'jaxreg[mat]'"
        ) from None
    try:
        contents = sio.loadmat(path)
    except NotImplementedError:
        raise ValueError(
            f"{path}: a MATLAB v7.3 (HDF5) file, expected v5/v7 (save it with -v7, or as .npz)"
        ) from None
    except Exception as err:  # scipy raises a variety of errors on files that are not MATLAB files
        raise ValueError(f"{path}: not a readable .mat file ({type(err).__name__}: {err})") from None
    arrays = {k: _mat_array(v, k, path) for k, v in contents.items() if not k.startswith("__")}
    _require_keys(arrays, path)
    return arrays


def _mat_array(value, key: str, path: Path) -> np.ndarray:
    """A MATLAB variable as an array: sparse matrices made dense; cell arrays and structs refused."""
    if hasattr(value, "toarray"):  # scipy.sparse
        return np.asarray(value.toarray())
    a = np.asarray(value)
    if (a.dtype.hasobject or a.dtype.names) and key in (*_KEYS, *_TEST_KEYS):
        raise ValueError(f"{path}: {key}: a MATLAB cell array, struct or object, expected a numeric matrix")
    return a


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Rows of numbers, label last; an all-text first row is a header."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows = [(reader.line_num, [field.strip() for field in row]) for row in reader]
    except (UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{path}: not a readable CSV text file ({err})") from None
    rows = [(i, row) for i, row in rows if any(row)]
    if rows and not any(_is_number(field) for field in rows[0][1]):
        header, rows = rows[0], rows[1:]
    else:
        header = None
    if not rows:
        raise ValueError(f"{path}: no data rows, expected one example per row, the label in the last column")
    first_line, first = header or rows[0]
    width = len(first)
    if width < 2:
        raise ValueError(
            f"{path}: line {first_line} has {width} column, expected at least 2 (features, then the label)"
        )
    values = np.empty((len(rows), width))
    for r, (line, row) in enumerate(rows):
        if len(row) != width:
            raise ValueError(
                f"{path}: line {line} has {len(row)} columns, expected {width} as on line {first_line} "
                "(a ragged CSV)"
            )
        for c, field in enumerate(row):
            try:
                values[r, c] = float(field)
            except ValueError:
                raise ValueError(
                    f"{path}: line {line}, column {c + 1}: got {field!r}, expected a number "
                    "(non-numeric value)"
                ) from None
    return values[:, :-1].T, values[:, -1:].T


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- the textbook's data


def test_split(dataset: Dataset, fraction: float, seed: int = 0) -> Dataset:
    """``dataset`` with a stratified ``fraction`` of its training examples held out as its test
    set (drawn from ``seed``: the same on every machine). It must have no test set yet."""
    from jaxreg import splits

    validate.fraction(fraction, "test_split")
    if dataset.X_test is not None:
        raise ConfigError("test_split", fraction, f"data without a test set ({dataset.name} already has one, of "
                          f"{dataset.X_test.shape[1]} examples)")
    held = splits.holdout(dataset.X, dataset.Y, fraction, seed).valid.reshape(-1) == 1
    return Dataset(dataset.X[:, ~held], dataset.Y[:, ~held], dataset.X[:, held], dataset.Y[:, held],
                   f"{dataset.name} ({fraction:g} held out as test set, seed {seed})")


def course_data_dir() -> Path:
    """Folder of the textbook's dataset: ``$JAXREG_DATA``, else ``shared/data`` beside the project root."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    project_root = Path(__file__).resolve().parent.parent
    return project_root.parent / "shared" / "data"


def load_course() -> Dataset:
    """The textbook's dataset (``data.npz`` in :func:`course_data_dir`): X (2, 211), test (2, 200)."""
    path = course_data_dir() / "data.npz"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such file, the textbook's dataset is absent (set {DATA_ENV} to the folder "
            "holding data.npz)"
        )
    return load(path)


# --------------------------------------------------------------------------- built-in datasets


def make_dataset(
    name: str = "default",
    *,
    seed: int = 0,
    n_train: int | None = None,
    n_test: int | None = None,
    noise: float | None = None,
) -> Dataset:
    """A generated 2-D dataset (train and test set), deterministic from ``seed``; no download.

    ``name`` is one of :data:`DATASETS`. ``n_train`` and ``n_test`` count examples (each
    split balanced between the classes; ``n_test=0`` gives no test set) and default to 200
    and 1000. ``noise`` is, for ``"default"``, the fraction of each class's labels flipped,
    chosen near the boundary (default 0.14, at most 0.5), else the standard deviation
    of the Gaussian jitter added to the points (moons 0.2, circles 0.1, spiral 0.05). The
    training set is drawn first, so it does not depend on ``n_test``."""
    if name not in _GENERATORS:
        raise ConfigError("name", name, f"one of {', '.join(DATASETS)}")
    generate, defaults = _GENERATORS[name]
    seed = _count(seed, "seed", 0)
    n_train = _count(defaults["n_train"] if n_train is None else n_train, "n_train", 2)
    n_test = _count(defaults["n_test"] if n_test is None else n_test, "n_test", 0)
    noise = _noise(defaults["noise"] if noise is None else noise, defaults.get("max_noise"))
    rng = np.random.default_rng(seed)
    X, Y = generate(rng, n_train, float(noise))
    X_test, Y_test = generate(rng, n_test, float(noise)) if n_test else (None, None)
    return check(X, Y, X_test, Y_test, source=f"make_dataset({name!r}, seed={seed})", name=name)


def _count(value, argname: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigTypeError(argname, value, f"an integer >= {minimum}")
    if value < minimum:
        raise ConfigError(argname, value, f"an integer >= {minimum}", shown=str(value))
    return int(value)


def _noise(value, top: float | None) -> float:
    """A finite ``noise`` >= 0, at most ``top`` where the dataset has one (a fraction of labels)."""
    expected = f"a number in [0, {top}] (the fraction of labels flipped)" if top else "a finite number >= 0"
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ConfigTypeError("noise", value, expected)
    if not (np.isfinite(value) and 0 <= value <= (top or np.inf)):
        raise ConfigError("noise", value, expected)
    return float(value)


def _balanced_labels(rng, m: int) -> np.ndarray:
    """``m`` labels, ``m // 2`` of them 1, in random order."""
    return rng.permutation(np.arange(m) < m // 2).astype(np.float64)


# The default dataset: a pitch, x1 in [-1, 1] and x2 in [-0.5, 0.5], split between two teams by a
# gently curved line through its centre; strays lie mostly about _STRAY_DISTANCE from that line.
_PITCH = np.array([[1.0], [0.5]])  # half length, half width
_STRAY_DISTANCE = 0.15


def _default_boundary(x1):
    """The true class boundary ``x2 = g(x1)`` and its slope ``g'(x1)``: an S through the origin."""
    return 0.4 * x1 + 0.25 * np.sin(2.0 * x1), 0.4 + 0.5 * np.cos(2.0 * x1)


def _default(rng, m: int, noise: float):
    """The lesson's dataset, after the textbook's: positions on a pitch, uniformly spread, and
    which team won the ball there. Label 1 above the gently curved line
    ``x2 = 0.4 x1 + 0.25 sin(2 x1)``, label 0 below, then a fraction ``noise`` of each class's
    labels flipped: strays of each team inside the other's region, near the boundary.

    Strays are drawn with weight ``d exp(-d / 0.15)``, ``d`` the distance to the boundary: the
    middle 80% lie 0.07 to 0.5 inside the other side, few right on the line (where a flip blurs
    the boundary rather than making a stray) or deep in the other half. The local flip rate stays
    below one half for ``noise`` up to about a quarter (at 0.14 it peaks near 0.24), so there the
    true line is the best classifier, with accuracy ``1 - noise``. With 200 training points and
    the default ``noise=0.14``, the unregularised [2, 20, 3, 1] network carves peninsulas and
    islands around the strays (train accuracy well above test), while L2 (``lambd=0.7``) and
    dropout (``keep_prob=0.86``) keep the boundary close to the true one and score a few points
    higher on the test set: on average over seeds, as single runs vary. Classes are exactly
    balanced for even ``m``."""
    y = _balanced_labels(rng, m)
    X = np.empty((2, m))
    for label in (0.0, 1.0):
        # Uniform on the team's side of the line (rejection sampling: about half of a draw lands
        # there), so the class counts are exact.
        members = np.flatnonzero(y == label)
        parts, need = [], members.size
        while need:
            points = rng.uniform(-1.0, 1.0, (2, 2 * need)) * _PITCH
            above = points[1] > _default_boundary(points[0])[0]
            points = points[:, above == (label == 1.0)][:, :need]
            parts.append(points)
            need -= points.shape[1]
        X[:, members] = np.concatenate(parts, axis=1)
    g, slope = _default_boundary(X[0])
    distance = np.abs(X[1] - g) / np.sqrt(1.0 + slope**2)  # to the line, to first order
    weight = distance * np.exp(-distance / _STRAY_DISTANCE)
    # Label noise, the same fraction from each class (so the balance is kept).
    flip = np.zeros(m, dtype=bool)
    for label in (0.0, 1.0):
        members = np.flatnonzero(y == label)
        p = weight[members] / weight[members].sum()
        flip[rng.choice(members, round(noise * members.size), replace=False, p=p)] = True
    return X, np.where(flip, 1.0 - y, y)[None]


def _moons(rng, m: int, noise: float):
    """Two interleaved half circles (label 0 on top), Gaussian jitter of sd ``noise``."""
    y = _balanced_labels(rng, m)
    t = rng.uniform(0.0, np.pi, m)
    X = np.where(y == 0, [np.cos(t), np.sin(t)], [1.0 - np.cos(t), 0.5 - np.sin(t)])
    return X + noise * rng.standard_normal((2, m)), y[None]


def _circles(rng, m: int, noise: float):
    """A circle of radius 1 (label 0) around one of radius 0.5 (label 1), jitter of sd ``noise``."""
    y = _balanced_labels(rng, m)
    t = rng.uniform(0.0, 2.0 * np.pi, m)
    X = np.where(y == 0, 1.0, 0.5) * np.stack([np.cos(t), np.sin(t)])
    return X + noise * rng.standard_normal((2, m)), y[None]


def _spiral(rng, m: int, noise: float):
    """Two interleaved arms of a spiral (one and a half turns each), jitter of sd ``noise``."""
    y = _balanced_labels(rng, m)
    t = np.sqrt(rng.uniform(0.05, 1.0, m))  # sqrt: evenly spread along the arm's length
    angle = 3.0 * np.pi * t + np.pi * y
    X = t * np.stack([np.cos(angle), np.sin(angle)])
    return X + noise * rng.standard_normal((2, m)), y[None]


# name -> (generator, its defaults); generator(rng, m, noise) -> X (2, m), Y (1, m).
_GENERATORS = {
    "default": (_default, {"n_train": 200, "n_test": 1000, "noise": 0.14, "max_noise": 0.5}),
    "moons": (_moons, {"n_train": 200, "n_test": 1000, "noise": 0.2}),
    "circles": (_circles, {"n_train": 200, "n_test": 1000, "noise": 0.1}),
    "spiral": (_spiral, {"n_train": 200, "n_test": 1000, "noise": 0.05}),
}
assert tuple(_GENERATORS) == DATASETS
