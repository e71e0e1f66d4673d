"""jaxreg.sklearn.MLPClassifier: scikit-learn's estimator checks, pipelines and grid search, labels,
and exact agreement with jaxreg.train on the transposed arrays."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install 'jaxreg[sklearn]')")

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import jaxreg  # noqa: E402
from jaxreg.sklearn import MLPClassifier  # noqa: E402

FAST = {"iterations": 300, "log_every": 100}  # a short run: these tests check plumbing, not learning


@pytest.fixture(scope="module")
def pitch():
    """The default dataset in scikit-learn's layout: X (200, 2), y (200,), X_test (1000, 2), y_test (1000,)."""
    d = jaxreg.data.make_dataset("default")
    return d.X.T, d.Y[0], d.X_test.T, d.Y_test[0]


# The real estimator, its defaults. No check is expected to fail: the binary-only tag
# (classifier_tags.multi_class = False) makes scikit-learn run check_classifier_not_supporting_multiclass
# instead of its multiclass checks.
@parametrize_with_checks([MLPClassifier()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_binary_only_tag():
    from sklearn.utils import get_tags

    assert get_tags(MLPClassifier()).classifier_tags.multi_class is False


def test_pipeline_with_scaler(pitch):
    X, y, X_test, y_test = pitch
    model = Pipeline([("scale", StandardScaler()), ("net", MLPClassifier(lambd=0.7, **FAST))]).fit(X, y)
    assert model.score(X_test, y_test) > 0.75
    assert model.named_steps["net"].n_features_in_ == 2


def test_grid_search_over_lambd(pitch):
    X, y, _, _ = pitch
    search = GridSearchCV(MLPClassifier(**FAST), {"lambd": [0, 0.7]}, cv=3).fit(X, y)
    assert search.best_params_["lambd"] in (0, 0.7)
    assert search.cv_results_["mean_test_score"].shape == (2,)
    assert search.best_estimator_.config_.lambd == search.best_params_["lambd"]


def test_get_set_params_and_clone():
    est = MLPClassifier(hidden_layer_sizes=(5,), keep_prob=(0.9,), random_state=3)
    params = est.get_params()
    assert params["hidden_layer_sizes"] == (5,) and params["keep_prob"] == (0.9,) and params["random_state"] == 3
    assert params["iterations"] == 2000 and params["learning_rate"] == 0.3 and params["optimizer"] == "sgd"
    assert est.set_params(lambd=0.7, iterations=10) is est
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    assert not hasattr(twin, "params_")


def test_string_labels_round_trip(pitch):
    X, y, _, _ = pitch
    labels = np.where(y == 1, "dog", "cat")
    est = MLPClassifier(**FAST).fit(X, labels)
    assert est.classes_.tolist() == ["cat", "dog"]
    predicted = est.predict(X)
    assert set(predicted) <= {"cat", "dog"}
    numeric = MLPClassifier(**FAST).fit(X, y).predict(X)  # the same run: "dog" is the positive class, as 1 is
    assert np.array_equal(predicted == "dog", numeric == 1)
    assert est.score(X, labels) == np.mean(predicted == labels)


def test_predict_proba_columns(pitch):
    X, y, X_test, _ = pitch
    est = MLPClassifier(**FAST).fit(X, y)
    proba = est.predict_proba(X_test)
    assert proba.shape == (1000, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    p1 = np.asarray(jaxreg.predict_proba(est.params_, X_test.T.astype(np.float32)))[0]
    np.testing.assert_allclose(proba[:, 1], p1, rtol=1e-6, atol=1e-7)  # NumPy's float32 forward pass vs XLA's
    assert np.array_equal(est.predict(X_test), est.classes_[proba.argmax(axis=1)])
    assert np.array_equal(est.decision_function(X_test) > 0, proba[:, 1] > 0.5)


def test_same_run_as_jaxreg_train(pitch):
    """The estimator is jaxreg.train(bucket=True) on the transposed arrays: equal parameters, costs and
    predictions."""
    X, y, X_test, y_test = pitch
    est = MLPClassifier(lambd=0.7, keep_prob=0.86, random_state=4).fit(X, y)
    result = jaxreg.train(X.T, y.reshape(1, -1), est.config_, seed=4, X_test=X_test.T, Y_test=y_test.reshape(1, -1),
                          bucket=True)
    assert result.config == est.config_
    assert result.config.layer_dims == (2, 20, 3, 1) and result.config.iterations == 2000
    for k, v in result.params.items():
        np.testing.assert_array_equal(est.params_[k], np.asarray(v))
    np.testing.assert_array_equal(est.costs_, result.costs)
    np.testing.assert_array_equal(est.cost_iterations_, result.iterations)
    expected = np.asarray(jaxreg.predict(result.params, X_test.T.astype(np.float32)))[0]
    np.testing.assert_array_equal(est.predict(X_test), expected.astype(float))
    assert est.score(X_test, y_test) == result.test_accuracy
    assert est.score(X, y) == result.train_accuracy
    assert est.n_iter_ == 2000


def test_early_stopping_is_jaxregs(pitch):
    X, y, _, _ = pitch
    est = MLPClassifier(early_stopping=True, n_iter_no_change=2, validation_fraction=0.2, log_every=50,
                        iterations=3000, random_state=1).fit(X, y)
    result = jaxreg.train(X.T, y.reshape(1, -1), est.config_, seed=1, validation_split=0.2, split_seed=1, bucket=True)
    assert est.best_iteration_ == result.best_iteration is not None
    assert est.n_iter_ == int(result.state.step)
    np.testing.assert_array_equal(est.valid_costs_, result.valid_costs)
    np.testing.assert_array_equal(est.predict(X), np.asarray(jaxreg.predict(result.params, X.T.astype(np.float32)))[0])


def test_random_state(pitch):
    X, y, _, _ = pitch
    assert MLPClassifier(**FAST).fit(X, y).seed_ == 0  # None: seed 0, reproducible
    a = MLPClassifier(random_state=0, **FAST).fit(X, y)
    b = MLPClassifier(**FAST).fit(X, y)
    np.testing.assert_array_equal(a.params_["W1"], b.params_["W1"])
    c = MLPClassifier(random_state=1, **FAST).fit(X, y)
    assert not np.array_equal(a.params_["W1"], c.params_["W1"])
    rs = MLPClassifier(random_state=np.random.RandomState(7), **FAST).fit(X, y)
    assert rs.seed_ == np.random.RandomState(7).randint(np.iinfo(np.int32).max)
    with pytest.raises(ValueError, match="random_state"):
        MLPClassifier(random_state="seven", **FAST).fit(X, y)


def test_more_than_two_classes_is_refused():
    X = np.random.default_rng(0).normal(size=(30, 2))
    with pytest.raises(ValueError, match="Only binary classification is supported") as err:
        MLPClassifier(**FAST).fit(X, np.arange(30) % 3)
    assert "binary-only" in str(err.value) and "3 classes" in str(err.value)
    assert "OneVsRestClassifier" in str(err.value)


def test_one_class_is_refused():
    X = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match="1 class"):
        MLPClassifier(**FAST).fit(X, np.ones(10))


def test_bad_config_is_named_at_fit():
    X, y = np.random.default_rng(0).normal(size=(10, 2)), np.arange(10) % 2
    est = MLPClassifier(keep_prob=1.5, **FAST)  # constructing never raises (scikit-learn's rule)
    with pytest.raises(ValueError, match=r"keep_prob: got \[1.5, 1.5\]"):
        est.fit(X, y)
    for sizes in ((), "ab", (5, 0), 2.5):
        with pytest.raises(ValueError, match="hidden_layer_sizes: got"):
            MLPClassifier(hidden_layer_sizes=sizes, **FAST).fit(X, y)
    with pytest.raises(ValueError, match=r"validation_fraction: got 1.5, expected a fraction in \(0, 1\)"):
        MLPClassifier(early_stopping=True, validation_fraction=1.5, **FAST).fit(X, y)
    with pytest.raises(ValueError, match="n_iter_no_change: got 0"):
        MLPClassifier(early_stopping=True, n_iter_no_change=0, **FAST).fit(X, y)
    with pytest.raises(ValueError, match="precision: got 'float16'"):
        MLPClassifier(precision="float16", **FAST).fit(X, y)


def test_divergence_keeps_last_finite_params():
    X = np.random.default_rng(0).normal(size=(40, 2)) * 1e3
    y = (X[:, 0] > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.warns(ConvergenceWarning, match="diverged"):
            est = MLPClassifier(learning_rate=1e30, **FAST).fit(X, y)
    assert all(np.all(np.isfinite(v)) for v in est.params_.values())
    assert est.n_iter_ < 300


def test_import_jaxreg_does_not_import_sklearn():
    code = "import sys, jaxreg; jaxreg.train; assert 'sklearn' not in sys.modules, 'sklearn imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_readme_example_runs_as_written(pitch, capsys):
    """The README's five lines, run as a user pastes them (X, y: the default dataset)."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("### From scikit-learn"):]
    code = section[section.index("```python") + len("```python"):section.index("```\n", section.index("```python") + 9)]
    X, y, X_test, y_test = pitch
    exec(code, {"X": X, "y": y, "X_test": X_test, "y_test": y_test})
    printed = float(capsys.readouterr().out)
    model = MLPClassifier(lambd=0.7, random_state=0).fit(StandardScaler().fit(X).transform(X), y)
    assert printed == model.score(StandardScaler().fit(X).transform(X_test), y_test) and printed > 0.75


def test_a_dead_network_is_a_convergence_warning(pitch):
    X, y, _, _ = pitch
    with pytest.warns(ConvergenceWarning, match="dead network"):
        MLPClassifier(learning_rate=100.0, **FAST).fit(X, y)


def test_readme_claims_of_the_defaults(pitch):
    """2000 iterations: the regularized runs within a point of the textbook's 30000 (test accuracy)."""
    X, y, X_test, y_test = pitch
    for options in ({"lambd": 0.7}, {"keep_prob": 0.86}):
        short = MLPClassifier(**options).fit(X, y).score(X_test, y_test)
        long = MLPClassifier(iterations=30000, **options).fit(X, y).score(X_test, y_test)
        assert abs(short - long) <= 0.015, (options, short, long)
    assert MLPClassifier().fit(X, y).seed_ == 0  # random_state=None is seed 0
    assert MLPClassifier().get_params()["iterations"] == 2000  # the default the README states


def test_grid_search_over_a_pipeline_as_the_readme_writes_it(pitch):
    from sklearn.pipeline import make_pipeline

    X, y, _, _ = pitch
    search = GridSearchCV(make_pipeline(StandardScaler(), MLPClassifier(**FAST)),
                          {"mlpclassifier__lambd": [0, 0.3, 0.7]}, cv=3).fit(X, y)
    assert search.best_params_["mlpclassifier__lambd"] in (0, 0.3, 0.7)
    assert len(search.cv_results_["mean_test_score"]) == 3
