"""The demo's HTML report: the sample image with its heatmap, the attribution table, and collages of
each top latent's most activating images. Images are embedded, so the file stands alone."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from cliplens_client import Decomposition, LatentInfo, TextAttribution, TopActivations

TILE = 64


@dataclass
class LatentPanel:
    info: LatentInfo
    top: TopActivations
    images: list[Image.Image]


def png_data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def heatmap_overlay(image: Image.Image, heatmap: np.ndarray, size: int = 192) -> Image.Image:
    """Blend a red heatmap (normalised to [0, 1]) over the upscaled image."""
    base = image.convert("RGB").resize((size, size), Image.Resampling.NEAREST)
    span = float(heatmap.max() - heatmap.min()) or 1.0
    scaled = ((heatmap - heatmap.min()) / span * 255).astype(np.uint8)
    mask = Image.fromarray(scaled).resize((size, size), Image.Resampling.BILINEAR)
    red = Image.new("RGB", (size, size), (255, 0, 0))
    return Image.composite(red, base, mask.point(lambda v: int(v * 0.6)))


def histogram_svg(info: LatentInfo, width: int = 320, height: int = 80) -> str:
    """The latent's activation histogram as an inline SVG bar chart, with its range below."""
    counts = info.counts.tolist()
    if not counts:
        return "<p>(the latent never fires)</p>"
    top, bar = max(counts) or 1, width / len(counts)
    bars = "".join(
        f"<rect x='{i * bar:.1f}' y='{height - h:.1f}' width='{max(bar - 1, 1):.1f}' height='{h:.1f}' fill='#c33'/>"
        for i, count in enumerate(counts)
        for h in [height * count / top]
    )
    low, high = float(info.bin_edges[0]), float(info.bin_edges[-1])
    return (
        f"<svg width='{width}' height='{height}' role='img' aria-label='activation histogram'>{bars}</svg>"
        f"<br><small>activations {low:.2f} to {high:.2f}; tallest bin {top} inputs</small>"
    )


def collage(images: Sequence[Image.Image], columns: int = 8) -> Image.Image:
    rows = max(1, -(-len(images) // columns))
    sheet = Image.new("RGB", (columns * TILE, rows * TILE), "white")
    for i, image in enumerate(images):
        sheet.paste(
            image.resize((TILE, TILE), Image.Resampling.NEAREST),
            ((i % columns) * TILE, (i // columns) * TILE),
        )
    return sheet


def render_report(
    image: Image.Image,
    label: str,
    attributions: list[TextAttribution],
    decomposition: Decomposition,
    panels: list[LatentPanel],
    sae_id: str,
) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(a.text)}</td><td>{a.score:+.4f}</td><td>{a.error_share:+.3f}</td><td>"
        + ", ".join(f"#{lat.latent} ({lat.attribution:+.4f})" for lat in a.latents[:5])
        + "</td></tr>"
        for a in attributions
    )
    layers = "".join(
        f"<tr><td>{layer.layer}</td><td>{layer.attention:+.4f}</td><td>{layer.mlp:+.4f}</td></tr>"
        for layer in decomposition.layers
    )
    heat = decomposition.patch_heatmap
    heat_img = heatmap_overlay(image, np.asarray(heat)) if heat is not None else image.resize((192, 192))
    latent_html = "".join(
        f"<h3>latent #{p.info.latent}: {esc(', '.join(lbl.text for lbl in p.info.labels[:3]) or 'unlabelled')}</h3>"
        f"<p>firing rate {p.info.firing_rate:.3f} (statistics served from {esc(p.info.source)}); fires on "
        + esc(
            ", ".join(f"{name} {n}" for name, n in sorted(p.info.label_counts.items(), key=lambda x: -x[1]))
        )
        + f"</p>{histogram_svg(p.info)}<p>top inputs served from {esc(p.top.source)}"
        f"{' (degraded)' if p.top.degraded else ''}: "
        + esc(", ".join(f"{i.label or '?'} {i.activation:.2f}" for i in p.top.inputs[:8]))
        + f"</p><img src='{png_data_uri(collage(p.images))}'>"
        for p in panels
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>cliplens demo report</title>
<style>body{{font-family:sans-serif;max-width:980px;margin:2em auto}}td,th{{padding:2px 8px;border-bottom:1px solid #ddd}}
img{{image-rendering:pixelated}}</style></head><body>
<h1>cliplens demo report</h1>
<p>Model: <b>demo</b>, a CLIP trained by the cliplens project on CIFAR-10 (not OpenAI or LAION weights).
SAE: <b>{esc(sae_id)}</b>. Every figure below came back over gRPC from the Ray Serve app.</p>
<h2>Input (true class: {esc(label)}) and its patch heatmap for "{esc(attributions[0].text)}"</h2>
<img src="{png_data_uri(image.resize((192, 192), Image.Resampling.NEAREST))}">
<img src="{png_data_uri(heat_img)}">
<h2>Latent attribution (act x grad), per prompt</h2>
<table><tr><th>prompt</th><th>score</th><th>error share</th><th>top latents (attribution)</th></tr>{rows}</table>
<h2>Decomposition of the score by layer (direct effects)</h2>
<p>score {decomposition.score:+.4f}; embedding term {decomposition.embedding_contribution:+.4f}</p>
<table><tr><th>layer</th><th>attention</th><th>MLP</th></tr>{layers}</table>
<h2>Top latents and their most activating images</h2>{latent_html}
</body></html>"""
