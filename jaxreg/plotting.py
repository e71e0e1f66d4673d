"""Figures from plain arrays. Imports matplotlib lazily (the ``plot`` extra) with the
headless Agg backend, and nothing from jaxreg's core. Each function returns PNG
bytes, which the caller writes atomically."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

CLASS_COLORS = ("#d62728", "#1f77b4")  # label 0, label 1
RUN_COLORS = ("#444444", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def load() -> None:
    """Import matplotlib now (with the Agg backend), e.g. ahead of a figure, in the background."""
    _pyplot()


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "figures need matplotlib: pip install 'jaxreg[plot]' (or pip install matplotlib)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def _scatter(ax, X, Y) -> None:
    for label, color in enumerate(CLASS_COLORS):
        pts = X[:, Y[0] == label]
        ax.scatter(pts[0], pts[1], s=16, c=color, edgecolors="white", linewidths=0.4)


def compare_figure(panels: list[dict], X, Y, *, title: str = "") -> bytes:
    """Decision boundaries side by side over the data, and the cost curves below.

    Each panel is a dict with ``title``, ``xx``, ``yy`` (grid coordinates, ``(H, W)``),
    ``proba`` (``P(y=1)`` on the grid, ``(H, W)``), ``iterations``, ``costs``,
    ``clean_costs`` (``(k,)``), ``train_accuracy`` and ``test_accuracy``. The training
    examples ``X (n_x, m)`` (first two features), ``Y (1, m)`` are drawn over the
    boundaries, as in the textbook; the test set only enters the accuracies (drawn
    too, it would hide what the boundary does with the training points)."""
    plt = _pyplot()
    n = len(panels)
    fig = plt.figure(figsize=(4.6 * n, 8.2))
    grid = fig.add_gridspec(2, n, height_ratios=[1.25, 1])
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(grid[0, i])
        ax.contourf(panel["xx"], panel["yy"], panel["proba"], levels=np.linspace(0, 1, 11),
                    cmap="RdBu", alpha=0.35, vmin=0, vmax=1)
        ax.contour(panel["xx"], panel["yy"], panel["proba"], levels=[0.5], colors="k", linewidths=1.2)
        _scatter(ax, X, Y)
        test = "n/a" if panel["test_accuracy"] is None else f"{panel['test_accuracy']:.3f}"
        ax.set_title(f"{panel['title']}\ntrain {panel['train_accuracy']:.3f}, test {test}", fontsize=10)
        ax.set_xlim(panel["xx"].min(), panel["xx"].max())
        ax.set_ylim(panel["yy"].min(), panel["yy"].max())
        ax.set_xticks([])
        ax.set_yticks([])
    ax = fig.add_subplot(grid[1, :])
    for i, panel in enumerate(panels):
        color = RUN_COLORS[i % len(RUN_COLORS)]
        ax.plot(panel["iterations"], panel["costs"], color=color, label=f"{panel['title']}")
        if not np.array_equal(panel["costs"], panel["clean_costs"]):
            ax.plot(panel["iterations"], panel["clean_costs"], color=color, linestyle="--",
                    label=f"{panel['title']} (without dropout)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("cost")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=9)
    legend = "training examples (red: label 0, blue: label 1) over each run's decision boundary"
    fig.suptitle(f"{title}: {legend}" if title else legend, fontsize=10)
    return _png(fig)


def _label(x: float) -> str:
    return f"{x:g}"


def sweep_figure(
    lambds: Sequence[float],
    keep_probs: Sequence[str],
    train_mean,
    train_std,
    held_mean=None,
    held_std=None,
    *,
    held_out: str = "validation",
    title: str = "",
) -> bytes:
    """Accuracy against ``lambd`` (one colour per keep_prob; held-out solid, train dashed,
    bars of one standard deviation over seeds and folds) beside a heat map of the mean
    held-out accuracy (``held_out`` names it: validation; train accuracy without one) over
    the grid, best cell outlined.

    Arrays are ``(len(keep_probs), len(lambds))``; ``keep_probs`` are labels
    (``"0.9"`` or ``"0.9,0.6"``). Returns the PNG file's bytes."""
    plt = _pyplot()
    lambds = np.asarray(lambds, float)
    order = np.argsort(lambds, kind="stable")
    lambds = lambds[order]

    def grid(a):
        return None if a is None else np.asarray(a, float).reshape(len(keep_probs), -1)[:, order]

    train_mean, train_std, held_mean, held_std = map(grid, (train_mean, train_std, held_mean, held_std))
    x = np.arange(len(lambds))  # evenly spaced: lambd grids are usually roughly geometric, with a 0
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(6.5 + 0.9 * len(lambds), 5.2), gridspec_kw={"width_ratios": [1.15, 1]}
    )
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, max(len(keep_probs), 2)))
    for r, kp in enumerate(keep_probs):
        if held_mean is not None:
            left.errorbar(x, held_mean[r], yerr=held_std[r], color=colors[r], marker="o", capsize=3,
                          label=f"keep_prob {kp}")
        left.errorbar(x, train_mean[r], yerr=train_std[r], color=colors[r], marker="o", mfc="white",
                      linestyle="--", capsize=3, alpha=0.8,
                      label=f"keep_prob {kp}" if held_mean is None else None)
    left.plot([], [], color="gray", linestyle="-", marker="o", label=held_out)
    left.plot([], [], color="gray", linestyle="--", marker="o", mfc="white", label="train")
    left.set_xticks(x, [_label(v) for v in lambds])
    left.set_xlabel("lambd (L2 strength)")
    left.set_ylabel("accuracy")
    left.set_title("accuracy (mean ± std)")
    left.grid(alpha=0.3)
    left.legend(fontsize="small", loc="best")

    name = held_out if held_mean is not None else "train"
    shown = held_mean if held_mean is not None else train_mean
    spread = held_std if held_mean is not None else train_std
    image = right.imshow(shown, cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=right, label=f"{name} accuracy")
    right.set_xticks(x, [_label(v) for v in lambds])
    right.set_yticks(np.arange(len(keep_probs)), list(keep_probs))
    right.set_xlabel("lambd")
    right.set_ylabel("keep_prob")
    right.set_title(f"{name} accuracy (mean)")
    finite = shown[np.isfinite(shown)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
    for r in range(shown.shape[0]):
        for c in range(shown.shape[1]):
            if np.isnan(shown[r, c]):
                continue
            light = high == low or (shown[r, c] - low) / (high - low) < 0.6  # dark cells: white text
            right.text(c, r, f"{shown[r, c]:.3f}\n±{spread[r, c]:.3f}", ha="center", va="center",
                       fontsize="small", color="white" if light else "black")
    if np.isfinite(shown).any():
        r, c = np.unravel_index(np.nanargmax(shown), shown.shape)
        right.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)


