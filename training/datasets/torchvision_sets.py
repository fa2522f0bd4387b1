"""MNIST digits and EMNIST letters, read (or downloaded) through torchvision."""

import hashlib

import numpy as np

from ..classes import CLASS_INDEX
from .glyphs import OFFLINE_HELP, DatasetUnavailable, GlyphData, cached, preprocess_arrays

EMNIST_LETTER_OFFSET = CLASS_INDEX["a"] - 1  # EMNIST letters are labelled 1 (a) to 26 (z)


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


def _preprocessed(
    images: np.ndarray, labels: np.ndarray, *, kind: str, train: bool, cache_dir, jobs
) -> GlyphData:
    """Preprocessed once per copy of the data (keyed by its bytes), then read from the cache."""
    split = "train" if train else "test"
    key = f"{kind}:{split}:{len(labels)}:{hashlib.sha1(images.tobytes()).hexdigest()}"
    return cached(
        cache_dir, key, lambda: preprocess_arrays(images, labels, f"{kind}/{split}", jobs)
    )


def load_mnist(
    root, *, train: bool, download: bool = False, cache_dir=None, jobs: int = 1
) -> GlyphData:
    """MNIST digits from a torchvision root (downloaded there when asked)."""
    from torchvision.datasets import MNIST

    dataset = _torchvision(
        lambda: MNIST(str(root), train=train, download=download), f"MNIST under {root}"
    )
    images, labels = dataset.data.numpy(), dataset.targets.numpy().astype(np.int64)
    return _preprocessed(images, labels, kind="mnist", train=train, cache_dir=cache_dir, jobs=jobs)


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
    return _preprocessed(images, labels, kind="emnist", train=train, cache_dir=cache_dir, jobs=jobs)
