"""The textbook's own training loop in NumPy, as a whole process: the anchor of bench_startup.

The course's ``model()`` (forward, cost, backward, update, ``--iterations`` times) with its
initialisation (``np.random.seed(3)``, ``randn / sqrt(n_prev)``) and, with dropout, its masks
drawn in every forward pass after ``np.random.seed(1)``; float64. Imports NumPy only, so the
process costs what a NumPy user's script costs.

    python benchmarks/course_numpy.py DATA.npz [--lambd 0.7 | --keep-prob 0.86] [--iterations N]
"""

from __future__ import annotations

import argparse

import numpy as np


def initialize_parameters(layer_dims):
    np.random.seed(3)  # noqa: NPY002 (the textbook's code, global state and all)
    params = {}
    for l in range(1, len(layer_dims)):
        params[f"W{l}"] = np.random.randn(layer_dims[l], layer_dims[l - 1]) / np.sqrt(layer_dims[l - 1])  # noqa: NPY002
        params[f"b{l}"] = np.zeros((layer_dims[l], 1))
    return params


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def relu(z):
    return np.maximum(0, z)


def forward_propagation(X, p, keep_prob=1.0):
    """The course's forward pass; with dropout, masks drawn after reseeding (its code does)."""
    if keep_prob < 1:
        np.random.seed(1)  # noqa: NPY002 (the textbook's code, global state and all)
    A, cache = X, []
    for l in (1, 2):
        Z = p[f"W{l}"] @ A + p[f"b{l}"]
        A, D = relu(Z), None
        if keep_prob < 1:
            D = (np.random.rand(A.shape[0], A.shape[1]) < keep_prob).astype(int)  # noqa: NPY002
            A = A * D / keep_prob
        cache += [Z, D, A]
    Z3 = p["W3"] @ A + p["b3"]
    A3 = sigmoid(Z3)
    return A3, (*cache, Z3, A3)


def compute_cost(A3, Y, p, lambd):
    m = Y.shape[1]
    logprobs = np.multiply(-np.log(A3), Y) + np.multiply(-np.log(1 - A3), 1 - Y)
    cost = 1.0 / m * np.nansum(logprobs)
    if lambd:
        cost += lambd / (2 * m) * sum(np.sum(np.square(p[f"W{l}"])) for l in (1, 2, 3))
    return cost


def backward_propagation(X, Y, p, cache, lambd, keep_prob):
    """The course's backward pass, layer 3 down to 1 (its L2 and dropout terms where on)."""
    m = X.shape[1]
    _, D1, A1, _, D2, A2, _, A3 = cache
    inputs, masks = (X, A1, A2), (None, D1, D2)  # A_{l-1} and D_{l-1} of layer l
    grads, dZ = {}, A3 - Y
    for l in (3, 2, 1):
        grads[f"dW{l}"] = 1.0 / m * dZ @ inputs[l - 1].T + lambd / m * p[f"W{l}"]
        grads[f"db{l}"] = 1.0 / m * np.sum(dZ, axis=1, keepdims=True)
        if l > 1:
            dA = p[f"W{l}"].T @ dZ
            if keep_prob < 1:
                dA = dA * masks[l - 1] / keep_prob
            dZ = np.multiply(dA, np.int64(inputs[l - 1] > 0))
    return grads


def model(X, Y, learning_rate=0.3, iterations=30000, lambd=0.0, keep_prob=1.0):
    p = initialize_parameters([X.shape[0], 20, 3, 1])
    for i in range(iterations):
        A3, cache = forward_propagation(X, p, keep_prob)
        cost = compute_cost(A3, Y, p, lambd)
        grads = backward_propagation(X, Y, p, cache, lambd, keep_prob)
        for l in (1, 2, 3):
            p[f"W{l}"] -= learning_rate * grads[f"dW{l}"]
            p[f"b{l}"] -= learning_rate * grads[f"db{l}"]
        if i % 10000 == 0:
            print(f"Cost after iteration {i}: {cost}")
    return p


def accuracy(p, X, Y) -> float:
    return float(np.mean((forward_propagation(X, p)[0] > 0.5) == Y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--lambd", type=float, default=0.0)
    parser.add_argument("--keep-prob", type=float, default=1.0)
    parser.add_argument("--iterations", type=int, default=30000)
    args = parser.parse_args()
    with np.load(args.data) as d:
        X, Y, X_test, Y_test = d["X"].T, d["y"].T.astype(float), d["Xval"].T, d["yval"].T.astype(float)
    p = model(X, Y, iterations=args.iterations, lambd=args.lambd, keep_prob=args.keep_prob)
    print(f"train accuracy {accuracy(p, X, Y):.4f}, test accuracy {accuracy(p, X_test, Y_test):.4f}")


if __name__ == "__main__":
    main()
