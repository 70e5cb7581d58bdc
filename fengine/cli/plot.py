"""Drawing a run's curves to a PNG with matplotlib (the optional ``plot`` extra)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from fengine.cli.scalars import Curve

INSTALL_HINT = "pip install 'fengine[plot]'"


class PlotUnavailableError(ImportError):
    """matplotlib is not installed."""


def plotting_available() -> bool:
    """Whether matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def draw(curves: Sequence[Curve], out: str, title: str = "") -> str:
    """Draw each curve in its own panel (up to three per row) and save the figure as a PNG.

    The figure is built without ``pyplot`` (no global figure state, no display needed). A
    learning-rate panel uses a logarithmic axis when its values span more than a factor of 20.

    Args:
        curves: the curves, one panel each, in order.
        out: the PNG to write (its folder is created).
        title: the figure's title.

    Returns:
        ``out``.

    Raises:
        PlotUnavailableError: matplotlib is not installed (the message says how to install it).
        ValueError: no curves were given.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailableError(f"plotting needs matplotlib: {INSTALL_HINT}") from None
    if not curves:
        raise ValueError("draw: no curves to plot")
    columns = min(3, len(curves))
    rows = math.ceil(len(curves) / columns)
    figure = Figure(figsize=(4.6 * columns, 3.4 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, curve in zip(axes, curves):
        marker = "o" if len(curve.steps) <= 30 else None
        ax.plot(curve.steps, curve.values, marker=marker, markersize=3, linewidth=1.5)
        ax.set_title(curve.name)
        ax.set_xlabel(curve.unit)
        ax.grid(alpha=0.3)
        positive = [v for v in curve.values if v > 0]
        if (
            curve.name.endswith("lr")
            and positive
            and len(positive) == len(curve.values)
            and max(positive) > 20 * min(positive)
        ):
            ax.set_yscale("log")
        if len(curve.values) > 1 and curve.unit == "epoch":
            ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in axes[len(curves) :]:
        ax.set_visible(False)
    if title:
        figure.suptitle(title)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    figure.savefig(out, dpi=110)
    return out
