"""Test-wide settings: float64 (exactness is checked to 1e-10 and tighter), strict rank
promotion, so a (m,) vs (1, m) slip fails loudly, and the persistent compilation cache in
the project's .pytest_cache (shared with the commands the tests start), so a second run
of the suite loads its programs instead of compiling them."""

import os
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxreg.compilation import CACHE_ENV, enable_cache
from jaxreg.data import DATA_ENV, course_data_dir

REQUIRE_DATA_ENV = "JAXREG_REQUIRE_DATA"  # set by .ci/run

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
os.environ.setdefault(CACHE_ENV, str(Path(__file__).resolve().parents[1] / ".pytest_cache" / "xla"))
enable_cache()


def course_file(name: str) -> Path:
    """A file of the textbook's dataset folder; where it is absent the test skips, or fails
    under CI (``.ci/run`` sets JAXREG_REQUIRE_DATA: every exactness test must run there)."""
    path = course_data_dir() / name
    if not path.exists():
        reason = f"the textbook's dataset is absent: no {path} (set {DATA_ENV} to its folder)"
        if os.environ.get(REQUIRE_DATA_ENV):
            pytest.fail(f"{reason}; {REQUIRE_DATA_ENV} is set, so this is a failure, not a skip")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def course_mat() -> Path:
    """The textbook's ``data.mat``."""
    return course_file("data.mat")


@pytest.fixture(scope="session")
def course_data():
    """The textbook's dataset as float64 ``(X (2, 211), Y (1, 211), X_test (2, 200), Y_test (1, 200))``."""
    path = course_file("data.npz")
    with np.load(path, allow_pickle=False) as d:
        return (
            d["X"].T.astype(np.float64),
            d["y"].T.astype(np.float64),
            d["Xval"].T.astype(np.float64),
            d["yval"].T.astype(np.float64),
        )
