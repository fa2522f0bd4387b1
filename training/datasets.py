"""Training data: MNIST and EMNIST letters through torchvision, and local image folders.

Every image, whatever its source, goes through ``preprocess_image`` (MNIST is
already in that form, but one function means no train/serve skew). Results are
cached as npz files keyed by the source's files, so the second run is fast.
"""

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .classes import CLASS_INDEX
from .preprocessing import BlankImageError, preprocess_image

logger = logging.getLogger(__name__)

HELDOUT_SHARE = 0.15
# Of the training side, the share kept back to choose the digit prior on (pretraining).
VALIDATION_SHARE = 0.05
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
EMNIST_LETTER_OFFSET = CLASS_INDEX["a"] - 1  # EMNIST letters are labelled 1 (a) to 26 (z)

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


def _cached(cache_dir: Path | None, key: str, build) -> GlyphData:
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


def preprocess_arrays(images: np.ndarray, labels: np.ndarray, prefix: str) -> GlyphData:
    """Run raw uint8 images (white on black) through the one preprocessing function."""
    glyphs, kept, names = [], [], []
    for index, image in enumerate(images):
        try:
            glyphs.append(preprocess_image(Image.fromarray(image)))
        except BlankImageError:
            continue
        kept.append(labels[index])
        names.append(f"{prefix}/{index}")
    return GlyphData(np.stack(glyphs), np.asarray(kept, np.int64), names)


def _torchvision(factory, description: str):
    try:
        return factory()
    except (
        RuntimeError,
        OSError,
    ) as error:  # torchvision raises both when it cannot fetch
        raise DatasetUnavailable(
            f"{description} is not available: {error}. {OFFLINE_HELP}"
        ) from None


def load_mnist(root, *, train: bool, download: bool = False, cache_dir=None) -> GlyphData:
    """MNIST digits from a torchvision root (downloaded there when asked)."""
    from torchvision.datasets import MNIST

    dataset = _torchvision(
        lambda: MNIST(str(root), train=train, download=download), f"MNIST under {root}"
    )
    images, labels = dataset.data.numpy(), dataset.targets.numpy().astype(np.int64)
    split = "train" if train else "test"
    key = f"mnist:{split}:{len(labels)}:{hashlib.sha1(images.tobytes()).hexdigest()}"
    return _cached(cache_dir, key, lambda: preprocess_arrays(images, labels, f"mnist/{split}"))


def load_emnist_letters(root, *, train: bool, download: bool = False, cache_dir=None) -> GlyphData:
    """EMNIST letters (both cases merged, as EMNIST does) mapped to classes a-z."""
    from torchvision.datasets import EMNIST

    dataset = _torchvision(
        lambda: EMNIST(str(root), split="letters", train=train, download=download),
        f"EMNIST letters under {root}",
    )
    # EMNIST's raw images are stored transposed relative to MNIST.
    images = dataset.data.numpy().transpose(0, 2, 1).copy()
    labels = dataset.targets.numpy().astype(np.int64) + EMNIST_LETTER_OFFSET
    split = "train" if train else "test"
    key = f"emnist:{split}:{len(labels)}:{hashlib.sha1(images.tobytes()).hexdigest()}"
    return _cached(cache_dir, key, lambda: preprocess_arrays(images, labels, f"emnist/{split}"))


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


def load_image_folder(root, *, cache_dir=None) -> GlyphData:
    """Images laid out as ``<root>/.../<label>/<file>``, named by their path under root."""
    root = Path(root)
    files = image_folder_files(root)
    fingerprint = hashlib.sha1()
    for path, _ in files:
        stat = path.stat()
        fingerprint.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    key = f"folder:{root.resolve()}:{fingerprint.hexdigest()}"

    def build() -> GlyphData:
        glyphs, labels, names, blank = [], [], [], 0
        for path, label in files:
            try:
                with Image.open(path) as image:
                    glyphs.append(preprocess_image(image))
            except (BlankImageError, OSError):
                blank += 1
                continue
            labels.append(label)
            names.append(str(path.relative_to(root)))
        if blank:
            logger.warning("%s: skipped %d blank or unreadable images", root, blank)
        if not glyphs:
            return GlyphData.concat([])
        return GlyphData(np.stack(glyphs), np.asarray(labels, np.int64), names)

    return _cached(cache_dir, key, build)


# Uppercase I, O, S and Z are written exactly like the digits 1, 0, 5 and 2. The
# product reads lowercase letters, so training on those uppercase images would
# only teach the model to call digits letters (on MNIST, 1 -> i was the largest
# confusion). Files are named <case>_<n>.png under their lowercase class.
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
