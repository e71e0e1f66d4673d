"""jaxreg.data: file round trips, every bad input's message, the built-in datasets and the lesson
(regularisation raises test accuracy on the default dataset)."""

import pickle

import numpy as np
import pytest

import jaxreg
from jaxreg import data
from jaxreg.data import DATASETS, Dataset, check, load, make_dataset

RNG = np.random.default_rng(0)


def _rows(m=7, n_x=2):
    """A small dataset in the files' layout: X (m, n_x), y (m, 1), both classes present."""
    X = RNG.standard_normal((m, n_x))
    y = (np.arange(m) % 2).astype(np.uint8)[:, None]
    return X, y


def _savez(path, **arrays):
    np.savez(path, **arrays)
    return path


def _write_csv(path, X, y, header=None):
    lines = [header] if header else []
    lines += [",".join(repr(float(v)) for v in (*x, label)) for x, label in zip(X, y.ravel(), strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _assert_dataset(ds, X, y, Xval=None, yval=None, name=None):
    assert isinstance(ds, Dataset)
    for got, rows in ((ds.X, X), (ds.Y, y), (ds.X_test, Xval), (ds.Y_test, yval)):
        if rows is None:
            assert got is None
            continue
        assert got.dtype == np.float64
        # Files hold one example per row; the network wants one per column.
        np.testing.assert_array_equal(got, np.asarray(rows, np.float64).reshape(len(rows), -1).T)
    if name is not None:
        assert ds.name == name


# --------------------------------------------------------------------------- round trips


def test_npz_round_trip(tmp_path):
    X, y = _rows(9, 3)
    Xv, yv = _rows(5, 3)
    ds = load(_savez(tmp_path / "d.npz", X=X, y=y, Xval=Xv, yval=yv))
    _assert_dataset(ds, X, y, Xv, yv, name="d.npz")
    assert ds.X.shape == (3, 9) and ds.Y.shape == (1, 9) and ds.X_test.shape == (3, 5)


def test_npz_without_test_set_and_flat_labels(tmp_path):
    X, y = _rows()
    ds = load(_savez(tmp_path / "d.npz", X=X, y=y.ravel()))
    _assert_dataset(ds, X, y)


def test_mat_round_trip(tmp_path):
    sio = pytest.importorskip("scipy.io")
    X, y = _rows(8)
    Xv, yv = _rows(4)
    sio.savemat(tmp_path / "d.mat", {"X": X, "y": y, "Xval": Xv, "yval": yv})
    _assert_dataset(load(tmp_path / "d.mat"), X, y, Xv, yv, name="d.mat")


@pytest.mark.parametrize("header", [None, "x1,x2,label"])
def test_csv_round_trip(tmp_path, header):
    X, y = _rows(6)
    Xv, yv = _rows(4)
    train = _write_csv(tmp_path / "train.csv", X, y, header)
    test = _write_csv(tmp_path / "test.csv", Xv, yv, header)
    _assert_dataset(load(train), X, y, name="train.csv")
    _assert_dataset(load(train, test_path=test), X, y, Xv, yv)


def test_load_course(course_data):
    ds = data.load_course()
    assert ds.name == "data.npz" and ds.X.shape == (2, 211) and ds.X_test.shape == (2, 200)
    for got, want in zip(ds[:4], course_data, strict=True):
        np.testing.assert_array_equal(got, want)


def test_course_mat_matches_npz(course_data, course_mat):
    pytest.importorskip("scipy.io")
    for got, want in zip(load(course_mat)[:4], course_data, strict=True):
        np.testing.assert_array_equal(got, want)


def test_course_data_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    assert data.course_data_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match=data.DATA_ENV) as err:
        data.load_course()
    assert str(tmp_path / "data.npz") in str(err.value)


# --------------------------------------------------------------------------- bad files


def _raises(exc, path, *fragments, **kwargs):
    """``load(path)`` raises ``exc`` whose message names the file and each fragment."""
    with pytest.raises(exc) as err:
        load(path, **kwargs)
    message = str(err.value)
    assert path.name in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_missing_file(tmp_path):
    _raises(FileNotFoundError, tmp_path / "absent.npz", "no such file")
    (tmp_path / "folder.csv").mkdir()
    _raises(ValueError, tmp_path / "folder.csv", "is a directory")


def test_unknown_extension(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("1,2,0\n")
    _raises(ValueError, path, ".npz", ".mat", ".csv", "'.txt'")


@pytest.mark.parametrize(
    "keys, fragments",
    [
        (("X",), ["missing key(s) y"]),
        (("y", "Xval", "yval"), ["missing key(s) X"]),
        (("X", "y", "Xval"), ["Xval but not yval", "both"]),
        (("X", "y", "yval"), ["yval but not Xval"]),
    ],
)
def test_npz_missing_keys(tmp_path, keys, fragments):
    X, y = _rows()
    arrays = {"X": X, "y": y, "Xval": X, "yval": y}
    _raises(ValueError, _savez(tmp_path / "d.npz", **{k: arrays[k] for k in keys}), *fragments)


def test_mat_missing_key(tmp_path):
    sio = pytest.importorskip("scipy.io")
    X, _ = _rows()
    sio.savemat(tmp_path / "d.mat", {"X": X})
    _raises(ValueError, tmp_path / "d.mat", "missing key(s) y")


def test_mat_without_scipy_says_which_extra(tmp_path, monkeypatch):
    path = tmp_path / "d.mat"
    path.write_bytes(b"not read")
    monkeypatch.setitem(__import__("sys").modules, "scipy", None)  # `import scipy` now fails
    _raises(ImportError, path, "scipy", "jaxreg[mat]")


def test_not_a_mat_file(tmp_path):
    pytest.importorskip("scipy.io")
    path = tmp_path / "d.mat"
    path.write_text("1,2,0\n")
    _raises(ValueError, path, "not a readable .mat file")


def test_npz_with_pickled_objects_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):  # unpickling would call open(marker, "w"): a visible side effect
            return (open, (str(marker), "w"))

    X, y = _rows()
    objects = np.empty(len(y), dtype=object)
    objects[:] = [Payload() for _ in range(len(y))]
    _raises(ValueError, _savez(tmp_path / "d.npz", X=X, y=objects), "pickled", "y")
    plain = tmp_path / "p.npz"
    plain.write_bytes(pickle.dumps({"X": X, "y": Payload()}))
    _raises(ValueError, plain, "carries pickled Python objects", "refused")
    assert not marker.exists()


def test_npz_that_is_a_single_array(tmp_path):
    path = tmp_path / "d.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((3, 2)))
    _raises(ValueError, path, "single .npy array")


def test_truncated_npz(tmp_path):
    X, y = _rows()
    path = _savez(tmp_path / "d.npz", X=X, y=y)
    path.write_bytes(path.read_bytes()[:40])
    _raises(ValueError, path, "truncated or corrupted .npz archive")


def test_ragged_csv(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("1,2,0\n3,4,1\n5,1\n")
    _raises(ValueError, path, "line 3 has 2 columns, expected 3", "ragged")


def test_ragged_header(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,2,0\n")
    _raises(ValueError, path, "line 2 has 3 columns, expected 2 as on line 1")


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("1,2,0\n3,abc,1\n", ["line 2, column 2", "'abc'", "non-numeric"]),
        ("x1,x2,y\n1,2,0\n3,4,yes\n", ["line 3, column 3", "'yes'"]),
        ("1,,0\n", ["line 1, column 2", "''"]),
    ],
)
def test_non_numeric_csv(tmp_path, text, fragments):
    path = tmp_path / "d.csv"
    path.write_text(text)
    _raises(ValueError, path, *fragments)


def test_non_numeric_npz(tmp_path):
    X, y = _rows()
    _raises(ValueError, _savez(tmp_path / "d.npz", X=X.astype(str), y=y), "X", "non-numeric")


@pytest.mark.parametrize("text", ["", "\n\n", "x1,x2,label\n"])
def test_csv_without_data(tmp_path, text):
    path = tmp_path / "d.csv"
    path.write_text(text)
    _raises(ValueError, path, "no data rows")


def test_csv_with_one_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("0\n1\n")
    _raises(ValueError, path, "at least 2")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features(tmp_path, bad):
    X, y = _rows()
    X[3, 1] = bad
    _raises(ValueError, _savez(tmp_path / "d.npz", X=X, y=y), "X", "NaN or infinite", "example 3")
    _raises(ValueError, _write_csv(tmp_path / "d.csv", X, y), "NaN or infinite")


def test_non_finite_test_features(tmp_path):
    X, y = _rows()
    Xv = X.copy()
    Xv[0, 0] = np.nan
    _raises(ValueError, _savez(tmp_path / "d.npz", X=X, y=y, Xval=Xv, yval=y), "Xval", "NaN or infinite")


@pytest.mark.parametrize("label", [2, -1, 0.5, np.nan])
def test_labels_not_0_1(tmp_path, label):
    X, y = _rows()
    y = y.astype(float)
    y[2] = label
    _raises(ValueError, _savez(tmp_path / "d.npz", X=X, y=y), "y: got labels", "expected only 0 and 1")
    _raises(ValueError, _write_csv(tmp_path / "d.csv", X, y), "labels: got labels", "only 0 and 1")


def test_single_class_training_set(tmp_path):
    X, y = _rows()
    message = _raises(ValueError, _savez(tmp_path / "d.npz", X=X, y=np.ones_like(y)), "single-class")
    assert "all 7 training labels are 1" in message
    _raises(ValueError, _write_csv(tmp_path / "d.csv", X, np.zeros_like(y)), "single-class", "are 0")


def test_single_class_test_set_is_fine(tmp_path):
    X, y = _rows()
    ds = load(_savez(tmp_path / "d.npz", X=X, y=y, Xval=X, yval=np.zeros_like(y)))
    assert not ds.Y_test.any()


def test_mismatched_feature_counts(tmp_path):
    X, y = _rows(7, 2)
    Xv, yv = _rows(5, 3)
    npz = _savez(tmp_path / "d.npz", X=X, y=y, Xval=Xv, yval=yv)
    _raises(ValueError, npz, "Xval: got 3 features, expected 2")
    train, test = _write_csv(tmp_path / "a.csv", X, y), _write_csv(tmp_path / "b.csv", Xv, yv)
    with pytest.raises(ValueError, match="got 3 features, expected 2") as err:
        load(train, test_path=test)
    assert "b.csv" in str(err.value) and "a.csv" in str(err.value)


def test_mismatched_example_counts(tmp_path):
    X, y = _rows(7)
    _raises(ValueError, _savez(tmp_path / "d.npz", X=X, y=y[:5]), "got 7 and 5 examples")
    _raises(ValueError, _savez(tmp_path / "e.npz", X=X, y=y, Xval=X, yval=y[:6]), "got 7 and 6 examples")


@pytest.mark.parametrize(
    "X, y, fragment",
    [
        (np.zeros(4), np.zeros((4, 1)), "X: got shape (4,), expected (m, n_x)"),
        (np.zeros((0, 2)), np.zeros((0, 1)), "X: got shape (0, 2)"),
        (np.zeros((4, 2)), np.zeros((4, 2)), "y: got shape (4, 2), expected (m, 1) or (m,)"),
    ],
)
def test_bad_shapes(tmp_path, X, y, fragment):
    _raises(ValueError, _savez(tmp_path / "d.npz", X=X, y=y), fragment)


def test_test_path_when_file_has_a_test_set(tmp_path):
    X, y = _rows()
    both = _savez(tmp_path / "d.npz", X=X, y=y, Xval=X, yval=y)
    _raises(ValueError, both, "already holds a test set", test_path=_write_csv(tmp_path / "t.csv", X, y))
    with pytest.raises(ValueError, match="holds a test set of its own"):
        load(_write_csv(tmp_path / "t.csv", X, y), test_path=both)


def test_missing_test_file(tmp_path):
    X, y = _rows()
    with pytest.raises(FileNotFoundError, match="absent.csv"):
        load(_write_csv(tmp_path / "d.csv", X, y), test_path=tmp_path / "absent.csv")


def test_check_names_the_source():
    X = np.zeros((2, 4))
    Y = np.array([[0, 1, 0, 1]])
    with pytest.raises(ValueError, match=r"^here: X, Y: got 4 and 3 examples"):
        check(X, Y[:, :3], source="here")
    with pytest.raises(ValueError, match=r"^here: got X_test without Y_test"):
        check(X, Y, X, source="here")
    assert check(X, Y, source="here").name == "here"


# --------------------------------------------------------------------------- built-in datasets


@pytest.mark.parametrize("name", DATASETS)
def test_builtin_shapes_balance_determinism(name):
    ds = make_dataset(name, seed=3)
    assert ds.name == name
    assert ds.X.shape[0] == 2 and ds.Y.shape == (1, ds.X.shape[1]) and ds.X.dtype == np.float64
    assert ds.X_test.shape == (2, ds.Y_test.shape[1]) and ds.Y_test.shape[1] >= ds.Y.shape[1]
    for Y in (ds.Y, ds.Y_test):
        assert set(np.unique(Y)) == {0.0, 1.0}
        assert Y.sum() == Y.shape[1] // 2  # exactly balanced
    again, other = make_dataset(name, seed=3), make_dataset(name, seed=4)
    for a, b, c in zip(ds[:4], again[:4], other[:4], strict=True):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


def _default_truth(X):
    """The default dataset's true labels (1 above ``x2 = 0.4 x1 + 0.25 sin(2 x1)``) and each
    point's distance to that line (to first order: the vertical gap over the slope's norm)."""
    g = 0.4 * X[0] + 0.25 * np.sin(2 * X[0])
    slope = 0.4 + 0.5 * np.cos(2 * X[0])
    return X[1] > g, np.abs(X[1] - g) / np.hypot(1.0, slope)


def test_default_is_a_curved_boundary_plus_strays_near_it():
    """Points on the pitch [-1, 1] x [-0.5, 0.5], labelled by the side of a gently curved line;
    a fraction `noise` of each class is flipped, chosen near the line rather than uniformly."""
    clean = make_dataset("default", seed=5, noise=0.0)
    for X, Y in ((clean.X, clean.Y), (clean.X_test, clean.Y_test)):
        assert np.abs(X[0]).max() <= 1.0 and np.abs(X[1]).max() <= 0.5
        np.testing.assert_array_equal(Y[0], _default_truth(X)[0])
    for noise in (0.1, 0.14):
        ds = make_dataset("default", seed=5, noise=noise)
        for X, Y in ((ds.X, ds.Y), (ds.X_test, ds.Y_test)):
            truth, distance = _default_truth(X)
            stray = Y[0] != truth
            for label in (0, 1):  # the same fraction of each class: the balance is kept
                assert np.mean(stray[truth == label]) == pytest.approx(noise)
            # Uniform flips would put strays as far from the line as any point, on average.
            assert distance[stray].mean() < 0.85 * distance.mean()


def test_builtin_options():
    small = make_dataset("moons", seed=1, n_train=11, n_test=0)
    assert small.X.shape == (2, 11) and small.X_test is None and small.Y.sum() == 5
    # The training set is drawn first: it does not depend on the test set's size.
    np.testing.assert_array_equal(make_dataset("moons", seed=1, n_train=11, n_test=50).X, small.X)
    quiet, loud = make_dataset("circles", noise=0.0), make_dataset("circles", noise=0.3)
    radii = np.hypot(*quiet.X)
    assert np.allclose(radii[quiet.Y[0] == 0], 1.0) and np.allclose(radii[quiet.Y[0] == 1], 0.5)
    assert not np.allclose(np.hypot(*loud.X)[loud.Y[0] == 0], 1.0)


@pytest.mark.parametrize(
    "kwargs, exc, fragment",
    [
        ({"name": "iris"}, ValueError, "expected one of default, moons, circles, spiral"),
        ({"seed": -1}, ValueError, "seed: got -1"),
        ({"seed": 1.5}, TypeError, "seed: got 1.5"),
        ({"n_train": 1}, ValueError, "n_train: got 1, expected an integer >= 2"),
        ({"n_test": -1}, ValueError, "n_test: got -1"),
        ({"noise": -0.1}, ValueError, "noise: got -0.1"),
        ({"noise": float("nan")}, ValueError, "noise: got nan"),
    ],
)
def test_make_dataset_bad_arguments(kwargs, exc, fragment):
    with pytest.raises(exc, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        make_dataset(**kwargs)


# --------------------------------------------------------------------------- the lesson

LESSON_ITERATIONS = 30000


def test_default_dataset_shows_the_lesson():
    """The README's claim: over data seeds 0-4 x key seeds 0-3, unregularised the network overfits
    (train well above test), and L2 (lambd=0.7) and dropout (keep_prob=0.86) each raise the test
    accuracy of every one of the 20 runs, by several points on average (float32, as the demo)."""
    runs = {"none": (0.0, 1.0), "l2": (0.7, 1.0), "dropout": (0.0, 0.86)}
    train_acc = {k: [] for k in runs}
    test_acc = {k: [] for k in runs}
    for data_seed in range(5):
        ds = make_dataset("default", seed=data_seed)
        for seed in range(4):
            for run, (lambd, keep_prob) in runs.items():
                result = jaxreg.train(ds.X, ds.Y, [2, 20, 3, 1], seed=seed, X_test=ds.X_test, Y_test=ds.Y_test,
                                      lambd=lambd, keep_prob=keep_prob, learning_rate=0.3,
                                      iterations=LESSON_ITERATIONS, dtype="float32")
                train_acc[run].append(result.train_accuracy)
                test_acc[run].append(result.test_accuracy)
    train_acc = {k: np.asarray(v) for k, v in train_acc.items()}
    test_acc = {k: np.asarray(v) for k, v in test_acc.items()}
    summary = f"train {train_acc}, test {test_acc}"
    assert np.mean(train_acc["none"] - test_acc["none"]) >= 0.08, summary  # visibly overfits
    for run in ("l2", "dropout"):
        gain = test_acc[run] - test_acc["none"]
        assert np.all(gain > 0) and gain.mean() >= 0.03, (run, gain, summary)
