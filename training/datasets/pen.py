"""Pen-stroke characters, drawn as training images the way a canvas would draw them."""

import numpy as np

from .. import strokes as pen_strokes
from ..classes import CLASS_INDEX
from .glyphs import (
    GlyphData,
    cached,
    file_key,
    gather,
    glyph_or_none,
    parallel,
    source_file,
)

# Pen widths and canvases that pen-stroke training images are drawn at: the whole
# range a canvas sends, on canvases small enough to draw quickly.
STROKE_WIDTHS = (2.0, 40.0)
STROKE_CANVASES = (100, 280)


def _draw_pen_character(job) -> np.ndarray | None:
    character_strokes, width, canvas, seed = job
    rng = np.random.default_rng(seed)
    pen = pen_strokes.random_pen(rng, width=width, canvas=canvas)
    return glyph_or_none(pen_strokes.draw(character_strokes, pen, supersample=2))


def load_pen_strokes(
    path, *, heldout: bool = False, copies: int = 1, seed: int = 0, cache_dir=None, jobs: int = 1
) -> GlyphData:
    """Pen-stroke characters (one side of the writer split) drawn as training images.

    Each character is drawn ``copies`` times, each at a random pen width, canvas,
    size and place, so the network sees every writer at every pen width.
    """
    path = source_file(path)

    def build() -> GlyphData:
        characters = pen_strokes.load_pen_characters(path, heldout=heldout)
        rng = np.random.default_rng(seed)
        jobs_list, labels, names = [], [], []
        for copy in range(copies):
            for index, character in enumerate(characters):
                width = float(rng.uniform(*STROKE_WIDTHS))
                smallest = max(STROKE_CANVASES[0], int(4 * width / 0.9) + 3)
                canvas = int(rng.integers(smallest, max(smallest, STROKE_CANVASES[1]) + 1))
                jobs_list.append((character.strokes, width, canvas, int(rng.integers(2**31))))
                labels.append(CLASS_INDEX[character.label])
                names.append(f"{path.stem}/{character.label}/{character.case}_{index}_{copy}")
        return gather(parallel(_draw_pen_character, jobs_list, jobs), labels, names)

    side = "heldout" if heldout else "train"
    return cached(cache_dir, f"strokes:{file_key(path)}:{side}:{copies}:{seed}", build)
