"""Training data: MNIST and EMNIST through torchvision, image folders, EMNIST packs
(npz) and pen strokes drawn as a canvas would, one module per kind of source.

Every image, whatever its source, goes through ``preprocess_image`` (MNIST is
already in that form, but one function means no train/serve skew). Results are
cached as npz files keyed by the source's files and the preprocessing's version,
so the second run is fast.
"""

from .folders import image_folder_files, load_image_folder
from .glyphs import DatasetUnavailable, GlyphData, gather, glyph_or_none, preprocess_arrays
from .packs import load_pack
from .pen import load_pen_strokes
from .splits import (
    DIGIT_LOOKALIKES,
    class_balanced_weights,
    drop_uppercase_digit_lookalikes,
    heldout_files,
    is_digit_lookalike,
    is_heldout,
    is_validation,
    split_heldout,
    split_validation,
)
from .torchvision_sets import load_emnist_letters, load_mnist

__all__ = [
    "DIGIT_LOOKALIKES",
    "DatasetUnavailable",
    "GlyphData",
    "class_balanced_weights",
    "drop_uppercase_digit_lookalikes",
    "gather",
    "glyph_or_none",
    "heldout_files",
    "image_folder_files",
    "is_digit_lookalike",
    "is_heldout",
    "is_validation",
    "load_emnist_letters",
    "load_image_folder",
    "load_mnist",
    "load_pack",
    "load_pen_strokes",
    "preprocess_arrays",
    "split_heldout",
    "split_validation",
]
