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
    if keep_prob < 1:
        np.random.seed(1)  # noqa: NPY002
    Z1 = p["W1"] @ X + p["b1"]
    A1 = relu(Z1)
    D1 = None
    if keep_prob < 1:
        D1 = (np.random.rand(A1.shape[0], A1.shape[1]) < keep_prob).astype(int)  # noqa: NPY002
        A1 = A1 * D1 / keep_prob
    Z2 = p["W2"] @ A1 + p["b2"]
    A2 = relu(Z2)
    D2 = None
    if keep_prob < 1:
        D2 = (np.random.rand(A2.shape[0], A2.shape[1]) < keep_prob).astype(int)  # noqa: NPY002
        A2 = A2 * D2 / keep_prob
    Z3 = p["W3"] @ A2 + p["b3"]
    A3 = sigmoid(Z3)
    return A3, (Z1, D1, A1, Z2, D2, A2, Z3, A3)


def compute_cost(A3, Y, p, lambd):
    m = Y.shape[1]
    logprobs = np.multiply(-np.log(A3), Y) + np.multiply(-np.log(1 - A3), 1 - Y)
    cost = 1.0 / m * np.nansum(logprobs)
    if lambd:
        cost += lambd / (2 * m) * sum(np.sum(np.square(p[f"W{l}"])) for l in (1, 2, 3))
    return cost


def backward_propagation(X, Y, p, cache, lambd, keep_prob):
    m = X.shape[1]
    Z1, D1, A1, Z2, D2, A2, Z3, A3 = cache
    dZ3 = A3 - Y
    dW3 = 1.0 / m * dZ3 @ A2.T + lambd / m * p["W3"]
    db3 = 1.0 / m * np.sum(dZ3, axis=1, keepdims=True)
    dA2 = p["W3"].T @ dZ3
    if keep_prob < 1:
        dA2 = dA2 * D2 / keep_prob
    dZ2 = np.multiply(dA2, np.int64(A2 > 0))
    dW2 = 1.0 / m * dZ2 @ A1.T + lambd / m * p["W2"]
    db2 = 1.0 / m * np.sum(dZ2, axis=1, keepdims=True)
    dA1 = p["W2"].T @ dZ2
    if keep_prob < 1:
        dA1 = dA1 * D1 / keep_prob
    dZ1 = np.multiply(dA1, np.int64(A1 > 0))
    dW1 = 1.0 / m * dZ1 @ X.T + lambd / m * p["W1"]
    db1 = 1.0 / m * np.sum(dZ1, axis=1, keepdims=True)
    return {"dW1": dW1, "db1": db1, "dW2": dW2, "db2": db2, "dW3": dW3, "db3": db3}


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
