"""EMNIST-style packs: one npz of images, labels and cases."""

import numpy as np

from ..classes import CLASS_INDEX
from .glyphs import (
    GlyphData,
    cached,
    file_key,
    gather,
    parallel,
    preprocess_array,
    source_file,
)


def load_pack(path, *, cache_dir=None, jobs: int = 1) -> GlyphData:
    """An EMNIST-style npz (``images`` white on black, ``labels``, ``cases``).

    Each image is named ``<pack>/<label>/<case>_<index>``, as image folders name
    theirs, so the held-out split, the case and the look-alike rules read the same.
    """
    path = source_file(path)

    def build() -> GlyphData:
        with np.load(path, allow_pickle=False) as pack:
            images, labels, cases = pack["images"], pack["labels"], pack["cases"]
        names = [
            f"{path.stem}/{label}/{case}_{index}"
            for index, (label, case) in enumerate(zip(labels, cases, strict=True))
        ]
        indices = [CLASS_INDEX[str(label)] for label in labels]
        return gather(parallel(preprocess_array, list(images), jobs), indices, names)

    return cached(cache_dir, f"pack:{file_key(path)}", build)
