"""Input in scikit-learn's layout (examples as rows) given to the functional API, whose X is
(n_x, m) and Y (1, m): the errors keep their leading part and say how to fix the input."""

import re

import jax
import numpy as np
import pytest

import jaxreg

M, N_X = 40, 2
RNG = np.random.default_rng(0)
X = RNG.normal(size=(N_X, M))  # the functional API's layout
Y = (X[:1] > 0).astype(np.float64)
PARAMS = jaxreg.init_params(jax.random.key(0), [N_X, 20, 3, 1])

RESHAPE_Y = r"Y: got shape \(40,\), expected \(1, m\): reshape a label vector with Y\.reshape\(1, -1\)"
TRANSPOSE_Y = r"Y: got shape \(40, 1\), expected \(1, m\): .*pass Y\.T"
TRANSPOSE_X = r"X, Y: got 2 and 40 examples, expected the same m .*examples are columns here: pass X\.T"
TRANSPOSE_X_FOR_W1 = (r"params\['W1'\]: got shape \(20, 2\), expected \(20, 40\) to match X with n_x = 40 features"
                      r".*examples are columns here: pass X\.T")


def train(X, Y, **kw):
    return jaxreg.train(X, Y, [X.shape[0], 20, 3, 1], iterations=10, **kw)


def message(call) -> str:
    with pytest.raises(ValueError) as err:
        call()
    return str(err.value)


# --- labels --------------------------------------------------------------------------------------


@pytest.mark.parametrize("call", [
    lambda: train(X, Y[0]),
    lambda: jaxreg.loss(PARAMS, X, Y[0]),
    lambda: jaxreg.accuracy(PARAMS, X, Y[0]),
], ids=["train", "loss", "accuracy"])
def test_label_vector_says_reshape(call):
    assert re.match(RESHAPE_Y + "$", message(call))


@pytest.mark.parametrize("call", [
    lambda: train(X, Y.T),
    lambda: jaxreg.loss(PARAMS, X, Y.T),
], ids=["train", "loss"])
def test_label_column_says_transpose(call):
    assert re.match(TRANSPOSE_Y + "$", message(call))


def test_other_label_shapes_get_no_hint():
    text = message(lambda: jaxreg.loss(PARAMS, X, np.zeros((2, M))))
    assert text == "Y: got shape (2, 40), expected (1, m)"


# --- features ------------------------------------------------------------------------------------


@pytest.mark.parametrize("call", [
    lambda: train(X.T, Y),
    lambda: jaxreg.loss(PARAMS, X.T, Y),
    lambda: jaxreg.accuracy(PARAMS, X.T, Y),
], ids=["train", "loss", "accuracy"])
def test_rows_as_examples_say_transpose_x(call):
    assert re.match(TRANSPOSE_X, message(call))


def test_both_transposed_name_both_fixes():
    text = message(lambda: train(X.T, Y[0]))
    assert re.match(RESHAPE_Y, text)
    assert text.endswith("; and X (shape (40, 2)) has its 40 examples as rows: pass X.T too")
    assert re.match(TRANSPOSE_Y + r"; and X .* pass X\.T too$", message(lambda: train(X.T, Y.T)))


@pytest.mark.parametrize("call", [
    lambda: jaxreg.predict(PARAMS, X.T),
    lambda: jaxreg.predict_proba(PARAMS, X.T),
    lambda: jaxreg.forward(PARAMS, X.T),
], ids=["predict", "predict_proba", "forward"])
def test_params_mismatch_of_transposed_x_says_transpose(call):
    text = message(call)
    assert re.match(TRANSPOSE_X_FOR_W1, text)
    assert "X (shape (40, 2)) has W1's 2 features as columns" in text


def test_test_and_validation_sets_name_their_own_fix():
    text = message(lambda: train(X, Y, X_test=X.T, Y_test=Y))
    assert re.match(r"X_test, Y_test: got 2 and 40 examples.*pass X_test\.T$", text)
    text = message(lambda: train(X, Y, validation=(X, Y[0])))
    assert re.match(r"Y_val: got shape \(40,\), expected \(1, m\): reshape a label vector with Y_val\.reshape", text)


@pytest.mark.parametrize("call", [
    lambda: train(np.ones((3, 7)), Y),  # 3 rows, not 40: not transposed, just wrong
    lambda: jaxreg.loss(PARAMS, np.ones((40, 40)), Y),  # square: could be either, only W1 can tell
    lambda: jaxreg.predict(PARAMS, np.ones((40, 3))),  # X.T would not fit W1 either
    lambda: jaxreg.predict(PARAMS, np.ones((3, 40))),
], ids=["wrong_m", "square", "wrong_n_x", "wrong_n_x_columns"])
def test_no_transpose_hint_where_it_would_not_help(call):
    assert ".T" not in message(call)
