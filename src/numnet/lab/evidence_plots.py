"""Figures of a run's training internals and of its final model (``run["internals"]`` and
``run["final_model"]``, see ``numnet.lab.training.internals``), in the style of
:mod:`numnet.lab.plots` (Agg canvas, no pyplot, matplotlib imported only to draw).

- :func:`internals_figure`: four small panels against the update number (the snapshots
  before and after the first step, updates 0 and 1, then every evaluation) -- dead fraction
  per ReLU layer; update/weight ratio per layer on a log scale with the usual 1e-3 dashed;
  logit scale (mean max |z|, log scale) with the mean top-class probability on a second axis;
  train and test loss with ln 10 (a uniform guess) dotted. Given two implementations (numnet
  and PyTorch, ``numnet compare``) it draws the second dashed on top of the first.
- :func:`confusion_figure`: the 10x10 test confusion matrix and the most confidently wrong
  test images.
- :func:`cnn_figure`: a convolutional model's first-layer filters and the feature maps of one
  test digit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from numnet.core.names import NUM_CLASSES
from numnet.lab.plots import TEST_COLOR, TRAIN_COLOR, new_figure
from numnet.lab.training.internals import USUAL_UPDATE_RATIO, decode_image

INTERNALS_SIZE = (15, 3.1)
CONFUSION_SIZE = (11, 4.6)
CNN_SIZE = (12, 4.4)
LAYER_COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#d62728", "#8c564b", "#e377c2")
STYLES = ({"linestyle": "-", "linewidth": 2.2, "alpha": 0.75, "marker": "o", "markersize": 2.5},
          {"linestyle": "--", "linewidth": 1.2, "alpha": 1.0, "marker": "x", "markersize": 3})


def _series(xs: list[int], ys: list[float | None], positive: bool = False) -> tuple[list, list]:
    """The points of ``ys`` that exist (finite and, for a log axis, > 0); none when the run
    did not record the series (``ys`` empty)."""
    if not ys:
        return [], []
    pts = [(x, y) for x, y in zip(xs, ys, strict=True)
           if y is not None and math.isfinite(y) and (y > 0 or not positive)]
    return [p[0] for p in pts], [p[1] for p in pts]


def _with_start(internals: dict[str, Any]) -> dict[str, Any]:
    """The internals with the start snapshots (updates 0 and 1) put before the evaluations."""
    start = internals.get("start") or {}
    if not start.get("update"):
        return internals
    out: dict[str, Any] = {"update": start["update"] + internals.get("update", [])}
    for key, value in internals.items():
        if isinstance(value, dict) and key != "start":
            out[key] = {n: start.get(key, {}).get(n, [None] * len(start["update"])) + v
                        for n, v in value.items()}
        elif isinstance(value, list) and key != "update":
            out[key] = start.get(key, [None] * len(start["update"])) + value
    return out


def internals_figure(runs: list[tuple[str, dict[str, Any]]], title: str = "") -> Any:
    """The internals panel of one run; ``runs`` is ``[(label, run dict), ...]`` -- one
    implementation, or two to overlay (the second dashed)."""
    from matplotlib.ticker import PercentFormatter

    fig = new_figure(INTERNALS_SIZE)
    ax_dead, ax_ratio, ax_logit, ax_loss = fig.subplots(1, 4, sharex=True)
    ax_top = ax_logit.twinx()
    zero_layers: set[str] = set()
    for (label, run), style in zip(runs, STYLES, strict=False):
        i = _with_start(run.get("internals") or {})
        xs = i.get("update", [])
        tag = f" ({label})" if len(runs) > 1 else ""
        for c, (name, ys) in enumerate(i.get("dead_fraction", {}).items()):
            ax_dead.plot(*_series(xs, ys), color=LAYER_COLORS[c % 6], label=name + tag,
                         **style)
        for c, (name, ys) in enumerate(i.get("update_ratio", {}).items()):
            px, py = _series(xs, ys, positive=True)
            if len(px) < sum(1 for y in ys if y is not None):
                zero_layers.add(name)
            ax_ratio.plot(px, py, color=LAYER_COLORS[c % 6], label=name + tag, **style)
        ax_logit.plot(*_series(xs, i.get("logit_absmax", []), positive=True), color="#444",
                      label="mean max |z|" + tag, **style)
        ax_top.plot(*_series(xs, i.get("top_prob", [])), color="#c2185b",
                    label="top-class prob." + tag, **style)
        # the curves' losses, on the evaluations' updates (samples / batch size)
        b = run["spec"]["batch_size"]
        ux = [s // b for s in run.get("samples", [])]
        ax_loss.plot(ux, run.get("train_loss", []), color=TRAIN_COLOR, label="train" + tag,
                     **style)
        ax_loss.plot(ux, run.get("test_loss", []), color=TEST_COLOR, label="test" + tag,
                     **style)
    ax_dead.set_title("Dead ReLU units (probe)", fontsize=10)
    ax_dead.set_ylim(-0.03, 1.03)
    ax_dead.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax_ratio.set_title("Update / weight ratio  lr·|g|/|w|", fontsize=10)
    ax_ratio.set_yscale("log")
    _plain_log(ax_ratio)
    ax_ratio.axhline(USUAL_UPDATE_RATIO, color="grey", linestyle=":", linewidth=1.2)
    ax_ratio.text(0.01, USUAL_UPDATE_RATIO, f" usual {USUAL_UPDATE_RATIO:g}", color="grey",
                  fontsize=8, va="bottom", transform=ax_ratio.get_yaxis_transform())
    if zero_layers:
        ax_ratio.text(0.5, 0.97, "ratio 0 (no gradient) not drawn: " + ", ".join(
            sorted(zero_layers)), ha="center", va="top", fontsize=7.5, color="#c62828",
            transform=ax_ratio.transAxes)
    ax_logit.set_title("Logit scale / confidence (probe)", fontsize=10)
    if any(len(line.get_ydata()) for line in ax_logit.lines):  # a log axis needs a point
        ax_logit.set_yscale("log")
        _plain_log(ax_logit)
    ax_logit.set_ylabel("mean max |z|", fontsize=9)
    ax_top.set_ylim(0, 1.02)
    ax_top.axhline(1 / NUM_CLASSES, color="#c2185b", linestyle=":", linewidth=0.8)
    ax_top.set_ylabel("mean top-class probability", fontsize=9, color="#c2185b")
    ax_loss.set_title("Loss (mean cross-entropy)", fontsize=10)
    ax_loss.axhline(math.log(NUM_CLASSES), color="grey", linestyle=":", linewidth=1.2)
    ax_loss.text(0.99, math.log(NUM_CLASSES), "ln 10 ", color="grey", fontsize=8, ha="right",
                 va="bottom", transform=ax_loss.get_yaxis_transform())
    for ax in (ax_dead, ax_ratio, ax_logit, ax_loss):
        ax.set_xlabel("update", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=8)
    ax_top.tick_params(labelsize=8)
    for ax, loc in ((ax_dead, "best"), (ax_ratio, "lower right"), (ax_loss, "best")):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc=loc)
    handles = ax_logit.get_legend_handles_labels()[0] + ax_top.get_legend_handles_labels()[0]
    if handles:
        ax_logit.legend(handles=handles, fontsize=7, loc="center right")
    if title:
        fig.suptitle(title, fontsize=12)
    fig.subplots_adjust(left=0.04, right=0.97, top=0.82 if title else 0.9, bottom=0.16,
                        wspace=0.38)
    return fig


def _plain_log(ax: Any) -> None:
    """Log-axis tick labels as plain numbers ("0.001"): the PNGs are drawn without mathtext
    (``numnet.lab.render.png_bytes``), so matplotlib's "10^k" labels would show as markup."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def confusion_figure(final: dict[str, Any], title: str = "") -> Any:
    """The confusion matrix (rows: true class, columns: predicted; counts, off-diagonal cells
    shaded by count) and up to 16 most confidently wrong test images ("true→predicted p")."""
    fig = new_figure(CONFUSION_SIZE)
    grid = fig.add_gridspec(4, 9, width_ratios=[1.25] * 4 + [0.15] + [0.62] * 4)
    ax = fig.add_subplot(grid[:, 0:4])
    c = np.asarray(final["confusion"])
    off = c.astype(float).copy()
    np.fill_diagonal(off, 0)
    top = max(1.0, off.max())
    ax.imshow(off, cmap="Reds", vmin=0, vmax=top)
    for t in range(c.shape[0]):
        for p in range(c.shape[1]):
            if c[t, p]:
                color = "#1b5e20" if t == p else ("white" if off[t, p] > top / 2 else "black")
                ax.text(p, t, str(c[t, p]), ha="center", va="center", fontsize=7, color=color,
                        fontweight="bold" if t == p else "normal")
    ax.set_xticks(range(c.shape[1]))
    ax.set_yticks(range(c.shape[0]))
    ax.set_xlabel("predicted class", fontsize=9)
    ax.set_ylabel("true class", fontsize=9)
    acc = np.trace(c) / max(1, c.sum())
    after = f", after update {final['update']}" if "update" in final else ""
    ax.set_title(f"Final model{after}: test confusion matrix\n({c.sum()} images, accuracy "
                 f"{acc:.4f})", fontsize=10)
    ax.tick_params(labelsize=8)
    confused = final.get("confused", [])[:16]
    for k in range(16):
        sub = fig.add_subplot(grid[k // 4, 5 + k % 4])
        sub.set_xticks([])
        sub.set_yticks([])
        if k >= len(confused):
            sub.axis("off")
            continue
        e = confused[k]
        sub.imshow(decode_image(e["image"]), cmap="gray_r", vmin=0, vmax=1)
        sub.set_title(f"{e['label']}→{e['predicted']} {e['prob']:.2f}", fontsize=7.5,
                      color="#c62828", pad=2)
    fig.text(0.78, 0.955, "Most confidently wrong (true→predicted, prob.)", ha="center",
             fontsize=9.5)
    if title:
        fig.suptitle(title, fontsize=11, x=0.3)
    fig.subplots_adjust(left=0.05, right=0.99, top=0.88, bottom=0.1, wspace=0.25, hspace=0.45)
    return fig


def cnn_figure(final: dict[str, Any], title: str = "") -> Any:
    """Row 1: the first convolution's filters (3x3, one per output channel; blue < 0 < red).
    Row 2: one test digit and the first convolution's output maps; row 3: the second's."""
    filters = decode_image(final["filters"]["weights"])  # (C, kh, kw)
    maps = {name: decode_image(d) for name, d in final.get("feature_maps", {}).items()}
    width = max([filters.shape[0]] + [m.shape[0] for m in maps.values()]) + 1
    rows = 1 + len(maps)
    fig = new_figure(CNN_SIZE)
    axes = fig.subplots(rows, width, squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.axis("off")
    lim = float(np.abs(filters).max()) or 1.0
    layer = final["filters"]["layer"]
    axes[0][0].text(0.5, 0.5, f"{layer}\nfilters", ha="center", va="center", fontsize=9,
                    transform=axes[0][0].transAxes)
    for k, f in enumerate(filters):
        axes[0][k + 1].imshow(f, cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[0][k + 1].set_title(f"filter {k}", fontsize=8)
    digit = final.get("digit")
    for r, (name, m) in enumerate(maps.items(), start=1):
        if r == 1 and digit is not None:
            axes[r][0].imshow(decode_image(digit["image"]), cmap="gray_r", vmin=0, vmax=1)
            axes[r][0].set_title(f"test #{digit['index']} ({digit['label']})", fontsize=8)
        else:
            axes[r][0].text(0.5, 0.5, f"{name}\noutputs", ha="center", va="center",
                            fontsize=9, transform=axes[r][0].transAxes)
        for k, a in enumerate(m):
            axes[r][k + 1].imshow(a, cmap="viridis")
            axes[r][k + 1].set_title(f"{name} ch {k}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.86 if title else 0.93, bottom=0.02,
                        wspace=0.12, hspace=0.35)
    return fig
