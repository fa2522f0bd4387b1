"""Canvas simulation: unseen handwriting drawn as canvases send it (no Django).

Held-out writers' pen strokes are drawn at every pen width from 2 to 40 px on
canvases of 100-560 px, at random size and place, dark on light, light on dark
or on transparent paper; held-out images of the other sources are re-drawn the
same way from their skeletons. A *reader* turns a batch of such images into
class indices, so any model with its own preprocessing can be measured alike.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import nn, strokes
from .classes import CLASS_INDEX, NUM_CLASSES, SAME_SHAPE_PAIRS
from .datasets import GlyphData, glyph_or_none

PEN_WIDTHS = (2, 4, 8, 12, 18, 24, 30, 36, 40)
CASES = ("digit", "lower", "upper")
CHUNK = 256

Reader = Callable[[list[Image.Image]], np.ndarray]

# Each class's look-alike set as a bitmask over the classes, for the tolerant score.
SAME_SHAPE = np.eye(NUM_CLASSES, dtype=bool)
for _pair in SAME_SHAPE_PAIRS:
    _a, _b = (CLASS_INDEX[c] for c in _pair)
    SAME_SHAPE[_a, _b] = SAME_SHAPE[_b, _a] = True


@dataclass(frozen=True)
class Drawing:
    strokes: tuple[np.ndarray, ...]
    label: int
    case: str


def model_reader(model) -> Reader:
    """Our preprocessing and ``model`` as the web serves it; a blank drawing reads as -1."""
    served = nn.for_inference(model) if isinstance(model, nn.GlyphNet) else model

    def read(images: list[Image.Image]) -> np.ndarray:
        glyphs = [glyph_or_none(image) for image in images]
        readable = np.array([glyph is not None for glyph in glyphs], bool)
        predicted = np.full(len(images), -1, np.int64)
        if readable.any():
            kept = np.stack([glyph for glyph in glyphs if glyph is not None])
            predicted[readable] = nn.predict_proba(served, kept).argmax(1)
        return predicted

    return read


def pen_drawings(characters: Sequence[strokes.PenCharacter], *, per_case: int, seed: int):
    """Up to ``per_case`` characters of each case, picked at random."""
    rng = np.random.default_rng(seed)
    picked = []
    for case in CASES:
        members = [c for c in characters if c.case == case]
        for index in sorted(rng.permutation(len(members))[:per_case]):
            member = members[index]
            picked.append(Drawing(member.strokes, CLASS_INDEX[member.label], case))
    return picked


def held_out_writers(model, stroke_file, *, per_case: int, seed: int) -> dict | None:
    """``measure`` on a pen-stroke file's held-out writers; None when it has none."""
    characters = strokes.load_pen_characters(stroke_file, heldout=True)
    drawings = pen_drawings(characters, per_case=per_case, seed=seed)
    return measure(model_reader(model), drawings) if drawings else None


def skeleton_drawings(data: GlyphData, *, per_case: int, seed: int) -> list[Drawing]:
    """Glyphs re-drawn from their skeletons; the case comes from each image's name."""
    rng = np.random.default_rng(seed)
    cases = np.array([_case_of(name) for name in data.names])
    picked = []
    for case in sorted(set(cases.tolist())):
        members = np.flatnonzero(cases == case)
        for index in np.sort(rng.permutation(members)[:per_case]):
            lines = strokes.skeleton_strokes(data.glyphs[index])
            if lines:
                picked.append(Drawing(tuple(lines), int(data.labels[index]), case))
    return picked


def _case_of(name: str) -> str:
    stem = name.rsplit("/", 1)[-1]
    case = stem.split("_", 1)[0] if "_" in stem else ""
    return case if case in CASES or case == "anycase" else "digit"


def measure(
    reader: Reader, drawings: Sequence[Drawing], *, widths=PEN_WIDTHS, seed: int = 0
) -> dict:
    """Top-1 per pen width and case, exact and look-alike-tolerant, and balanced over classes.

    Every drawing is drawn at every width (each time on its own random canvas), so
    the widths are compared on the same handwriting.
    """
    labels = np.array([d.label for d in drawings], np.int64)
    cases = np.array([d.case for d in drawings])
    table = {}
    for width in widths:
        read = [reader(images) for images in drawn_at(drawings, width, seed=seed)]
        predicted = np.concatenate([np.empty(0, np.int64), *read])
        table[width] = _scores(predicted, labels, cases)
    return table


def drawn_at(drawings: Sequence[Drawing], width: float, *, seed: int = 0):
    """The drawings as canvases send them at one pen width, a chunk of images at a time.

    Each width has its own seeded canvases, so a second call gives the same images.
    """
    rng = np.random.default_rng([seed, int(width * 10)])
    for start in range(0, len(drawings), CHUNK):
        chunk = drawings[start : start + CHUNK]
        yield [strokes.draw(d.strokes, strokes.random_pen(rng, width=width)) for d in chunk]


def misread(predicted: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Which answers are wrong even with look-alike sets counted as one (-1, blank, is wrong)."""
    return (predicted != labels) & ~((predicted >= 0) & SAME_SHAPE[labels, predicted.clip(0)])


def _scores(predicted: np.ndarray, labels: np.ndarray, cases: np.ndarray) -> dict:
    exact = predicted == labels
    tolerant = ~misread(predicted, labels)
    row = {}
    for case in sorted(set(cases.tolist())):
        mask = cases == case
        row[case] = {
            "n": int(mask.sum()),
            "exact": float(exact[mask].mean()),
            "tolerant": float(tolerant[mask].mean()),
        }
    present = [c for c in range(NUM_CLASSES) if (labels == c).any()]
    row["balanced"] = {
        "n": len(labels),
        "exact": float(np.mean([exact[labels == c].mean() for c in present])),
        "tolerant": float(np.mean([tolerant[labels == c].mean() for c in present])),
    }
    return row


def format_table(table: dict, title: str) -> str:
    """The measured table as text: a row per pen width, exact / tolerant per case."""
    columns = [c for c in (*CASES, "anycase", "balanced") if any(c in r for r in table.values())]
    lines = [title, f"{'pen px':>6} " + " ".join(f"{c:>15}" for c in columns)]
    for width, row in table.items():
        cells = [
            f"{100 * row[c]['exact']:6.1f} / {100 * row[c]['tolerant']:5.1f}"
            if c in row
            else " " * 15
            for c in columns
        ]
        lines.append(f"{width:>6} " + " ".join(cells))
    counts = next(iter(table.values()))
    lines.append("n      " + " ".join(f"{counts[c]['n']:>15}" for c in columns if c in counts))
    return "\n".join(lines)


def summary(table: dict) -> dict:
    """Worst width per case (exact and tolerant) and the spread between best and worst."""
    result = {}
    for case in next(iter(table.values())):
        exact = [row[case]["exact"] for row in table.values()]
        tolerant = [row[case]["tolerant"] for row in table.values()]
        result[case] = {
            "worst_exact": min(exact),
            "worst_tolerant": min(tolerant),
            "spread_exact": max(exact) - min(exact),
        }
    return result
