"""Any image of one handwritten character -> the model's 28x28 input (no Django).

ONE function, ``preprocess_image``, serves pretraining on image folders, every
prediction, and every fine-tune, so what the model learns from and what it is
asked about are made the same way (train/serve skew is the classic bug here).
It follows how MNIST was made: crop to the ink, scale the longer side to 20 px
keeping the aspect ratio, and centre by centre of mass in a 28x28 field, white
ink on black; in between, every stroke is brought to one canonical width, so a
2 px line and a 40 px brush read alike.
"""

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.morphology import skeletonize

GLYPH_SIZE = 28
# Bumped whenever the glyphs change, so cached preprocessed datasets are rebuilt.
PREPROCESSING_VERSION = "stroke-width-3"
BOX_SIZE = 20
# Strokes are normalised with the glyph's longer side at this many pixels: enough
# to resolve a skeleton, small enough to stay cheap.
STROKE_SIZE = 64
# The canonical pen: radius at STROKE_SIZE, so about 2.6 px wide in the 20 px box,
# MNIST's typical stroke.
STROKE_RADIUS = 4
# Share of the glyph's peak ink that counts as stroke when taking the skeleton.
STROKE_LEVEL = 0.5
# A pen this many pixels (at STROKE_SIZE) wider than the canonical one is fat
# enough to fill bowls that the skeleton alone would lose.
FAT_PEN_MARGIN = 1.0
# Ink this many times deeper than the pen's half-width is a filled bowl, not a stroke.
FILLED_DEPTH = 1.3
# Ink spanning fewer pen widths than this is a blot, and a blot smaller than this share
# of the image is a tap: a 40 px pen's dot is a seventh of a 280 px canvas.
DOT_EXTENT = 1.4
DOT_SHARE = 0.16
# Ink contrast (0-255 above the background) below which a pixel is paper.
INK_THRESHOLD = 40
# Connected pieces of ink holding less than this share of all ink are specks.
SPECK_SHARE = 0.02
MIN_INK_PIXELS = 4
# Less ink than this share of the image is a stray mark, not a character.
NEAR_BLANK_SHARE = 0.0002


def glyphs_from_bytes(data: bytes) -> np.ndarray:
    """Stored glyphs (``glyph.tobytes()``, one or many joined) back as (N, 28, 28) uint8;
    raises ValueError for bytes that are not whole glyphs."""
    data = bytes(data)
    if len(data) % (GLYPH_SIZE * GLYPH_SIZE):
        raise ValueError(f"{len(data)} bytes are not whole {GLYPH_SIZE}x{GLYPH_SIZE} glyphs")
    return np.frombuffer(data, np.uint8).reshape(-1, GLYPH_SIZE, GLYPH_SIZE)


def glyph_from_bytes(data: bytes) -> np.ndarray:
    """One stored glyph back as (28, 28) uint8; raises ValueError for anything else."""
    glyphs = glyphs_from_bytes(data)
    if len(glyphs) != 1:
        raise ValueError(f"{len(glyphs)} glyphs where one was stored")
    return glyphs[0]


class BlankImageError(ValueError):
    """The image holds no character: no ink, or only specks of noise."""


