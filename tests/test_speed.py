"""Speed where library users stand (issue 23), by its mechanisms: a padded run is the unpadded run, a
cross-validation compiles its programs once, the compilation cache is the user's choice. (The
figures themselves are measured in benchmarks/bench_library.py, never asserted here.)"""

import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import jaxreg
from jaxreg.members import MIN_BUCKET, bucket

X = np.random.default_rng(0).normal(size=(2, 300))
Y = (X[:1] * X[1:] > 0).astype(float)


@pytest.mark.parametrize("options", [
    {}, {"lambd": 0.7, "keep_prob": 0.8}, {"keep_prob": (0.7, 0.9), "masks": "fixed"},
    {"keep_prob": 0.86, "masks": "course", "init": "course"},
    {"lambd": 0.5, "validation_split": 0.2, "early_stopping": 2},
], ids=["plain", "l2-dropout", "fixed-masks", "course", "early-stopping"])
def test_a_padded_run_is_the_unpadded_run(options):
    """The same masks on the real examples, the same costs and accuracies: float64 to 1e-12 (the padded
    cost is a weighted mean, so the last bits may differ; nothing else does)."""
    run = dict(iterations=300, log_every=100, dtype="float64", X_test=X[:, :50], Y_test=Y[:, :50], **options)
    alone, padded = (jaxreg.train(X, Y, [2, 8, 3, 1], bucket=b, **run) for b in (False, True))
    for k in alone.params:
        np.testing.assert_allclose(padded.params[k], alone.params[k], rtol=0, atol=1e-12)
    np.testing.assert_allclose(padded.costs, alone.costs, rtol=1e-12, atol=0)
    np.testing.assert_allclose(padded.clean_costs, alone.clean_costs, rtol=1e-12, atol=0)
    np.testing.assert_allclose(padded.valid_costs, alone.valid_costs, rtol=1e-12, atol=0)
    assert abs(padded.final_cost - alone.final_cost) <= 1e-12
    assert (padded.train_accuracy, padded.test_accuracy, padded.valid_accuracy, padded.best_iteration) == \
        (alone.train_accuracy, alone.test_accuracy, alone.valid_accuracy, alone.best_iteration)


def test_buckets_hold_every_size_once():
    assert bucket(1) == bucket(MIN_BUCKET) == MIN_BUCKET
    sizes = [bucket(m) for m in range(1, 20000, 7)]
    assert all(s >= m for s, m in zip(sizes, range(1, 20000, 7), strict=True)) and sizes == sorted(sizes)
    assert all(b / a <= 1.25 + 128 / a for a, b in zip(sorted(set(sizes)), sorted(set(sizes))[1:], strict=False))


GRID = textwrap.dedent("""
    import numpy as np
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from jaxreg.compilation import CompileClock, enable_cache
    from jaxreg.sklearn import MLPClassifier
    enable_cache()  # the suite's (JAXREG_CACHE_DIR): a warm run loads the programs it counts
    rng = np.random.default_rng(0)
    X = rng.normal(size=(569, 30)); y = (X[:, 0] + X[:, 1] > 0).astype(int)
    clock = CompileClock()
    est = MLPClassifier(iterations=200, keep_prob=0.9)
    grid = GridSearchCV(make_pipeline(StandardScaler(), est), {"mlpclassifier__lambd": [0, 0.7]}, cv=5).fit(X, y)
    grid.predict(X[:7]); grid.predict_proba(X[:100]); grid.decision_function(X)
    print(len(clock.programs), sorted(clock.programs))
""")


def test_a_cross_validation_compiles_its_programs_once():
    """GridSearchCV's 11 fits (5 folds of 455 or 456 examples, each twice, and the refit on 569) and
    its predictions on any number of examples: one initialisation, one training chunk, one evaluation."""
    pytest.importorskip("sklearn")
    done = subprocess.run([sys.executable, "-c", GRID], capture_output=True, text=True, check=True, timeout=300)
    built, programs = done.stdout.strip().split(" ", 1)  # compiled, or loaded from the cache
    assert int(built) == 3, programs
    assert programs == "['jit(_evaluate)', 'jit(_init_state)', 'jit(_run_chunk)']"


def test_the_compilation_cache_is_the_users_choice(tmp_path):
    code = ("import jax, jaxreg, jaxreg.sklearn; before = jax.config.jax_compilation_cache_dir; jaxreg.train; "
            f"folder = jaxreg.enable_cache({str(tmp_path)!r}); "
            "print(before, jax.config.jax_compilation_cache_dir == str(folder))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["None", "True"]  # importing changed nothing; enabling it did
    assert jax.config.jax_compilation_cache_dir is not None  # conftest's, for the suite: untouched here
