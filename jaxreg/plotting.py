"""Figures from plain arrays. Imports matplotlib lazily (the ``plot`` extra) with the
headless Agg backend, and nothing from jaxreg's core. Each function returns PNG
bytes, which the caller writes atomically."""

from __future__ import annotations

import io

import numpy as np

CLASS_COLORS = ("#d62728", "#1f77b4")  # label 0, label 1
RUN_COLORS = ("#444444", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


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


def _scatter(ax, X, Y, *, test: bool) -> None:
    for label, color in enumerate(CLASS_COLORS):
        pts = X[:, Y[0] == label]
        if test:
            ax.scatter(pts[0], pts[1], s=14, facecolors="none", edgecolors=color, linewidths=0.8)
        else:
            ax.scatter(pts[0], pts[1], s=14, c=color, edgecolors="white", linewidths=0.4)


def compare_figure(panels: list[dict], X, Y, X_test=None, Y_test=None, *, title: str = "") -> bytes:
    """Decision boundaries side by side over the data, and the cost curves below.

    Each panel is a dict with ``title``, ``xx``, ``yy`` (grid coordinates, ``(H, W)``),
    ``proba`` (``P(y=1)`` on the grid, ``(H, W)``), ``iterations``, ``costs``,
    ``clean_costs`` (``(k,)``), ``train_accuracy`` and ``test_accuracy``. ``X`` is
    ``(n_x, m)`` (the first two features are drawn), ``Y`` is ``(1, m)``; filled dots
    are training examples, rings test examples."""
    plt = _pyplot()
    n = len(panels)
    fig = plt.figure(figsize=(4.6 * n, 8.2))
    grid = fig.add_gridspec(2, n, height_ratios=[1.25, 1])
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(grid[0, i])
        ax.contourf(panel["xx"], panel["yy"], panel["proba"], levels=np.linspace(0, 1, 11),
                    cmap="RdBu", alpha=0.35, vmin=0, vmax=1)
        ax.contour(panel["xx"], panel["yy"], panel["proba"], levels=[0.5], colors="k", linewidths=1.2)
        _scatter(ax, X, Y, test=False)
        if X_test is not None:
            _scatter(ax, X_test, Y_test, test=True)
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
    legend = "filled: training examples, rings: test examples; red: label 0, blue: label 1"
    fig.suptitle(f"{title}: {legend}" if title else legend, fontsize=10)
    return _png(fig)
