"""Held-out real handwriting for the online-learning benches (read from ../shared/data)."""

from pathlib import Path

import numpy as np
from PIL import Image

from training import datasets
from training.preprocessing import BlankImageError, preprocess_image

HANDWRITING = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "handwriting"


def heldout_handwriting(eval_glyphs: np.ndarray) -> list[tuple[Path, int, np.ndarray]]:
    """(path, label, glyph) of held-out images outside the fixed evaluation set.

    Uppercase I, O, S and Z are left out: the product reads lowercase letters, and
    those are drawn exactly like 1, 0, 5 and 2 (see datasets.DIGIT_LOOKALIKES).
    """
    in_eval = {glyph.tobytes() for glyph in eval_glyphs}
    rows = []
    for path, label in datasets.heldout_files(HANDWRITING):
        with Image.open(path) as image:
            try:
                glyph = preprocess_image(image)
            except BlankImageError:
                continue
        if glyph.tobytes() not in in_eval:
            rows.append((path, label, glyph))
    return rows
