"""Image edits for the failure-mode probes: written text (typographic attack) and object/background
composites (spurious correlation). All work on in-memory PIL images and keep the input's size."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from cliplens.core.errors import InvalidInputError

# Small images are upscaled to at least this side before drawing, so glyphs are rendered crisply.
RENDER_SIDE = 224
TEXT_HEIGHT = 0.22  # font size as a fraction of the image height
TEXT_WIDTH = 0.92  # the text (with its label box) spans at most this fraction of the width
GREY = (124, 116, 104)  # the CLIP mean colour, used as a neutral fill


def render_text(image: Image.Image, text: str, *, box_only: bool = False) -> Image.Image:
    """``image`` with ``text`` written in black on a white label box across its lower half.

    ``box_only`` draws the same box without the text: the control that separates the effect of the
    words from that of covering part of the image.
    """
    width, height = image.size
    factor = max(1.0, RENDER_SIDE / min(width, height))
    canvas = image.convert("RGB").resize(
        (round(width * factor), round(height * factor)), Image.Resampling.BICUBIC
    )
    draw = ImageDraw.Draw(canvas)
    size = max(8, round(canvas.height * TEXT_HEIGHT))
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    if right - left > TEXT_WIDTH * canvas.width:
        size = max(8, int(size * TEXT_WIDTH * canvas.width / (right - left)))
        font = ImageFont.load_default(size=size)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = (canvas.width - (right - left)) / 2 - left
    y = canvas.height * 0.62 - (bottom - top) / 2 - top
    pad = size * 0.15
    draw.rectangle((x + left - pad, y + top - pad, x + right + pad, y + bottom + pad), fill="white")
    if not box_only:
        draw.text((x, y), text, fill="black", font=font)
    return canvas.resize((width, height), Image.Resampling.LANCZOS) if factor > 1 else canvas


def paste_centre(
    foreground: Image.Image, background: Image.Image | None, fraction: float = 0.5
) -> Image.Image:
    """The centre square of ``foreground`` (side ``fraction`` of the shorter side) pasted onto
    ``background`` resized to the same size; ``None`` gives a neutral grey border instead."""
    if not 0 < fraction <= 1:
        raise InvalidInputError(f"the centre fraction must be in (0, 1], got {fraction}")
    width, height = foreground.size
    side = max(1, round(min(width, height) * fraction))
    left, top = (width - side) // 2, (height - side) // 2
    canvas = (
        background.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
        if background is not None
        else Image.new("RGB", (width, height), GREY)
    )
    canvas.paste(foreground.convert("RGB").crop((left, top, left + side, top + side)), (left, top))
    return canvas