def uncertainty_figure(xx, yy, mean, std, X, Y, *, title: str = "") -> bytes:
    """Decision boundary beside the Monte Carlo dropout uncertainty on a 2-D grid.

    ``xx``, ``yy``: the grid's coordinates ``(g1, g2)``; ``mean``, ``std``: the
    predictive mean and standard deviation of ``P(y = 1)`` there, same shape;
    ``X (2, m)``, ``Y (1, m)``: the points to draw. Returns the PNG file's bytes."""
    plt = _pyplot()
    X, Y = np.asarray(X), np.asarray(Y).reshape(-1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    filled = left.contourf(xx, yy, mean, levels=np.linspace(0, 1, 11), cmap="RdBu", alpha=0.5, vmin=0, vmax=1)
    left.contour(xx, yy, mean, levels=[0.5], colors="black", linewidths=1.5)
    fig.colorbar(filled, ax=left, label="predictive mean P(y = 1)")
    left.set_title("decision boundary (mean = 0.5)")
    spread = right.contourf(xx, yy, std, levels=12, cmap="Greys")
    right.contour(xx, yy, mean, levels=[0.5], colors="black", linewidths=1, linestyles="--")
    fig.colorbar(spread, ax=right, label="predictive std")
    right.set_title("Monte Carlo dropout uncertainty")
    for ax in (left, right):
        for label, color in enumerate(CLASS_COLORS):
            ax.scatter(X[0, Y == label], X[1, Y == label], s=16, c=color, edgecolors="white", linewidths=0.4)
        ax.set_xlim(np.min(xx), np.max(xx))
        ax.set_ylim(np.min(yy), np.max(yy))
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)
