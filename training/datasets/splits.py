"""Which images train, which choose, which report: deterministic splits by name, the
digit look-alikes left out, and class-balanced sampling weights."""

import hashlib
from pathlib import Path

import numpy as np

from ..classes import CLASS_INDEX
from .folders import image_folder_files
from .glyphs import GlyphData

HELDOUT_SHARE = 0.15
# Of the training side, the share kept back to choose the digit prior on (pretraining).
VALIDATION_SHARE = 0.05

# Uppercase I, O, S and Z are written exactly like the digits 1, 0, 5 and 2. The
# product reads lowercase letters, so training on those uppercase images would
# only teach the model to call digits letters. Files are named <case>_<n>.png
# under their lowercase class.
DIGIT_LOOKALIKES = {"i", "o", "s", "z"}


def is_digit_lookalike(name: str) -> bool:
    """Whether the image at this path is an uppercase letter written like a digit."""
    path = Path(name)
    return path.name.startswith("upper_") and path.parent.name in DIGIT_LOOKALIKES


def heldout_files(root) -> list[tuple[Path, int]]:
    """The held-out images of an image folder that the product reads as labelled:
    every held-out file but uppercase digit look-alikes."""
    root = Path(root)
    return [
        (path, label)
        for path, label in image_folder_files(root)
        if is_heldout(name := str(path.relative_to(root))) and not is_digit_lookalike(name)
    ]


def drop_uppercase_digit_lookalikes(data: GlyphData) -> GlyphData:
    """Remove uppercase images of letters that look like digits (see DIGIT_LOOKALIKES)."""
    keep = np.array([not is_digit_lookalike(name) for name in data.names], dtype=bool)
    return data.subset(keep)


def is_heldout(name: str) -> bool:
    """Deterministic hold-out by path: the same file is always on the same side."""
    digest = hashlib.sha1(name.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < HELDOUT_SHARE


def split_heldout(data: GlyphData) -> tuple[GlyphData, GlyphData]:
    """(train, held-out) by hashing each image's path."""
    heldout = np.array([is_heldout(name) for name in data.names], dtype=bool)
    return data.subset(~heldout), data.subset(heldout)


def is_validation(name: str) -> bool:
    """Deterministic validation share of a training side, by another hash of the path."""
    digest = hashlib.sha1(f"validation:{name}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < VALIDATION_SHARE


def split_validation(data: GlyphData) -> tuple[GlyphData, GlyphData]:
    """(train, validation) of a training side by hashing each image's name.

    Validation images are never trained on, and are not the held-out ones that
    reports are made on, so what is chosen on them does not flatter the report.
    """
    validation = np.array([is_validation(name) for name in data.names], dtype=bool)
    return data.subset(~validation), data.subset(validation)


def class_balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Per-sample weights under which every present class is drawn equally often."""
    counts = np.bincount(labels, minlength=len(CLASS_INDEX)).astype(np.float64)
    weights = 1.0 / counts[labels]
    return weights / weights.sum()
