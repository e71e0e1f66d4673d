"""The figures, inspected as a reader would read them: on the matplotlib Figure that each public
function's private twin returns (``_compare``, ``_sweep``, ``_uncertainty``), with synthetic
arrays (no JAX); and each public function returns a PNG."""

import re

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from jaxreg import plotting  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
ITERATIONS = np.arange(0, 30000, 1000)  # logged: 0 ... 29000 of a 30000-iteration run
FINAL = 30000
TITLE = "built-in dataset 'default' (200 training examples)"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plotting._pyplot().close("all")


def data(m: int = 60):
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (2, m))
    Y = (X[1] > X[0]).astype(float)[None]
    return X, Y


def panel(title: str, *, dropout: bool = False, lambd: float | None = None, final: bool = True,
          trace: bool = False) -> dict:
    g = np.linspace(-1.1, 1.1, 30)
    xx, yy = np.meshgrid(g, g)
    costs = 0.1 + 0.6 * np.exp(-ITERATIONS / 3000)
    clean = 0.6 - 0.3 * np.exp(-ITERATIONS / 5000) if dropout else costs.copy()
    p = {"title": title, "xx": xx, "yy": yy, "proba": 1 / (1 + np.exp(-8 * (yy - xx))), "iterations": ITERATIONS,
         "costs": costs, "clean_costs": clean, "train_accuracy": 0.95, "test_accuracy": 0.93}
    if lambd is not None:
        p["lambd"] = lambd
    if final:
        p["final"] = (FINAL, float(clean[-1]) * 0.98)
    if trace:
        p["trace_iterations"] = np.arange(0, 30000, 60)
        p["trace_costs"] = 0.1 + 0.6 * np.exp(-p["trace_iterations"] / 3000)
    return p


def panels(**options) -> list[dict]:
    return [panel("no regularization", **options), panel("L2, lambd 0.7", lambd=0.7, **options),
            panel("dropout, keep_prob 0.86", dropout=True, **options)]


def compare(runs=None, title: str = TITLE):
    X, Y = data()
    fig = plotting._compare(panels() if runs is None else runs, X, Y, title=title)
    fig.canvas.draw()
    return fig


def boundary_axes(fig):
    return [ax for ax in fig.axes if ax.collections and ax.get_xlabel() == "x1"]


def cost_axes(fig):
    (ax,) = [ax for ax in fig.axes if ax.get_yscale() == "log"]
    return ax


def line(ax, label_start: str, contains: str = ""):
    """The one line whose legend label (wrapped: whitespace normalized) starts with ``label_start``."""
    (found,) = [ln for ln in ax.get_lines() if (label := " ".join(ln.get_label().split())).startswith(label_start)
                and contains in label]
    return found


