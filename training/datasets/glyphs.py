"""GlyphData, and what every source shares: preprocessing, parallel work and the cache."""

import hashlib
import multiprocessing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..preprocessing import PREPROCESSING_VERSION, BlankImageError, preprocess_image

OFFLINE_HELP = (
    "Downloading needs the internet. Offline, pass data that is already here: "
    "--mnist-root DIR (a torchvision MNIST root holding MNIST/raw/) and/or "
    "--data-dir DIR (image folders laid out as <label>/<file>.png), "
    "e.g. --mnist-root ../shared/data/mnist --data-dir ../shared/data/handwriting"
)


class DatasetUnavailable(RuntimeError):
    """A dataset could be neither found on disk nor downloaded."""


@dataclass
class GlyphData:
    glyphs: np.ndarray  # (N, 28, 28) uint8
    labels: np.ndarray  # (N,) int64 class indices
    names: list[str] = field(default_factory=list)  # where each came from

    def __len__(self):
        return len(self.labels)

    def subset(self, mask_or_index) -> "GlyphData":
        index = (
            np.flatnonzero(mask_or_index)
            if np.asarray(mask_or_index).dtype == bool
            else (np.asarray(mask_or_index))
        )
        return GlyphData(self.glyphs[index], self.labels[index], [self.names[i] for i in index])

    def limit(self, count: int | None, seed: int = 0) -> "GlyphData":
        if count is None or count >= len(self):
            return self
        pick = np.sort(np.random.default_rng(seed).choice(len(self), count, replace=False))
        return self.subset(pick)

    @staticmethod
    def concat(parts: list["GlyphData"]) -> "GlyphData":
        parts = [p for p in parts if len(p)]
        if not parts:
            return GlyphData(np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64), [])
        return GlyphData(
            np.concatenate([p.glyphs for p in parts]),
            np.concatenate([p.labels for p in parts]),
            [name for p in parts for name in p.names],
        )


def cached(cache_dir: Path | None, key: str, build) -> GlyphData:
    """``build()``, or what it built before under ``key`` and this preprocessing version."""
    key = f"{PREPROCESSING_VERSION}:{key}"
    path = (
        Path(cache_dir) / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"
        if cache_dir
        else None
    )
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as archive:
            return GlyphData(archive["glyphs"], archive["labels"], list(archive["names"]))
    data = build()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.npz")
        np.savez(partial, glyphs=data.glyphs, labels=data.labels, names=np.array(data.names))
        partial.replace(path)
    return data


def source_file(path) -> Path:
    """``path`` as a Path, or DatasetUnavailable saying how to pass data when it is no file."""
    path = Path(path)
    if not path.is_file():
        raise DatasetUnavailable(f"{path} is not a file. {OFFLINE_HELP}")
    return path


def file_key(path: Path) -> str:
    """A cache key part that changes when the file does."""
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def glyph_or_none(image: Image.Image) -> np.ndarray | None:
    """The preprocessed glyph, or None when the image holds no character."""
    try:
        return preprocess_image(image)
    except BlankImageError:
        return None


def preprocess_array(image: np.ndarray) -> np.ndarray | None:
    return glyph_or_none(Image.fromarray(image))


def parallel(function, items, jobs: int) -> list:
    """``function`` over ``items`` in ``jobs`` processes (in order); one job runs in place."""
    if jobs <= 1 or len(items) < 2000:
        return [function(item) for item in items]
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        return pool.map(function, items, chunksize=512)


def gather(glyphs: list, labels, names: list[str]) -> GlyphData:
    """GlyphData of the glyphs that are not None, with their labels and names."""
    kept = [index for index, glyph in enumerate(glyphs) if glyph is not None]
    if not kept:
        return GlyphData.concat([])
    return GlyphData(
        np.stack([glyphs[i] for i in kept]),
        np.asarray([labels[i] for i in kept], np.int64),
        [names[i] for i in kept],
    )


def preprocess_arrays(
    images: np.ndarray, labels: np.ndarray, prefix: str, jobs: int = 1
) -> GlyphData:
    """Run raw uint8 images (white on black) through the one preprocessing function."""
    glyphs = parallel(preprocess_array, list(images), jobs)
    return gather(glyphs, labels, [f"{prefix}/{index}" for index in range(len(images))])
