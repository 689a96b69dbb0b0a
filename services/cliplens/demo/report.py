"""The demo's HTML report: the sample image with its patch heatmap, the attribution table, the score's
decomposition by layer and head, and each top latent's histogram and most activating images. Images are
embedded and the plots are inline SVG (``cliplens.serve.web.plots``), so the file stands alone."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from cliplens.serve.web.plots import head_grid, heatmap_overlay, histogram, layer_bars
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


def _latent_histogram(info: LatentInfo) -> str:
    """The latent's activation histogram (its ``aria-label`` is 'activation histogram')."""
    return histogram(info.bin_edges.tolist(), info.counts.tolist(), title="activation histogram")


def _head_grid(decomposition: Decomposition) -> str:
    """The layers x heads grid, or a note when the server sent no per-head terms or ragged ones."""
    heads = [layer.heads for layer in sorted(decomposition.layers, key=lambda layer: layer.layer)]
    if not heads or len({h.size for h in heads}) != 1 or heads[0].size == 0:
        return "<p>(no per-head terms in the decomposition)</p>"
    return head_grid(np.stack(heads))


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
    heat_html = (
        heatmap_overlay(
            png_data_uri(image),
            heat,
            size=192,
            title="direct effect per patch",
            diverging=True,
        )
        if heat is not None
        else "<p>(the server sent no patch heatmap)</p>"
    )
    latent_html = "".join(
        f"<h3>latent #{p.info.latent}: {esc(', '.join(lbl.text for lbl in p.info.labels[:3]) or 'unlabelled')}</h3>"
        f"<p>firing rate {p.info.firing_rate:.3f} (statistics served from {esc(p.info.source)}); fires on "
        + esc(
            ", ".join(f"{name} {n}" for name, n in sorted(p.info.label_counts.items(), key=lambda x: -x[1]))
        )
        + f"</p>{_latent_histogram(p.info)}<p>top inputs served from {esc(p.top.source)}"
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
<img src="{png_data_uri(image.resize((192, 192), Image.Resampling.NEAREST))}" style="vertical-align:top">
{heat_html}
<h2>Latent attribution (act x grad), per prompt</h2>
<table><tr><th>prompt</th><th>score</th><th>error share</th><th>top latents (attribution)</th></tr>{rows}</table>
<h2>Decomposition of the score by layer (direct effects)</h2>
<p>score {decomposition.score:+.4f}; embedding term {decomposition.embedding_contribution:+.4f}</p>
{layer_bars([(layer.layer, layer.attention, layer.mlp) for layer in decomposition.layers])}
<table><tr><th>layer</th><th>attention</th><th>MLP</th></tr>{layers}</table>
<h3>Attention heads (direct effect of each head)</h3>{_head_grid(decomposition)}
<h2>Top latents and their most activating images</h2>{latent_html}
</body></html>"""
