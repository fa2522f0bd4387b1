"""Synthetic training glyphs rendered from fonts, heavily augmented (no Django).

Handwriting-style fonts add letter shapes that the real sources have few of.
Each rendering is rotated, sheared, stretched and placed at random, then goes
through the one preprocessing function like every other image.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .classes import CLASS_INDEX, CLASSES
from .datasets import DIGIT_LOOKALIKES, GlyphData, gather, glyph_or_none

FONT_SUFFIXES = {".ttf", ".otf", ".ttc"}
CANVAS = 96
# Uppercase forms are rendered too (filed under their lowercase class), except those
# written like digits, as for the real sources.
UPPERCASE = tuple(c.upper() for c in CLASSES[10:] if c not in DIGIT_LOOKALIKES)


class FontsUnavailable(RuntimeError):
    """A fonts folder is missing or holds no font."""


def font_files(folder) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FontsUnavailable(f"{folder} is not a folder of fonts")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in FONT_SUFFIXES)
    if not files:
        raise FontsUnavailable(f"{folder} holds no .ttf or .otf font")
    return files


def render_character(font_path_or_none, character: str, rng: np.random.Generator) -> Image.Image:
    """One augmented rendering: dark text on light paper, at random size, slant and place.

    ``font_path_or_none`` is a font file, or None for Pillow's built-in scalable font.
    """
    size = int(rng.integers(40, 64))
    font = (
        ImageFont.load_default(size=size)
        if font_path_or_none is None
        else ImageFont.truetype(str(font_path_or_none), size=size)
    )
    image = Image.new("L", (CANVAS * 2, CANVAS * 2), 0)
    ImageDraw.Draw(image).text((CANVAS, CANVAS), character, fill=255, font=font, anchor="mm")
    shear = rng.uniform(-0.35, 0.35)
    stretch = rng.uniform(0.8, 1.2)
    image = image.transform(
        image.size,
        Image.Transform.AFFINE,
        (stretch, shear, -shear * CANVAS + (1 - stretch) * CANVAS, 0, 1, 0),
        resample=Image.Resampling.BILINEAR,
    )
    image = image.rotate(float(rng.uniform(-12, 12)), resample=Image.Resampling.BILINEAR)
    return Image.fromarray(255 - np.asarray(image))


def render_font(font_path_or_none, *, name: str, copies: int, seed: int) -> GlyphData:
    """Every class (and uppercase form) from one font, ``copies`` augmented renderings each."""
    rng = np.random.default_rng(seed)
    glyphs, labels, names = [], [], []
    characters = [(c, "digit" if c.isdigit() else "lower") for c in CLASSES]
    characters += [(c, "upper") for c in UPPERCASE]
    for character, case in characters:
        for copy in range(copies):
            # None where the font has no such character.
            glyphs.append(glyph_or_none(render_character(font_path_or_none, character, rng)))
            labels.append(CLASS_INDEX[character.lower()])
            names.append(f"{name}/{character.lower()}/{case}_{copy}")
    return gather(glyphs, labels, names)


def render_font_folder(folder, *, copies: int, seed: int) -> GlyphData:
    """``render_font`` over every font in a folder."""
    parts = [
        render_font(path, name=f"fonts/{path.stem}", copies=copies, seed=seed + index)
        for index, path in enumerate(font_files(folder))
    ]
    return GlyphData.concat(parts)
