"""Pen strokes drawn the way the drawing page's canvas draws them (no Django).

The page strokes each pen-down trace with ``lineCap = lineJoin = "round"`` and
fills a lone point as a disc, anti-aliased, dark ink on light paper. ``draw``
does the same with Pillow: it rasterises at ``supersample`` times the size and
averages back down, which is how a canvas's coverage anti-aliasing looks.
Used for the canvas-simulation evaluation and to make training images from the
UNIPEN pen strokes; ``skeleton_strokes`` turns any glyph image into strokes, so
image sources can be re-drawn the same way.
"""

import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage.morphology import skeletonize

SUPERSAMPLE = 4
# Whole writers are held out, never single characters, so a score on them is a
# score on people the model has never seen.
HELDOUT_WRITER_SHARE = 0.15
# Coordinates in a stroke file span this many units on the ink's longer side.
STROKE_UNITS = 1000.0


@dataclass(frozen=True)
class PenCharacter:
    label: str  # one of the 36 classes (uppercase folded to lowercase)
    case: str  # digit, lower or upper
    writer: str
    strokes: tuple[np.ndarray, ...]  # each (n, 2) float32, x right, y down


@dataclass(frozen=True)
class Pen:
    """How one drawing is made: canvas side, pen width, where the glyph goes, colours."""

    canvas: int
    width: float
    left: float
    top: float
    size: float  # the glyph's longer side on the canvas, in pixels
    light_on_dark: bool = False
    transparent: bool = False


def is_heldout_writer(writer: str) -> bool:
    digest = hashlib.sha1(f"writer:{writer}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < HELDOUT_WRITER_SHARE


def load_pen_characters(path, *, heldout: bool | None = None) -> list[PenCharacter]:
    """Characters of a UNIPEN-style ``.jsonl.gz`` file; ``heldout`` picks one side of the split."""
    characters = []
    with gzip.open(Path(path), "rt", encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            if heldout is not None and is_heldout_writer(row["writer"]) != heldout:
                continue
            strokes = tuple(
                np.asarray(stroke, np.float32).reshape(-1, 2) for stroke in row["strokes"] if stroke
            )
            if strokes:
                label = row["label"].lower()
                characters.append(PenCharacter(label, row["case"], row["writer"], strokes))
    return characters


def random_pen(rng: np.random.Generator, *, width: float, canvas: int | None = None) -> Pen:
    """A plausible drawing at this pen width: a canvas of 100-560 px, the glyph at random
    size and place.

    A glyph is at least four pen widths tall, as a person draws, so wide pens come
    on canvases big enough for them.
    """
    smallest = int(np.ceil(max(100, 4 * width / 0.9 + 2)))
    if canvas is None:
        canvas = int(rng.integers(smallest, max(smallest, 560) + 1))
    low = max(0.3 * canvas, 4 * width)
    size = float(rng.uniform(low, max(low, 0.9 * canvas)))
    room = canvas - size - width
    left = float(rng.uniform(width / 2, width / 2 + max(room, 0)))
    top = float(rng.uniform(width / 2, width / 2 + max(room, 0)))
    roll = rng.random()
    return Pen(canvas, width, left, top, size, light_on_dark=roll < 0.25, transparent=roll > 0.85)


def draw(strokes, pen: Pen, *, supersample: int = SUPERSAMPLE) -> Image.Image:
    """The canvas the page would send for these strokes (any units; fitted to ``pen``)."""
    points = np.concatenate(strokes)
    origin = points.min(axis=0)
    extent = float((points.max(axis=0) - origin).max()) or 1.0
    scale = pen.size / extent
    placed = [(stroke - origin) * scale + (pen.left, pen.top) for stroke in strokes]
    # Rasterise only the glyph's box, big, then average it down into the canvas.
    margin = pen.width / 2 + 2
    low = np.floor(np.concatenate(placed).min(axis=0) - margin).astype(int).clip(0, pen.canvas)
    high = np.ceil(np.concatenate(placed).max(axis=0) + margin).astype(int).clip(0, pen.canvas)
    box = (high - low).clip(1, None)
    big = Image.new("L", tuple(int(v) * supersample for v in box), 0)
    ink = ImageDraw.Draw(big)
    radius = pen.width * supersample / 2
    for stroke in placed:
        local = (stroke - low) * supersample
        keep = np.ones(len(local), bool)
        keep[1:] = np.any(np.abs(np.diff(local, axis=0)) > 0.25, axis=1)
        local = local[keep]
        if len(local) > 1:
            ink.line([tuple(p) for p in local], fill=255, width=round(2 * radius), joint="curve")
        for x, y in (local[0], local[-1]):
            ink.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    coverage = np.zeros((pen.canvas, pen.canvas), np.uint8)
    small = np.asarray(big.reduce(supersample))
    coverage[low[1] : low[1] + small.shape[0], low[0] : low[0] + small.shape[1]] = small
    if pen.transparent:
        rgba = np.zeros((pen.canvas, pen.canvas, 4), np.uint8)
        rgba[..., 3] = coverage
        return Image.fromarray(rgba, "RGBA")
    gray = coverage if pen.light_on_dark else 255 - coverage
    return Image.fromarray(gray, "L").convert("RGB")


def skeleton_strokes(glyph: np.ndarray, *, upscale: int = 3) -> list[np.ndarray]:
    """A glyph image (white ink on black) as strokes along its skeleton.

    Every pair of neighbouring skeleton pixels becomes a two-point stroke, so drawing
    them traces the skeleton with the pen, whatever its shape, without tracing paths.
    """
    image = Image.fromarray(glyph).resize(
        (glyph.shape[1] * upscale, glyph.shape[0] * upscale), Image.Resampling.BILINEAR
    )
    skeleton = skeletonize(np.asarray(image) > 100)
    ys, xs = np.nonzero(skeleton)
    if not len(xs):
        return []
    at = {(y, x) for y, x in zip(ys.tolist(), xs.tolist(), strict=True)}
    strokes = []
    for y, x in at:
        linked = False
        for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):
            if (y + dy, x + dx) in at:
                strokes.append(np.array([[x, y], [x + dx, y + dy]], np.float32))
                linked = True
        if not linked:
            strokes.append(np.array([[x, y]], np.float32))
    return strokes
