"""Training data: MNIST and EMNIST through torchvision, image folders, EMNIST packs
(npz) and pen strokes drawn as a canvas would.

Every image, whatever its source, goes through ``preprocess_image`` (MNIST is
already in that form, but one function means no train/serve skew). Results are
cached as npz files keyed by the source's files and the preprocessing's version,
so the second run is fast.
"""

import hashlib
import logging
import multiprocessing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from . import strokes as pen_strokes
from .classes import CLASS_INDEX
from .preprocessing import PREPROCESSING_VERSION, BlankImageError, preprocess_image

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


def glyph_or_none(image: Image.Image) -> np.ndarray | None:
    """The preprocessed glyph, or None when the image holds no character."""
    try:
        return preprocess_image(image)
    except BlankImageError:
        return None


def _preprocess_array(image: np.ndarray) -> np.ndarray | None:
    return glyph_or_none(Image.fromarray(image))


def _preprocess_file(path: Path) -> np.ndarray | None:
    try:
        with Image.open(path) as image:
            return glyph_or_none(image)
    except OSError:
        return None


def _parallel(function, items, jobs: int) -> list:
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
    glyphs = _parallel(_preprocess_array, list(images), jobs)
    return gather(glyphs, labels, [f"{prefix}/{index}" for index in range(len(images))])


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


def load_mnist(
    root, *, train: bool, download: bool = False, cache_dir=None, jobs: int = 1
) -> GlyphData:
    """MNIST digits from a torchvision root (downloaded there when asked)."""
    from torchvision.datasets import MNIST

    dataset = _torchvision(
        lambda: MNIST(str(root), train=train, download=download), f"MNIST under {root}"
    )
    images, labels = dataset.data.numpy(), dataset.targets.numpy().astype(np.int64)
    split = "train" if train else "test"
    key = f"mnist:{split}:{len(labels)}:{hashlib.sha1(images.tobytes()).hexdigest()}"
    return _cached(
        cache_dir, key, lambda: preprocess_arrays(images, labels, f"mnist/{split}", jobs)
    )


def load_emnist_letters(
    root, *, train: bool, download: bool = False, cache_dir=None, jobs: int = 1
) -> GlyphData:
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
    return _cached(
        cache_dir, key, lambda: preprocess_arrays(images, labels, f"emnist/{split}", jobs)
    )


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
        glyphs = _parallel(_preprocess_file, [path for path, _ in files], jobs)
        skipped = sum(glyph is None for glyph in glyphs)
        if skipped:
            logger.warning("%s: skipped %d blank or unreadable images", root, skipped)
        names = [str(path.relative_to(root)) for path, _ in files]
        return gather(glyphs, [label for _, label in files], names)

    return _cached(cache_dir, key, build)


def _file_key(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def load_pack(path, *, cache_dir=None, jobs: int = 1) -> GlyphData:
    """An EMNIST-style npz (``images`` white on black, ``labels``, ``cases``).

    Each image is named ``<pack>/<label>/<case>_<index>``, as image folders name
    theirs, so the held-out split, the case and the look-alike rules read the same.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetUnavailable(f"{path} is not a file. {OFFLINE_HELP}")

    def build() -> GlyphData:
        with np.load(path, allow_pickle=False) as pack:
            images, labels, cases = pack["images"], pack["labels"], pack["cases"]
        names = [
            f"{path.stem}/{label}/{case}_{index}"
            for index, (label, case) in enumerate(zip(labels, cases, strict=True))
        ]
        indices = [CLASS_INDEX[str(label)] for label in labels]
        return gather(_parallel(_preprocess_array, list(images), jobs), indices, names)

    return _cached(cache_dir, f"pack:{_file_key(path)}", build)


# Pen widths and canvases that pen-stroke training images are drawn at: the whole
# range a canvas sends, on canvases small enough to draw quickly.
STROKE_WIDTHS = (2.0, 40.0)
STROKE_CANVASES = (100, 280)


def _draw_pen_character(job) -> np.ndarray | None:
    character_strokes, width, canvas, seed = job
    rng = np.random.default_rng(seed)
    pen = pen_strokes.random_pen(rng, width=width, canvas=canvas)
    return glyph_or_none(pen_strokes.draw(character_strokes, pen, supersample=2))


def load_pen_strokes(
    path, *, heldout: bool = False, copies: int = 1, seed: int = 0, cache_dir=None, jobs: int = 1
) -> GlyphData:
    """Pen-stroke characters (one side of the writer split) drawn as training images.

    Each character is drawn ``copies`` times, each at a random pen width, canvas,
    size and place, so the network sees every writer at every pen width.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetUnavailable(f"{path} is not a file. {OFFLINE_HELP}")

    def build() -> GlyphData:
        characters = pen_strokes.load_pen_characters(path, heldout=heldout)
        rng = np.random.default_rng(seed)
        jobs_list, labels, names = [], [], []
        for copy in range(copies):
            for index, character in enumerate(characters):
                width = float(rng.uniform(*STROKE_WIDTHS))
                smallest = max(STROKE_CANVASES[0], int(4 * width / 0.9) + 3)
                canvas = int(rng.integers(smallest, max(smallest, STROKE_CANVASES[1]) + 1))
                jobs_list.append((character.strokes, width, canvas, int(rng.integers(2**31))))
                labels.append(CLASS_INDEX[character.label])
                names.append(f"{path.stem}/{character.label}/{character.case}_{index}_{copy}")
        return gather(_parallel(_draw_pen_character, jobs_list, jobs), labels, names)

    side = "heldout" if heldout else "train"
    return _cached(cache_dir, f"strokes:{_file_key(path)}:{side}:{copies}:{seed}", build)


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
