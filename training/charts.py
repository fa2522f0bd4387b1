"""PNG charts for the admin, drawn with matplotlib's Agg canvas.

``Figure`` objects are used directly rather than pyplot: no global figure state
shared between request threads, and no GUI backend is ever chosen.
"""

import base64
import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from training.classes import CLASSES


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def confusion_matrix_png(confusion: list[list[int]], *, title: str) -> bytes:
    """The 36x36 matrix, true class down, predicted across, on a log colour scale."""
    matrix = np.asarray(confusion, dtype=np.float64)
    figure = Figure(figsize=(9, 8.5), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    # log1p: the diagonal is hundreds of times larger than the confusions worth seeing.
    image = axes.imshow(np.log1p(matrix), cmap="viridis", interpolation="nearest")
    ticks = np.arange(len(CLASSES))
    axes.set_xticks(ticks, CLASSES, fontsize=7)
    axes.set_yticks(ticks, CLASSES, fontsize=7)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    colorbar = figure.colorbar(image, ax=axes, shrink=0.8)
    colorbar.set_label("log(1 + count)")
    return _png(figure)


def accuracy_over_versions_png(rows: list[dict], *, measure: str) -> bytes:
    """Overall, digit and letter accuracy per version number, all by one ``measure`` (the
    axis says which); rows: number, active, overall, digits, letters."""
    figure = Figure(figsize=(8, 3.6), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    numbers = [row["number"] for row in rows]
    for key, style in (("overall", "o-"), ("digits", "s--"), ("letters", "^--")):
        values = [np.nan if row[key] is None else 100 * row[key] for row in rows]
        axes.plot(numbers, values, style, label=key)
    for row in rows:
        if row["active"]:
            axes.axvline(row["number"], color="grey", linewidth=0.8, linestyle=":")
    axes.set_xlabel("model version")
    axes.set_ylabel(f"{measure} (%)")
    if numbers:
        axes.set_xticks(numbers)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    return _png(figure)
