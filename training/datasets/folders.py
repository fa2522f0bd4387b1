"""Image folders: ``<root>/.../<label>/<file>``, one image per character."""

import hashlib
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from ..classes import CLASS_INDEX
from .glyphs import (
    OFFLINE_HELP,
    DatasetUnavailable,
    GlyphData,
    cached,
    gather,
    glyph_or_none,
    parallel,
)

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def image_folder_files(root) -> list[tuple[Path, int]]:
    """Every image under ``root`` whose parent folder is one of the 36 labels."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetUnavailable(f"{root} is not a folder. {OFFLINE_HELP}")
    return [
        (path, CLASS_INDEX[path.parent.name])
        for path in sorted(root.rglob("*"))
        if path.suffix.lower() in IMAGE_SUFFIXES and path.parent.name in CLASS_INDEX
    ]


def _preprocess_file(path: Path) -> np.ndarray | None:
    try:
        with Image.open(path) as image:
            return glyph_or_none(image)
    except OSError:
        return None


def load_image_folder(root, *, cache_dir=None, jobs: int = 1) -> GlyphData:
    """Images laid out as ``<root>/.../<label>/<file>``, named by their path under root."""
    root = Path(root)
    files = image_folder_files(root)
    fingerprint = hashlib.sha1()
    for path, _ in files:
        stat = path.stat()
        fingerprint.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    key = f"folder:{root.resolve()}:{fingerprint.hexdigest()}"

    def build() -> GlyphData:
        glyphs = parallel(_preprocess_file, [path for path, _ in files], jobs)
        skipped = sum(glyph is None for glyph in glyphs)
        if skipped:
            logger.warning("%s: skipped %d blank or unreadable images", root, skipped)
        names = [str(path.relative_to(root)) for path, _ in files]
        return gather(glyphs, [label for _, label in files], names)

    return cached(cache_dir, key, build)