def _gray_planes(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None, float | None]:
    """What each pixel's gray level is made of: luminance, opacity (None: opaque), scale.

    Transparency is composited on white paper; 16- and 32-bit images are scaled to 0-255.
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        luminance = np.asarray(image, dtype=np.float32)
        return luminance, None, 255.0 / max(float(luminance.max()), 255.0)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        if image.mode != "RGBA":
            image = image.convert("RGBA")
        return np.asarray(image.convert("L")), np.asarray(image.getchannel("A")), None
    return np.asarray(image.convert("L")), None, None


def _gray(planes, region) -> np.ndarray:
    """Grayscale float array of one region of the planes."""
    luminance, opacity, scale = planes
    gray = luminance[region].astype(np.float32)
    if scale is not None:
        gray = gray * scale
    if opacity is None:
        return gray
    # Compositing on white commutes with the (linear) luminance conversion.
    alpha = opacity[region].astype(np.float32) / 255.0
    return gray * alpha + 255.0 * (1.0 - alpha)


def _box(image: np.ndarray) -> tuple[slice, slice]:
    """The rows and columns of the smallest box holding every nonzero pixel (there is one)."""
    rows = np.flatnonzero(image.any(axis=1))
    cols = np.flatnonzero(image.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _ink_region(planes) -> np.ndarray:
    """Ink strength 0-255 over the background (whatever the polarity) where there can be ink.

    The paper is judged from the image's border. A pixel whose plane values equal
    those of a border pixel with exactly the paper's gray holds no ink, so the float
    work is done only inside the box of the other pixels: on a canvas, the drawing's
    box. Later steps crop to the ink, so the glyph is the same as from the whole image.
    """
    height, width = planes[0].shape
    edges = [(0, slice(None)), (height - 1, slice(None))]
    edges += [(slice(None), 0), (slice(None), width - 1)]
    border = np.concatenate([_gray(planes, edge) for edge in edges])
    background = float(np.median(border))
    # Paper texture and JPEG noise: subtract the border's own spread.
    spread = float(np.median(np.abs(border - background)))
    region = (slice(None), slice(None))
    paper = np.flatnonzero(border == background)
    if paper.size:
        inked = np.zeros((height, width), bool)
        for plane in planes[:2]:
            if plane is not None:
                inked |= plane != np.concatenate([plane[edge] for edge in edges])[paper[0]]
        if not inked.any():
            raise BlankImageError("no ink found, or only a few specks")
        region = _box(inked)
    gray = _gray(planes, region)
    ink = background - gray if background >= 128 else gray - background
    return np.clip(ink - 2.0 * spread, 0.0, None)


def _drop_specks(ink: np.ndarray, pixels: int) -> np.ndarray:
    """The ink's box without specks; ``pixels`` is the whole image's size (for "near blank")."""
    mask = ink > INK_THRESHOLD
    if mask.sum() < max(MIN_INK_PIXELS, NEAR_BLANK_SHARE * pixels):
        raise BlankImageError("no ink found, or only a few specks")
    # Label only the box around all ink (with room for the halo): same pieces, less work.
    rows, cols = _box(mask)
    box = (
        slice(max(rows.start - 2, 0), rows.stop + 2),
        slice(max(cols.start - 2, 0), cols.stop + 2),
    )
    ink, mask = ink[box], mask[box]
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count > 1:
        mass = ndimage.sum_labels(ink, labels, index=np.arange(1, count + 1))
        keep = np.flatnonzero(mass >= SPECK_SHARE * mass.sum()) + 1
        kept = np.isin(labels, keep)
        # Keep the anti-aliased halo around kept strokes, drop everything else.
        ink = np.where(ndimage.binary_dilation(kept, iterations=2), ink, 0.0)
        mask = kept
    return ink[_box(mask)]


def normalise_stroke_width(ink: np.ndarray, *, image_side: int) -> np.ndarray:
    """The glyph's skeleton re-inked at one canonical width, longer side ``STROKE_SIZE`` px.

    A canvas can be drawn with any pen: thin lines would fade to faint traces in the
    20 px box and fat ones fill the counters of a, e, o. The skeleton keeps the
    shape and its holes; re-inking it gives every glyph, from any source, one width.
    Where a fat pen has filled a bowl outright, the ink is kept, thinned by as much
    as the pen is wider than the canonical one.
    """
    height, width = ink.shape
    inked_share = max(height, width) / image_side
    factor = max(height, width) // STROKE_SIZE
    if factor > 1:
        ink = np.asarray(Image.fromarray(ink, mode="F").reduce(factor))
        height, width = ink.shape
    scale = STROKE_SIZE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    ink = np.asarray(Image.fromarray(ink, mode="F").resize(size, Image.Resampling.BILINEAR))
    pad = STROKE_RADIUS + 2
    ink = np.pad(ink, pad)
    peak = float(np.percentile(ink[ink > 0], 95)) if (ink > 0).any() else 0.0
    if peak <= 0:
        raise BlankImageError("no ink left after scaling")
    mask = ink >= STROKE_LEVEL * peak
    depth = ndimage.distance_transform_edt(mask)
    # A tap is a small round blot, no longer than the pen is wide: scaled up, its
    # skeleton would be a cross. (A large one is a filled character: a fat "o".)
    rows, cols = _box(mask)
    round_blot = max(rows.stop - rows.start, cols.stop - cols.start) < DOT_EXTENT * 2 * depth.max()
    if round_blot and inked_share < DOT_SHARE:
        raise BlankImageError("only a dot, not a character")
    skeleton = skeletonize(mask)
    if not skeleton.any():
        skeleton = mask
    # A wide pen leaves a shorter skeleton inside the same STROKE_SIZE box; the pen
    # shrinks with it, so the re-inked glyph keeps its proportions at every width
    # (else a wide pen's "0" comes out rounder and bolder, and reads as "o").
    rows, cols = _box(skeleton)
    extent = max(rows.stop - rows.start, cols.stop - cols.start)
    radius = STROKE_RADIUS * min(1.0, extent / STROKE_SIZE)
    distance = ndimage.distance_transform_edt(~skeleton)
    # Coverage of a round pen of that radius centred on the skeleton.
    glyph = np.clip(radius + 0.5 - distance, 0.0, 1.0)
    # A fat pen fills the bowls of p, g, 8, whose skeleton is then a stub: the ink
    # thinned by the pen's excess width keeps them (on even strokes it is the re-inking).
    pen = float(np.median(depth[skeleton]))
    if pen <= radius + FAT_PEN_MARGIN:
        return glyph.astype(np.float32)
    deep = depth >= FILLED_DEPTH * pen
    if deep.any():
        filled = ndimage.distance_transform_edt(~deep) <= FILLED_DEPTH * pen + 1
        thinned = np.clip(depth - (pen - radius) + 0.5, 0.0, 1.0)
        glyph = np.maximum(glyph, np.where(filled, thinned, 0.0))
    return glyph.astype(np.float32)


def preprocess_image(image: Image.Image) -> np.ndarray:
    """Return the 28x28 uint8 glyph (white ink on black) the model sees; also the preview.

    Raises BlankImageError when the image holds no ink beyond specks of noise.
    """
    if min(image.size) < 2:
        raise BlankImageError("image too small")
    ink = _drop_specks(_ink_region(_gray_planes(image)), image.width * image.height)
    glyph = normalise_stroke_width(ink, image_side=max(image.size))
    glyph = glyph[_box(glyph)]

    height, width = glyph.shape
    scale = BOX_SIZE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    boxed = np.asarray(
        Image.fromarray(glyph.astype(np.float32), mode="F").resize(size, Image.Resampling.LANCZOS)
    )
    boxed = np.clip(boxed, 0.0, None)
    peak = float(np.percentile(boxed[boxed > 0], 95)) if (boxed > 0).any() else 0.0
    if peak <= 0:
        raise BlankImageError("no ink left after scaling")
    boxed = np.clip(boxed / peak, 0.0, 1.0)

    field = np.zeros((GLYPH_SIZE, GLYPH_SIZE), np.float32)
    top = (GLYPH_SIZE - boxed.shape[0]) // 2
    left = (GLYPH_SIZE - boxed.shape[1]) // 2
    field[top : top + boxed.shape[0], left : left + boxed.shape[1]] = boxed
    centre_y, centre_x = ndimage.center_of_mass(field)
    shift_y = round(GLYPH_SIZE / 2 - 0.5 - centre_y)
    shift_x = round(GLYPH_SIZE / 2 - 0.5 - centre_x)
    # Shift by whole pixels (as MNIST did), never pushing ink out of the field.
    shift_y = int(np.clip(shift_y, -top, GLYPH_SIZE - top - boxed.shape[0]))
    shift_x = int(np.clip(shift_x, -left, GLYPH_SIZE - left - boxed.shape[1]))
    field = np.roll(field, (shift_y, shift_x), axis=(0, 1))
    return np.round(field * 255.0).astype(np.uint8)
