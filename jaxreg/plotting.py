"""Figures from plain arrays. Imports matplotlib lazily (the ``plot`` extra) with the
headless Agg backend, and nothing from jaxreg's core. Each public function returns PNG
bytes, which the caller writes atomically; each has a private twin (``_compare``,
``_sweep``, ``_uncertainty``) that returns the matplotlib Figure, for tests to inspect."""

from __future__ import annotations

import functools
import io
import math
import textwrap
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


def _png(fig, tight: bool = True) -> bytes:
    """The figure as PNG bytes; ``tight``: cropped to what is drawn (one more layout pass)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight" if tight else None)
    _pyplot().close(fig)
    return buffer.getvalue()


def _scatter(ax, X, Y) -> None:
    for label, color in enumerate(CLASS_COLORS):
        pts = X[:, Y[0] == label]
        ax.scatter(pts[0], pts[1], s=16, c=color, edgecolors="white", linewidths=0.4)


def _decimal(value: float) -> str:
    """A tick value in plain decimals to 3 significant digits: 0.06, 0.3, 1, 25 (never 6×10⁻²)."""
    if not np.isfinite(value) or value == 0:
        return "0"
    return np.format_float_positional(float(f"{value:.3g}"), trim="-")


def _decimal_log_ticks(axis, fontsize: float = 8) -> None:
    """Plain decimal labels for a log-scale axis (``ax.yaxis``), on major and minor ticks alike
    (matplotlib's default reads 6×10⁻¹). Minor ticks are labelled as densely as their spacing
    allows at draw time: none, 2 and 5, 2, 3 and 5, 2 to 6 and 8, or every one."""
    from matplotlib.ticker import FuncFormatter

    def minor(value, _pos=None):
        low, high = sorted(axis.get_view_interval())
        if not (value > 0 and 0 < low < high):
            return ""
        mantissa = value / 10 ** math.floor(math.log10(value) + 1e-9)
        if abs(mantissa - round(mantissa)) > 1e-6:  # a narrow view's linear ticks: all labelled
            return _decimal(value)
        per_decade = axis.axes.bbox.height * 72 / axis.axes.figure.dpi / math.log10(high / low)  # points
        shown = ()
        for digits in ((2, 5), (2, 3, 5), (2, 3, 4, 5, 6, 8), (2, 3, 4, 5, 6, 7, 8, 9)):
            if np.diff(np.log10((1, *digits, 10))).min() * per_decade >= 1.5 * fontsize:
                shown = digits
        return _decimal(value) if round(mantissa) in shown else ""

    axis.set_major_formatter(FuncFormatter(lambda value, _pos=None: _decimal(value)))
    axis.set_minor_formatter(FuncFormatter(minor))
    axis.set_tick_params(which="both", labelsize=fontsize)


def _same(a, b) -> bool:
    """The training cost and the full network's cost are one curve (no dropout): equal up to rounding."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-6, atol=1e-12, equal_nan=True))


def _extend(x, y, final):
    """The curve ``(x, y)`` continued to ``final = (iteration, cost)`` when that lies beyond its end."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if final is None or (x.size and final[0] <= x[-1]):
        return x, y
    return np.append(x, float(final[0])), np.append(y, float(final[1]))


def _chars(width_inches: float, fontsize: float) -> int:
    """About how many characters of text ``fontsize`` fit on a line ``width_inches`` wide."""
    return max(20, int(width_inches * 72 / (0.56 * fontsize)))


def _compare(panels: list[dict], X, Y, *, title: str = ""):
    """Decision boundaries side by side over the data, and the cost curves below: the Figure.

    Each panel is a dict with ``title``, ``xx``, ``yy`` (grid coordinates, ``(H, W)``),
    ``proba`` (``P(y=1)`` on the grid, ``(H, W)``), ``iterations``, ``costs``,
    ``clean_costs`` (``(k,)``), ``train_accuracy`` and ``test_accuracy``; optionally
    ``final``: ``(iteration, cost)``, the full network's cost (no dropout, L2 included) after
    the last update, which extends the full network's curve (the training curve without dropout,
    the dashed one with dropout) and is marked with a dot; ``trace_iterations``, ``trace_costs``:
    a finer training-cost curve, drawn (solid) instead of ``iterations``/``costs``; ``lambd``:
    the run's L2 strength (> 0: its label says the cost includes the penalty). The training
    examples ``X (n_x, m)`` (first two features), ``Y (1, m)`` are drawn over the boundaries,
    as in the textbook; the test set only enters the accuracies (drawn too, it would hide what
    the boundary does with the training points). ``title`` describes the data (e.g. "built-in
    dataset 'default' (200 training examples)"); the suptitle is ``"{title} — training examples
    (…) over each run's decision boundary (…)"``."""
    plt = _pyplot()
    n = len(panels)
    cols = max(n, 2)  # one panel (train --plot) is centred over a figure as wide as two
    width = 4.6 * cols + 0.5
    fig = plt.figure(figsize=(width, 8.8))
    margin = 0.8 / width  # 0.8 inch margins: the y labels on the left, the colour bar's labels on the right
    outer = fig.add_gridspec(2, 1, height_ratios=[1.25, 1], hspace=0.36, top=0.86, bottom=0.12, left=margin,
                             right=1 - margin)
    _boundary_row(fig, outer[0], panels, X, Y, cols=cols, width=width)

    bottom = outer[1].subgridspec(1, 2, width_ratios=[2.3, 1], wspace=0.03)
    wrap = _chars((1 - 2 * margin) * width / 3.3 - 0.5, 8.5)  # the legend's column, less its handles
    ax = fig.add_subplot(bottom[0, 0])
    dropout, penalty, final, steps = _cost_curves(ax, panels, wrap)
    notes = _cost_notes(dropout, penalty, final, steps)
    if notes:
        _note_under(ax, "; ".join(notes), offset=-32, fontsize=8.5)
    _legend_column(fig.add_subplot(bottom[0, 1]), ax, final)
    legend = ("training examples (red: label 0, blue: label 1) over each run's decision boundary "
              "(shading: P(y = 1); black line: P(y = 1) = 0.5)")
    text = f"{title} — {legend}" if title else legend[0].upper() + legend[1:]
    fig.suptitle(textwrap.fill(text, _chars(0.9 * width, 10.5)), fontsize=10.5)
    return fig


def _boundary_row(fig, spec, panels: list[dict], X, Y, *, cols: int, width: float) -> None:
    """The top row of :func:`_compare` in the gridspec cell ``spec``: one decision-boundary panel
    per dict of ``panels`` (:func:`_boundary_panel`), centred when there are fewer than ``cols``,
    and one colour bar for ``P(y = 1)`` to their right, with the 0.5 contour marked on it.
    ``width``: the figure's width in inches."""
    n = len(panels)
    pad = [(cols - n) / 2] if n < cols else []
    ratios = pad + [max(n, 1), 0.06] + pad  # the panels, the colour bar (about 0.2 inch)
    inches = 0.775 * width / cols * sum(ratios) / len(ratios)  # the average column's width
    row = spec.subgridspec(1, len(ratios), width_ratios=ratios, wspace=0.12 / inches)
    top = row[0, len(pad)].subgridspec(1, max(n, 1), wspace=0.32)
    shading = boundary = None
    for i, panel in enumerate(panels):
        shading, boundary = _boundary_panel(fig.add_subplot(top[0, i]), panel, X, Y)
    if shading is not None:
        bar = fig.colorbar(shading, cax=fig.add_subplot(row[0, len(pad) + 1]), ticks=np.linspace(0, 1, 6))
        bar.add_lines(boundary)
        bar.set_label("P(y = 1), the network's output (black line: 0.5)")
        bar.ax.tick_params(labelsize=8)


def _boundary_panel(ax, panel: dict, X, Y):
    """One run's decision boundary on ``ax``: ``panel["proba"]`` shaded over the grid
    ``panel["xx"]``, ``panel["yy"]`` with its 0.5 contour in black, the training examples
    ``X``, ``Y`` on top, and the run's title and accuracies above. Returns the shading and the
    contour, for the colour bar."""
    shading = ax.contourf(panel["xx"], panel["yy"], panel["proba"], levels=np.linspace(0, 1, 11),
                          cmap="RdBu", alpha=0.35, vmin=0, vmax=1)
    boundary = ax.contour(panel["xx"], panel["yy"], panel["proba"], levels=[0.5], colors="k", linewidths=1.2)
    _scatter(ax, X, Y)
    test = "n/a" if panel["test_accuracy"] is None else f"{panel['test_accuracy']:.3f}"
    ax.set_title(f"{panel['title']}\ntrain {panel['train_accuracy']:.3f}, test {test}", fontsize=10)
    ax.set_xlim(np.min(panel["xx"]), np.max(panel["xx"]))
    ax.set_ylim(np.min(panel["yy"]), np.max(panel["yy"]))
    ax.set_xlabel("x1")
    ax.set_ylabel("x2", labelpad=1)
    ax.tick_params(labelsize=8)
    ax.locator_params(nbins=5)  # a few round ticks: the axes' scale, not a ruler
    return shading, boundary


def _cost_curves(ax, panels: list[dict], wrap: int):
    """Each run's cost against the iteration on ``ax`` (log scale), one colour per run: the
    training cost (``trace_iterations``/``trace_costs`` when given, else ``iterations``/``costs``),
    dashed ``clean_costs`` (the full network) when they differ from ``costs`` (dropout), and a dot
    at ``final``, which extends the full network's curve. Legend labels are wrapped at ``wrap``
    characters. Returns what the notes explain: whether any run used dropout, had ``lambd > 0``,
    had a ``final`` cost, and the set of the traces' intervals."""
    dropout = penalty = final = False
    steps = set()  # the traces' intervals
    for i, panel in enumerate(panels):
        color = RUN_COLORS[i % len(RUN_COLORS)]
        name, point = panel["title"], panel.get("final")
        clean = not _same(panel["costs"], panel["clean_costs"])  # the dashed curve: with dropout only
        traced = panel.get("trace_iterations") is not None and panel.get("trace_costs") is not None \
            and len(panel["trace_iterations"]) > 0
        x, y = ((panel["trace_iterations"], panel["trace_costs"]) if traced else (panel["iterations"], panel["costs"]))
        lambd = float(panel.get("lambd") or 0.0)
        label = name + ("" if lambd <= 0 else " (cost includes the L2 penalty)" if "lambd" in name
                        else f" (lambd {lambd:g}; cost includes the L2 penalty)")
        if clean:
            label += ": training cost, with dropout"
        ax.plot(*(_extend(x, y, None if clean else point)), color=color, linewidth=1.0 if traced else 1.4,
                label=textwrap.fill(label, wrap))
        if clean:
            ax.plot(*_extend(panel["iterations"], panel["clean_costs"], point), color=color, linestyle="--",
                    linewidth=1.4, label=textwrap.fill(f"{name}: the full network, without dropout", wrap))
        if point is not None:
            ax.plot([float(point[0])], [float(point[1])], "o", color=color, markersize=5.5, zorder=3)
        dropout, penalty, final = dropout or clean, penalty or lambd > 0, final or point is not None
        if traced:
            steps.update(np.unique(np.diff(np.asarray(panel["trace_iterations"], float))).tolist() or [0.0])
    ax.set_xlabel("iteration")
    ax.set_ylabel("cost (log scale)")
    ax.set_yscale("log")
    _decimal_log_ticks(ax.yaxis)
    ax.grid(True, which="both", alpha=0.3)
    return dropout, penalty, final, steps


def _cost_notes(dropout: bool, penalty: bool, final: bool, steps: set) -> list[str]:
    """The notes under the cost curves, from what :func:`_cost_curves` drew: the L2 penalty, the
    dashed curves, the dots, and the traces' interval (``steps``) when all traces share one."""
    notes = (["costs include each run's L2 penalty λ/(2m)·Σ‖W‖² (runs with lambd > 0)"] if penalty else []) + (
        ["dashed: the full network (the same weights, no dropout)"] if dropout else []) + (
        ["dot: the full network's cost (no dropout) after the last update"] if final else [])
    if steps:
        notes.append(f"solid: the training cost every {steps.pop():.0f} iterations"
                     if len(steps) == 1 and 0 not in steps else "solid: the training cost as recorded")
    return notes


def _note_under(ax, text: str, *, offset: float, fontsize: float, widen: float = 1.0) -> None:
    """``text`` in grey below ``ax``, ``offset`` points under its bottom left corner, wrapped to
    the axes' width times ``widen``."""
    chars = _chars(ax.get_position().width * ax.figure.get_figwidth() * widen, fontsize)
    ax.annotate(textwrap.fill(text, chars), xy=(0, 0), xycoords="axes fraction", xytext=(0, offset),
                textcoords="offset points", ha="left", va="top", fontsize=fontsize, color="#333333")


def _legend_column(side, ax, final: bool) -> None:
    """The legend of the cost curves on ``ax``, drawn in the axes ``side`` (turned off), with a
    grey dot for the final cost when ``final``."""
    from matplotlib.lines import Line2D

    side.axis("off")
    handles, labels = ax.get_legend_handles_labels()
    if final:
        handles.append(Line2D([], [], color="gray", marker="o", linestyle="none", markersize=5.5))
        labels.append("the full network's cost after the last update")
    side.legend(handles, labels, loc="upper left", fontsize=8.5, frameon=False, borderaxespad=0)


def _label(x: float) -> str:
    return f"{x:g}"


def _luminance(rgba) -> float:
    """The relative luminance (WCAG) of a colour: black text reads better above 0.179, white below."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3]]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _color_range(mean, std) -> tuple[float, float]:
    """The heat map's fixed colour range for accuracies: from 1 (perfect) down to the lowest mean
    rounded down to 0.05, but at least 0.2 and five (median) standard deviations wide, so that
    differences within the spread over seeds and folds look alike, and not below 0.5 (chance for
    two classes; lower cells take the darkest colour)."""
    finite = mean[np.isfinite(mean)]
    spread = np.asarray([] if std is None else std, float)
    spread = spread[np.isfinite(spread)]
    typical = float(np.median(spread)) if spread.size else 0.0
    lowest = float(finite.min()) if finite.size else 1.0
    low = math.floor(min(lowest, 1.0 - max(0.2, 5 * typical)) / 0.05 + 1e-9) * 0.05
    return round(max(0.5, low), 2), 1.0


def _sweep(
    lambds: Sequence[float],
    keep_probs: Sequence[str],
    train_mean,
    train_std,
    held_mean=None,
    held_std=None,
    *,
    held_out: str = "validation",
    title: str = "",
):
    """Accuracy against ``lambd`` beside a heat map of the mean held-out accuracy (``held_out``
    names it: validation; train accuracy without one) over the grid: the Figure.

    Left: the held-out accuracy, one line per keep_prob with a shaded band of ± one standard
    deviation over seeds and folds (markers offset a little in x, so equal values stay apart),
    and the train accuracy (thin, dashed) for the best keep_prob only. With a train line and
    error bars for every keep_prob, several keep_probs made 2K overlapping lines and bars; the
    bands show the spread at a glance, the one train line the gap regularization closes, and
    the heat map holds every cell's numbers. At most ``len(keep_probs) + 1`` lines.

    Right: the heat map on a fixed colour range (:func:`_color_range`: 1 down to the lowest
    mean, at least 0.2 and five standard deviations wide), not stretched to the data's min and
    max, so 0.818 and 0.823 look alike; each cell says mean ± std; the best cell is outlined in
    red, the cells within one standard deviation of it dashed. The range is written under it.

    Arrays are ``(len(keep_probs), len(lambds))``; ``keep_probs`` are labels
    (``"0.9"`` or ``"0.9,0.6"``)."""
    plt = _pyplot()
    lambds = np.asarray(lambds, float)
    order = np.argsort(lambds, kind="stable")
    lambds = lambds[order]
    k = len(keep_probs)

    def grid(a):
        return None if a is None else np.asarray(a, float).reshape(k, -1)[:, order]

    train_mean, train_std, held_mean, held_std = map(grid, (train_mean, train_std, held_mean, held_std))
    name = held_out if held_mean is not None else "train"
    shown = held_mean if held_mean is not None else train_mean
    spread = held_std if held_mean is not None else train_std
    spread = np.zeros_like(shown) if spread is None else spread
    best = np.unravel_index(np.nanargmax(shown), shown.shape) if np.isfinite(shown).any() else None
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(6.5 + 0.9 * len(lambds), 5.6), gridspec_kw={"width_ratios": [1.15, 1]}
    )
    train = train_mean if held_mean is not None else None  # a train line only beside held-out ones
    _accuracy_panel(left, lambds, keep_probs, shown, spread, best, train=train, name=name)
    low, high, below = _heat_map(right, lambds, keep_probs, shown, spread, name=name)
    note = _scale_note(low, high, below, spread)
    if best is not None:
        note += _mark_best(right, shown, spread, best)
    _note_under(right, note, offset=-30, fontsize=8, widen=1.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _accuracy_panel(ax, lambds, keep_probs: Sequence[str], shown, spread, best, *, train, name: str) -> None:
    """The left panel of :func:`_sweep` on ``ax``: each row of ``shown`` (one per keep_prob)
    against ``lambds`` (evenly spaced), the best row (``best = (row, col)`` or None) with a band
    of ± ``spread`` and, when ``train`` is given, its train accuracy dashed; the best cell circled
    in red. ``name`` names the accuracy shown (e.g. "validation")."""
    plt = _pyplot()
    k = len(keep_probs)
    x = np.arange(len(lambds))  # evenly spaced: lambd grids are usually roughly geometric, with a 0
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, max(k, 2)))
    step = min(0.06, 0.24 / max(k - 1, 1))
    offsets = step * (np.arange(k) - (k - 1) / 2)
    for r, kp in enumerate(keep_probs):
        if best is not None and r == best[0]:
            ax.fill_between(x + offsets[r], shown[r] - spread[r], shown[r] + spread[r], color=colors[r],
                            alpha=0.18, linewidth=0)
        ax.plot(x + offsets[r], shown[r], color=colors[r], marker="o", markersize=4.5, linewidth=1.6,
                label=f"keep_prob {kp}")
    if best is not None:
        r, c = best
        if train is not None:
            ax.plot(x + offsets[r], train[r], color=colors[r], linestyle="--", linewidth=1.0, alpha=0.85,
                    label=f"train, keep_prob {keep_probs[r]} (the best)")
        ax.scatter([x[c] + offsets[r]], [shown[r, c]], s=150, facecolors="none", edgecolors="red", linewidths=1.8,
                   zorder=4, label="best (red in the heat map)")
    ax.set_xticks(x, [_label(v) for v in lambds])
    ax.set_xlabel("lambd (L2 strength)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{name} accuracy, mean" + ("" if best is None else
                 f"\n(band: ± one std over runs, best keep_prob {keep_probs[best[0]]})"),
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="best")


def _heat_map(ax, lambds, keep_probs: Sequence[str], shown, spread, *, name: str):
    """The right panel of :func:`_sweep` on ``ax``: ``shown`` (keep_probs × ``lambds``) as a heat
    map on the fixed colour range of :func:`_color_range`, with its colour bar, each cell
    annotated with its mean ± ``spread`` in black or white, whichever reads better on its colour.
    Returns the range ``(low, high)`` and whether some mean lies below it."""
    from matplotlib.colors import Normalize

    plt = _pyplot()
    low, high = _color_range(shown, spread)
    norm = Normalize(vmin=low, vmax=high)
    cmap = plt.get_cmap("viridis")
    image = ax.imshow(shown, cmap=cmap, norm=norm, aspect="auto")
    below = bool(np.nanmin(shown) < low) if np.isfinite(shown).any() else False
    ax.figure.colorbar(image, ax=ax, label=f"{name} accuracy, mean (fixed scale {low:.2f}–{high:.2f})",
                       extend="min" if below else "neither")
    ax.set_xticks(np.arange(len(lambds)), [_label(v) for v in lambds])
    ax.set_yticks(np.arange(len(keep_probs)), list(keep_probs))
    ax.set_xlabel("lambd")
    ax.set_ylabel("keep_prob")
    ax.set_title(f"{name} accuracy (mean ± std)", fontsize=11)
    for r in range(shown.shape[0]):
        for c in range(shown.shape[1]):
            if np.isnan(shown[r, c]):
                continue
            dark = _luminance(cmap(norm(shown[r, c]))) < 0.179  # the cell's colour under the fixed scale
            ax.text(c, r, f"{shown[r, c]:.3f}\n±{spread[r, c]:.3f}", ha="center", va="center",
                    fontsize="small", color="white" if dark else "black")
    return low, high, below


def _scale_note(low: float, high: float, below: bool, spread) -> str:
    """The heat map's note on its colours: the fixed range ``low``–``high`` and how much of it one
    (median) standard deviation of ``spread`` spans."""
    typical = float(np.nanmedian(spread)) if np.isfinite(spread).any() else 0.0
    return (f"Colours: a fixed scale, {low:.2f}–{high:.2f}, not the data's min–max; one std (median "
            f"{typical:.3f}) spans {typical / (high - low):.0%} of it"
            + (", lower means take its darkest colour" if below else "") + ".")


def _mark_best(ax, shown, spread, best) -> str:
    """Outlines the heat map's best cell ``best = (row, col)`` of ``shown`` on ``ax`` in red, and
    the cells within one standard deviation (``spread`` there) of it dashed, while they are a
    minority. Returns the sentence that says so, for the note."""
    plt = _pyplot()
    r, c = best
    near = np.isfinite(shown) & (shown >= shown[r, c] - spread[r, c]) if np.isfinite(spread[r, c]) else \
        np.zeros(shown.shape, bool)
    near[r, c] = False
    ties, others = int(near.sum()), int(np.isfinite(shown).sum()) - 1
    outlined = 0 < ties and 2 * ties <= others  # while a minority: a grid of outlines says nothing
    if outlined:
        for rr, cc in zip(*np.nonzero(near), strict=True):
            ax.add_patch(plt.Rectangle((cc - 0.45, rr - 0.45), 0.9, 0.9, fill=False, edgecolor="red",
                                       linewidth=1.4, linestyle="--", clip_on=False))
    ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5,
                               clip_on=False))
    within = f"{ties} of the other {others} cells" if ties else "no other cell"
    return f" Red: the best cell; {within} within one std of it" + (" (dashed)" if outlined else "") + "."


def _uncertainty(xx, yy, mean, std, X, Y, *, title: str = ""):
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
    return fig


def _as_png(build, name: str, tight: bool = True):
    """The public twin of a figure builder: the same arguments, the PNG file's bytes (the
    builders return the matplotlib Figure, which the tests inspect). ``tight=False`` for a
    figure laid out with its own margins: cropping costs another layout pass (~0.2 s)."""

    @functools.wraps(build)
    def figure(*args, **kwargs) -> bytes:
        return _png(build(*args, **kwargs), tight)

    figure.__name__ = figure.__qualname__ = name
    figure.__doc__ = f"{build.__doc__}\n\n    Returns the PNG file's bytes."
    return figure


compare_figure = _as_png(_compare, "compare_figure", tight=False)  # on every `compare`: its time counts
sweep_figure = _as_png(_sweep, "sweep_figure")
uncertainty_figure = _as_png(_uncertainty, "uncertainty_figure")