def all_text(fig) -> str:
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    texts += [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    return " | ".join(" ".join(t.split()) for t in texts)  # wrapped lines joined


# ----------------------------------------------------------------------------- compare


def test_compare_boundary_panels_have_ticks_and_axis_labels():
    axes = boundary_axes(compare())
    assert len(axes) == 3
    for ax in axes:
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("x1", "x2")
        assert [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
        assert [t.get_text() for t in ax.get_yticklabels() if t.get_text()]


def test_compare_has_one_colour_bar_for_the_probability():
    bars = [ax for ax in compare().axes if "P(y = 1)" in ax.get_ylabel()]
    assert len(bars) == 1
    assert bars[0].get_ylim() == pytest.approx((0.0, 1.0))


def test_compare_cost_ticks_are_plain_decimals():
    ax = cost_axes(compare())
    labels = [t.get_text() for t in ax.get_yticklabels(minor=False) + ax.get_yticklabels(minor=True)]
    shown = [s for s in labels if s]
    assert len(shown) >= 3, labels
    for text in shown:
        assert not re.search(r"\$|10\^|times|×", text), text
        float(text)  # a plain decimal, e.g. "0.3"


def test_compare_extends_the_full_network_to_the_final_cost():
    ax = cost_axes(compare())
    for label in ("no regularization", "L2, lambd 0.7"):  # no dropout: the training curve is the full network's
        x, y = line(ax, label).get_data()
        assert x[-1] == FINAL and x[-2] == ITERATIONS[-1]
    dropout = line(ax, "dropout", "with dropout")  # the training cost with masks: the final point is not its
    assert dropout.get_xdata()[-1] == ITERATIONS[-1]
    clean = line(ax, "dropout", "without dropout")
    assert clean.get_linestyle() == "--" and clean.get_xdata()[-1] == FINAL
    assert clean.get_ydata()[-1] == pytest.approx(panel("d", dropout=True)["final"][1])
    dots = [ln for ln in ax.get_lines() if ln.get_marker() == "o" and list(ln.get_xdata()) == [FINAL]]
    assert len(dots) == 3


def test_compare_works_without_the_optional_keys():
    ax = cost_axes(compare(panels(final=False)))
    assert line(ax, "no regularization").get_xdata()[-1] == ITERATIONS[-1]
    assert not [ln for ln in ax.get_lines() if ln.get_marker() == "o"]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_compare_margins_hold_every_text(n):
    """The figure is saved uncropped (its own margins, one layout pass less): nothing may fall outside."""
    runs = [panel("dropout, keep_prob 0.86,0.95", dropout=True, lambd=0.7, trace=True)] * n
    fig = compare(runs, title="a_long_file_name_for_the_data.csv (0.25 held out as test set, seed 0) "
                  "(150 training examples, 50 test)")
    drawn = fig.get_tightbbox(fig.canvas.get_renderer())  # inches: what cropping would keep
    width, height = fig.get_size_inches()
    assert drawn.x0 >= -0.01 and drawn.y0 >= -0.01, drawn
    assert drawn.x1 <= width + 0.01 and drawn.y1 <= height + 0.01, (drawn, width, height)


def test_compare_draws_the_training_cost_from_the_trace():
    runs = panels(trace=True)
    ax = cost_axes(compare(runs))
    trace = runs[0]["trace_iterations"]
    assert list(line(ax, "no regularization").get_xdata()) == [*trace, FINAL]  # the trace, then the final cost
    assert list(line(ax, "dropout", "with dropout").get_xdata()) == list(trace)
    assert list(line(ax, "dropout", "without dropout").get_xdata()) == [*ITERATIONS, FINAL]
    assert "every 60 iterations" in all_text(ax.figure)


def test_compare_title_describes_the_data_in_a_sentence():
    for title in (TITLE, "default"):
        text = compare(title=title)._suptitle.get_text()
        assert text.startswith(title) and not text.startswith(f"{title}:")
        assert "training examples" in text and "P(y = 1)" in text


def test_compare_says_the_l2_cost_includes_its_penalty():
    text = all_text(compare())
    assert re.search(r"L2, lambd 0\.7 \(cost includes the L2 penalty\)", text)
    assert "penalty λ/(2m)" in text
    runs = [panel("no regularization", lambd=0.0), panel("dropout", dropout=True)]
    assert "penalty" not in all_text(compare(runs))


# ----------------------------------------------------------------------------- sweep

LAMBDS = [0.0, 0.1, 0.3, 0.7]


def sweep(held, *, std=0.02, keep_probs=None, train=True):
    held = np.asarray(held, float)
    keep_probs = keep_probs or [f"{1 - 0.1 * r:g}" for r in range(held.shape[0])]
    spread = np.full_like(held, std)
    args = (np.clip(held + 0.03, 0, 1), spread, held, spread) if train else (held, spread)
    fig = plotting._sweep(LAMBDS, keep_probs, *args, held_out="validation (5-fold)", title="t")
    fig.canvas.draw()
    left, right = fig.axes[:2]
    return fig, left, right


CLOSE = [[0.818, 0.820, 0.823, 0.819], [0.821, 0.822, 0.818, 0.820]]


def test_sweep_colour_scale_is_fixed_not_stretched_to_the_data():
    _, _, right = sweep(CLOSE)
    norm = right.get_images()[0].norm
    assert (norm.vmin, norm.vmax) != (0.818, 0.823)
    assert norm.vmin <= 0.818 and norm.vmax >= 0.823
    assert abs(norm(0.823) - norm(0.818)) < 0.1


def test_sweep_says_what_the_colours_mean():
    fig, _, right = sweep(CLOSE)
    norm = right.get_images()[0].norm
    scale = f"{norm.vmin:.2f}–{norm.vmax:.2f}"
    assert any("fixed" in t.get_text() and scale in t.get_text() for t in right.texts)
    assert any("fixed" in ax.get_ylabel() and scale in ax.get_ylabel() for ax in fig.axes)


def contrast(a, b) -> float:
    la, lb = sorted((plotting._luminance(a), plotting._luminance(b)))
    return (lb + 0.05) / (la + 0.05)


def test_sweep_cell_text_is_readable_under_the_fixed_scale():
    held = [[0.55, 0.70, 0.80, 0.85], [0.90, 0.95, 0.99, 0.60]]
    _, _, right = sweep(held)
    image = right.get_images()[0]
    cells = [t for t in right.texts if "±" in t.get_text()]
    assert len(cells) == 8
    from matplotlib.colors import to_rgba

    for text in cells:
        mean = float(text.get_text().split("\n")[0])
        background = image.cmap(image.norm(mean))
        assert contrast(background, to_rgba(text.get_color())) >= 4.5, (mean, text.get_color())


def test_sweep_outlines_the_best_cell_and_its_ties():
    held = [[0.80, 0.84, 0.90, 0.85], [0.81, 0.895, 0.83, 0.82]]
    _, _, right = sweep(held, std=0.01)
    solid = [p for p in right.patches if p.get_linestyle() in ("-", "solid")]
    dashed = [p for p in right.patches if p.get_linestyle() == "--"]
    assert [(p.get_x(), p.get_y()) for p in solid] == [(1.5, -0.5)]  # lambd 0.3, first keep_prob
    assert [(p.get_x() + 0.45, p.get_y() + 0.45) for p in dashed] == [pytest.approx((1.0, 1.0))]
    assert any("1 of the other 7 cells" in t.get_text() for t in right.texts)


@pytest.mark.parametrize("train", [True, False])
def test_sweep_left_panel_has_one_line_per_keep_prob_and_one_train_line(train):
    rng = np.random.default_rng(1)
    held = 0.9 + 0.02 * rng.standard_normal((5, len(LAMBDS)))
    _, left, _ = sweep(held, keep_probs=["1", "0.95", "0.9", "0.8", "0.7"], train=train)
    visible = [ln for ln in left.get_lines() if ln.get_visible() and len(ln.get_xdata())]
    assert len(visible) <= 5 + 1
    assert len([ln for ln in visible if ln.get_linestyle() == "-"]) == 5
    assert len([ln for ln in visible if ln.get_linestyle() == "--"]) == (1 if train else 0)
    assert not left.containers  # no error bars


# ----------------------------------------------------------------------------- the public functions' PNGs


def test_every_figure_is_a_png():
    X, Y = data()
    assert plotting.compare_figure(panels(trace=True), X, Y, title=TITLE)[:8] == PNG
    assert plotting.compare_figure([panel("one", final=False)], X, Y)[:8] == PNG
    spread = np.full((2, 4), 0.01)
    assert plotting.sweep_figure(LAMBDS, ["1", "0.9"], np.asarray(CLOSE), spread, np.asarray(CLOSE), spread,
                                 title="t")[:8] == PNG
    assert plotting.sweep_figure(LAMBDS, ["1", "0.9"], np.asarray(CLOSE), spread)[:8] == PNG
    xx, yy = np.meshgrid(np.linspace(-1, 1, 20), np.linspace(-1, 1, 20))
    mean, std = 1 / (1 + np.exp(-3 * xx * yy)), 0.1 * np.abs(xx)
    assert plotting.uncertainty_figure(xx, yy, mean, std, X, Y, title="t")[:8] == PNG
