"""The web browser's inline SVG plots: well-formed, escaped, coloured at the ends of their scales, and the
demo report that embeds them."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from cliplens.serve.web.plots import (
    DIVERGING,
    SEQUENTIAL,
    colour,
    head_grid,
    heatmap_overlay,
    histogram,
    layer_bars,
)
from cliplens_client import Decomposition, LatentInfo, LayerContribution, TextAttribution, TopActivations

SVG = "{http://www.w3.org/2000/svg}"
HREF = "data:image/png;base64,AAAA"
EVIL = "<script>alert(1)</script>"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg" and root.get("role") == "img" and root.get("aria-label")
    return root


def cells(root: ET.Element) -> list[ET.Element]:
    return [rect for rect in root.iter(f"{SVG}rect") if rect.get("data-value") is not None]


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def test_colour_scales_hit_their_anchors() -> None:
    assert colour(0.0, 0.0, 1.0, diverging=False) == SEQUENTIAL[0]
    assert colour(1.0, 0.0, 1.0, diverging=False) == SEQUENTIAL[-1]
    assert colour(5.0, 0.0, 1.0, diverging=False) == SEQUENTIAL[-1]  # clipped
    assert colour(0.0, -2.0, 2.0, diverging=True) == "#ffffff"
    assert colour(-2.0, -2.0, 2.0, diverging=True) == DIVERGING[0]
    assert colour(2.0, -2.0, 2.0, diverging=True) == DIVERGING[-1]
    assert colour(-1.0, -1.0, 3.0, diverging=True) != DIVERGING[0]  # symmetric: -1 is a third of the way
    assert colour(0.0, 0.0, 0.0, diverging=True) == "#ffffff" and colour(1.0, 1.0, 1.0, diverging=False)


def test_sequential_heatmap_cells_colours_and_legend() -> None:
    grid = np.arange(49, dtype=np.float32).reshape(7, 7) / 100  # 0 .. 0.48, sequential from 0
    root = parse(heatmap_overlay(HREF, grid, title="activation"))
    image = root.find(f"{SVG}image")
    assert image is not None and image.get("href") == HREF and image.get("preserveAspectRatio") == "none"
    rects = cells(root)
    assert len(rects) == 49
    assert rects[0].get("fill") == SEQUENTIAL[0] and rects[-1].get("fill") == SEQUENTIAL[-1]
    assert (
        rects[1].get("y") == rects[0].get("y") and float(rects[7].get("y", 0)) > 0
    )  # row-major, row 0 on top
    assert [r.find(f"{SVG}title") is not None for r in rects].count(True) == 49
    labels = texts(root)
    assert "0" in labels and "+0.48" in labels and "activation" in labels


def test_diverging_heatmap_is_symmetric_about_white() -> None:
    grid = np.array([[-0.12, 0.0], [0.2, 0.34]])
    root = parse(heatmap_overlay(HREF, grid))
    fills = {float(r.get("data-value", "nan")): r.get("fill") for r in cells(root)}
    assert fills[0.0] == "#ffffff" and fills[0.34] == DIVERGING[-1]
    assert fills[-0.12] == colour(-0.12, -0.34, 0.34, diverging=True) != DIVERGING[0]
    assert {"-0.12", "+0.34", "0"} <= set(texts(root))
    sequential = parse(heatmap_overlay(HREF, np.abs(grid), diverging=False))
    assert {r.get("fill") for r in cells(sequential)} <= {
        colour(abs(v), 0, 0.34, diverging=False) for v in grid.flat
    }


@pytest.mark.parametrize("value", [0.0, 2.5, -1.0])
def test_constant_grid_renders_and_says_so(value: float) -> None:
    root = parse(heatmap_overlay(HREF, np.full((4, 4), value)))
    assert len(cells(root)) == 16
    assert any(t.startswith("all ") for t in texts(root))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_raise(bad: float) -> None:
    grid = np.zeros((3, 3))
    grid[1, 2] = bad
    with pytest.raises(ValueError, match="non-finite"):
        heatmap_overlay(HREF, grid)
    with pytest.raises(ValueError, match="non-finite"):
        head_grid(grid)
    with pytest.raises(ValueError, match="2-D"):
        heatmap_overlay(HREF, np.zeros(4))


def test_text_and_hrefs_are_escaped() -> None:
    outputs = [
        heatmap_overlay(f"x'><{EVIL}", np.eye(3), title=EVIL),
        histogram([0, 1, 2], [3, 4], title=EVIL),
        histogram([], [], title=EVIL),
    ]
    for svg in outputs:
        assert "<script" not in svg and "alert(1)" in svg
        root = parse(svg)
        assert not list(root.iter(f"{SVG}script"))
    assert EVIL in texts(parse(outputs[0]))  # escaped markup reads back as the plain title


def test_histogram_axes_and_validation() -> None:
    root = parse(histogram([0.0, 0.5, 1.0, 1.5, 2.0], [1, 9, 3, 0], title="acts"))
    bars = [r for r in root.iter(f"{SVG}rect")]
    assert len(bars) == 4 and float(bars[3].get("height", "1")) == 0
    labels = texts(root)
    assert {"0", "1", "2", "tallest bin: 9", "acts"} <= set(labels)
    assert "never fired" in histogram([0.0, 1.0], [], title="acts")
    assert "never fired" in histogram([0.0, 1.0], [0])
    with pytest.raises(ValueError, match="one edge more"):
        histogram([0.0, 1.0], [1, 2])
    with pytest.raises(ValueError, match="negative"):
        histogram([0.0, 1.0, 2.0], [1, -2])


def test_layer_bars_are_signed_about_a_zero_line() -> None:
    root = parse(layer_bars([(0, 0.5, -0.25), (1, 0.0, 1.0)]))
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("height") == "9"]
    assert len(bars) == 4
    (line,) = root.iter(f"{SVG}line")
    zero = float(line.get("x1", "nan"))
    assert float(bars[0].get("x", "nan")) == pytest.approx(zero)  # positive: starts at zero
    assert float(bars[1].get("x", "nan")) + float(bars[1].get("width", "nan")) == pytest.approx(
        zero, abs=0.01
    )
    assert {"L0", "L1", "+0.5", "-0.25", "+1", "0"} <= set(texts(root))
    assert "no layers" in layer_bars([])


def test_head_grid_cells_titles_and_colour_bar() -> None:
    heads = np.linspace(-0.3, 0.1, 12).reshape(3, 4)
    root = parse(head_grid(heads))
    rects = cells(root)
    assert len(rects) == 12
    titles = [r.findtext(f"{SVG}title") for r in rects]
    assert titles[0] == "L0 H0: -0.3000" and titles[-1] == "L2 H3: +0.1000"
    assert rects[0].get("fill") == DIVERGING[0] and rects[-1].get("fill") != DIVERGING[-1]
    labels = set(texts(root))
    assert {"L0", "L2", "H0", "H3", "-0.3", "+0.1"} <= labels


def test_demo_report_embeds_the_plots() -> None:
    from cliplens.demo.report import LatentPanel, render_report

    image = Image.new("RGB", (32, 32), "gray")
    layers = [LayerContribution(i, 0.1 * i, -0.05, np.linspace(-1, 1, 4, dtype=np.float32)) for i in range(3)]
    decomposition = Decomposition("demo", 0.3, 0.01, layers, np.linspace(-1, 2, 16).reshape(4, 4))
    attribution = TextAttribution(EVIL, 0.3, [], 0.0, 0.0)
    info = LatentInfo(
        sae_id="s", latent=7, labels=[], alignment=0.0, clarity=0.0, firing_rate=0.1,
        bin_edges=np.linspace(0, 1, 5, dtype=np.float32), counts=np.array([1, 2, 0, 5]), source="redis",
        degraded=False, label_counts={"cat": 3}, neighbours=[],
    )  # fmt: skip
    top = TopActivations(sae_id="s", latent=7, inputs=[], source="redis", degraded=False)
    report = render_report(image, "cat", [attribution], decomposition, [LatentPanel(info, top, [image])], "s")
    assert "<script" not in report and report.count("aria-label='activation histogram'") == 1
    assert report.count("data:image/png;base64,") >= 3
    assert "direct effects by attention head" in report and "contributions by layer" in report
    svgs = re.findall(r"<svg.*?</svg>", report, flags=re.DOTALL)
    assert len(svgs) == 4  # heatmap, layer bars, head grid, one histogram
    for svg in svgs:
        parse(svg)


def test_an_overlay_can_draw_a_symbol_of_the_page_instead_of_its_own_image_copy() -> None:
    svg = heatmap_overlay("#subject", np.ones((2, 2)), size=64)
    root = parse(svg)
    (use,) = [e for e in root.iter() if e.tag.endswith("use")]
    assert use.get("href") == "#subject" and use.get("width") == "64"
    assert not [e for e in root.iter() if e.tag.endswith("image")]
