"""Server-side SVG plots for inline HTML: heatmaps over images, histograms, per-layer bars and head grids.

Pure functions of numpy arrays and numbers; every text in the markup goes through ``html.escape``, so
the result is safe to insert with Jinja2's ``|safe``. Attributes use single quotes; no external resources.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import numpy as np
import numpy.typing as npt

SEQUENTIAL: tuple[str, ...] = (
    "#440154",
    "#46327e",
    "#365c8d",
    "#277f8e",
    "#1fa187",
    "#4ac16d",
    "#a0da39",
    "#fde725",
)
DIVERGING: tuple[str, ...] = ("#2166ac", "#67a9cf", "#d1e5f0", "#ffffff", "#fddbc7", "#ef8a62", "#b2182b")
ATTENTION, MLP = "#4c72b0", "#dd8452"
FONT = "font-family:sans-serif;font-size:11px"
LEGEND = 50  # height of the colour bar block below a heatmap or head grid
STEPS = 32  # rects in a colour bar
Scale = tuple[float, float, bool]  # low, high, diverging


def colour(value: float, low: float, high: float, *, diverging: bool) -> str:
    """Hex colour of ``value`` on a viridis-like map over [low, high], or blue-white-red symmetric around 0."""
    if diverging:
        reach = max(abs(low), abs(high))
        t, table = (0.5 + 0.5 * value / reach if reach > 0 else 0.5), _DIVERGING_RGB
    else:
        t, table = ((value - low) / (high - low) if high > low else 0.0), _SEQUENTIAL_RGB
    position = min(max(t, 0.0), 1.0) * (len(table) - 1)
    i = min(int(position), len(table) - 2)
    (r0, g0, b0), (r1, g1, b1), mix = table[i], table[i + 1], position - i
    return f"#{round(r0 + (r1 - r0) * mix):02x}{round(g0 + (g1 - g0) * mix):02x}{round(b0 + (b1 - b0) * mix):02x}"


def _rgb(table: tuple[str, ...]) -> tuple[tuple[int, int, int], ...]:
    return tuple((int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)) for c in table)


_SEQUENTIAL_RGB, _DIVERGING_RGB = _rgb(SEQUENTIAL), _rgb(DIVERGING)


def _paint(value: float, scale: Scale) -> str:
    return colour(value, scale[0], scale[1], diverging=scale[2])


def _number(value: float) -> str:
    """Three significant digits with a sign, and a bare ``0`` for zero."""
    return f"{value:+.3g}" if value else "0"


def _text(x: float, y: float, text: str, anchor: str = "start") -> str:
    return f"<text x='{x:.1f}' y='{y:.1f}' text-anchor='{anchor}'>{escape(text)}</text>"


def _svg(width: float, height: float, label: str, body: str) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width:.0f}' height='{height:.0f}' "
        f"viewBox='0 0 {width:.0f} {height:.0f}' role='img' aria-label='{escape(label)}' "
        f"style='{FONT}'>{body}</svg>"
    )


def _finite(values: npt.ArrayLike, what: str, ndim: int) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != ndim or array.size == 0:
        raise ValueError(f"{what} must be a non-empty {ndim}-D array, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} has {int((~np.isfinite(array)).sum())} non-finite values (NaN or inf)")
    return array


def _scale(values: npt.NDArray[np.float64], diverging: bool | None) -> Scale:
    """The colour scale (low, high, diverging): diverging when None and any value is negative."""
    low, high = float(values.min()), float(values.max())
    if diverging is None:
        diverging = low < 0
    if diverging:
        reach = max(abs(low), abs(high))
        return -reach, reach, True
    return min(0.0, low), high, False


def _colour_bar(y: float, width: float, values: npt.NDArray[np.float64], scale: Scale, caption: str) -> str:
    """A bar of the colours from the smallest to the largest value, its ends labelled, and a caption."""
    low, high = float(values.min()), float(values.max())
    if low == high:
        swatch = f"<rect x='0' y='{y:.1f}' width='{width:.1f}' height='12' fill='{_paint(low, scale)}'/>"
        labels = _text(width / 2, y + 26, f"all {_number(low)}", "middle")
    else:
        step = width / STEPS
        swatch = "".join(
            f"<rect x='{i * step:.2f}' y='{y:.1f}' width='{step + 0.3:.2f}' height='12' "
            f"fill='{_paint(low + (high - low) * i / (STEPS - 1), scale)}'/>"
            for i in range(STEPS)
        )
        zero = width * -low / (high - low)
        tick = f"<line x1='{zero:.1f}' x2='{zero:.1f}' y1='{y - 2:.1f}' y2='{y + 14:.1f}' stroke='#000'/>"
        labels = _text(0, y + 26, _number(low)) + _text(width, y + 26, _number(high), "end")
        if low < 0 < high:  # mark zero; label it where it does not run into the end labels
            labels += tick + (_text(zero, y + 26, "0", "middle") if 28 < zero < width - 28 else "")
    return swatch + labels + (_text(width / 2, y + 40, caption, "middle") if caption else "")


def heatmap_overlay(
    image_href: str,
    grid: npt.ArrayLike,
    *,
    size: int = 224,
    title: str = "",
    diverging: bool | None = None,
    opacity: float = 0.55,
) -> str:
    """The image (a URL, a data: URI, or ``#id`` of a ``<symbol>`` in the page, drawn once however many
    overlays use it) under a translucent cell per grid value, and a labelled colour bar.

    Diverging (blue-white-red) when ``diverging`` is True, or None and the grid has negative values."""
    values = _finite(grid, "heatmap grid", 2)
    scale = _scale(values, diverging)
    rows, columns = values.shape
    w, h = size / columns, size / rows
    cells = "".join(
        f"<rect x='{c * w:.2f}' y='{r * h:.2f}' width='{w:.2f}' height='{h:.2f}' "
        f"fill='{_paint(v, scale)}' data-value='{v:.4g}'><title>{v:+.4g}</title></rect>"
        for r, row in enumerate(values.tolist())
        for c, v in enumerate(row)
    )
    image = (
        f"<use href='{escape(image_href)}' x='0' y='0' width='{size}' height='{size}'/>"
        if image_href.startswith("#")
        else f"<image href='{escape(image_href)}' x='0' y='0' width='{size}' height='{size}' "
        "preserveAspectRatio='none' style='image-rendering:pixelated'/>"
    )
    body = (
        image
        + f"<g shape-rendering='crispEdges' fill-opacity='{min(max(opacity, 0.0), 1.0):.2f}'>{cells}</g>"
    )
    body += _colour_bar(size + 6, size, values, scale, title)
    return _svg(size, size + LEGEND, title or "heatmap", body)


def histogram(
    bin_edges: Sequence[float], counts: Sequence[int], *, width: int = 360, height: int = 120, title: str = ""
) -> str:
    """Bars of ``counts`` over ``bin_edges`` (one more edge than counts), with the edge range and the tallest count."""
    label, tallies = title or "histogram", [int(n) for n in counts]
    if tallies:
        edges = _finite(bin_edges, "bin edges", 1)
        if edges.size != len(tallies) + 1:
            raise ValueError(
                f"histogram needs one edge more than counts: {edges.size} edges, {len(tallies)} counts"
            )
        if min(tallies) < 0:
            raise ValueError("histogram counts must not be negative")
    if not any(tallies):
        return _svg(width, 24, label, _text(0, 16, f"{title}{': ' if title else ''}the latent never fired"))
    top, bar, plot = max(tallies), width / len(tallies), height - 34
    bars = "".join(
        f"<rect x='{i * bar:.2f}' y='{16 + plot * (1 - n / top):.2f}' width='{max(bar - 1, 0.5):.2f}' "
        f"height='{plot * n / top:.2f}' fill='{ATTENTION}'><title>{edges[i]:.3g} to {edges[i + 1]:.3g}: {n}</title></rect>"
        for i, n in enumerate(tallies)
    )
    middle = len(tallies) // 2
    axis = f"<line x1='0' x2='{width}' y1='{16 + plot:.1f}' y2='{16 + plot:.1f}' stroke='#333'/>"
    axis += _text(0, height - 4, f"{edges[0]:.3g}") + _text(width, height - 4, f"{edges[-1]:.3g}", "end")
    axis += _text(middle * bar, height - 4, f"{edges[middle]:.3g}", "middle")
    header = _text(0, 11, title) + _text(width, 11, f"tallest bin: {top}", "end")
    return _svg(width, height, label, header + bars + axis)


def layer_bars(layers: Sequence[tuple[int, float, float]], *, width: int = 480) -> str:
    """Per layer (index, attention, mlp): two signed horizontal bars about a zero line, with their values."""
    if not layers:
        return _svg(width, 24, "layer contributions", _text(0, 16, "no layers"))
    values = _finite([(a, m) for _, a, m in layers], "layer contributions", 2)
    low, high = min(0.0, float(values.min())), max(0.0, float(values.max()))
    left, span = 84.0, width - 84.0 - 48.0
    unit = span / (high - low) if high > low else 0.0
    zero = left + unit * -low
    legend = f"<rect x='0' y='4' width='10' height='10' fill='{ATTENTION}'/>" + _text(14, 13, "attention")
    legend += f"<rect x='80' y='4' width='10' height='10' fill='{MLP}'/>" + _text(94, 13, "MLP")
    rows = []
    for row, ((layer, _, _), pair) in enumerate(zip(layers, values, strict=True)):
        y = 22 + row * 22
        rows.append(_text(0, y + 14, f"L{layer}"))
        for k, (v, fill) in enumerate(zip(pair, (ATTENTION, MLP), strict=True)):
            end, top = zero + unit * v, y + 1 + k * 10
            rows.append(
                f"<rect x='{min(zero, end):.2f}' y='{top}' width='{abs(end - zero):.2f}' height='9' fill='{fill}'/>"
            )
            at, anchor = (max(zero, end) + 3, "start") if v >= 0 else (min(zero, end) - 3, "end")
            rows.append(_text(at, top + 8, _number(v), anchor))
    height = 26 + len(layers) * 22
    rule = f"<line x1='{zero:.1f}' x2='{zero:.1f}' y1='20' y2='{height - 4}' stroke='#333'/>"
    return _svg(width, height, "contributions by layer", legend + "".join(rows) + rule)


def head_grid(heads: npt.ArrayLike, *, cell: int = 22) -> str:
    """A layers x heads grid of per-head contributions on the diverging scale, with a labelled colour bar."""
    values = _finite(heads, "head contributions", 2)
    scale = _scale(values, True)
    rows, columns = values.shape
    left, top = 30, 16
    width = max(left + columns * cell, 180)
    cells = "".join(
        f"<rect x='{left + h * cell}' y='{top + r * cell}' width='{cell - 1}' height='{cell - 1}' "
        f"fill='{_paint(v, scale)}' data-value='{v:.4g}'><title>L{r} H{h}: {v:+.4f}</title></rect>"
        for r, row in enumerate(values.tolist())
        for h, v in enumerate(row)
    )
    labels = "".join(_text(left - 4, top + (r + 0.7) * cell, f"L{r}", "end") for r in range(rows))
    labels += "".join(_text(left + (h + 0.5) * cell, top - 4, f"H{h}", "middle") for h in range(columns))
    bar = _colour_bar(top + rows * cell + 6, width, values, scale, "direct effect per head")
    return _svg(
        width, top + rows * cell + 6 + LEGEND, "direct effects by attention head", cells + labels + bar
    )
