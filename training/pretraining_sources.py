"""The images a pretraining run reads, split for training, validation and evaluation (no Django)."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import datasets, fonts
from .datasets import GlyphData

# What a missing or unreadable source raises.
SOURCE_ERRORS = (datasets.DatasetUnavailable, fonts.FontsUnavailable)


@dataclass
class Sources:
    """Training and validation parts, held-out evaluation sets, and training images per source."""

    limit: int | None
    seed: int
    train: list[GlyphData] = field(default_factory=list)
    validation: list[GlyphData] = field(default_factory=list)
    eval_sets: dict[str, GlyphData] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add_training(self, data: GlyphData, source: str):
        train, validation = datasets.split_validation(data.limit(self.limit, self.seed))
        # The validation side keeps what the held-out side has: uppercase look-alikes too.
        self.train.append(datasets.drop_uppercase_digit_lookalikes(train))
        self.validation.append(validation)
        self.counts[source] = len(self.train[-1])

    def add_split(self, data: GlyphData, source: str, prefix: str):
        """Train on part of ``data``; the rest becomes evaluation sets by folder and case."""
        train, heldout = datasets.split_heldout(data)
        self.add_training(train, source)
        for group, members in heldout_groups(heldout).items():
            self.eval_sets[f"{prefix}{group}"] = heldout.subset(members)


def load_sources(
    *,
    mnist_root: str | None,
    emnist_root: str | None,
    download_dir: str,
    data_dirs: list[str],
    packs: list[str],
    strokes: list[str],
    stroke_copies: int,
    font_dirs: list[str],
    font_copies: int,
    limit: int | None,
    seed: int,
    cache_dir: Path,
    jobs: int,
) -> Sources:
    """Every source named; with no local handwriting, MNIST and EMNIST letters downloaded."""
    sources = Sources(limit=limit, seed=seed)
    local = bool(mnist_root or emnist_root or data_dirs or packs or strokes)
    cached = {"cache_dir": cache_dir, "jobs": jobs}
    downloads = (
        ("mnist", "mnist_test", mnist_root, datasets.load_mnist),
        ("emnist_letters", "emnist_test", emnist_root, datasets.load_emnist_letters),
    )
    for source, test_set, root, load in downloads:
        root = root or (None if local else download_dir)
        if root:
            sources.add_training(load(root, train=True, download=not local, **cached), source)
            sources.eval_sets[test_set] = load(root, train=False, download=not local, **cached)
    for data_dir in data_dirs:
        folder = datasets.load_image_folder(data_dir, **cached)
        sources.add_split(folder, data_dir, prefix=f"{Path(data_dir).name}/")
    for pack in packs:
        # Pack images are named <pack>/<label>/<case>_<n>: grouped by pack and case.
        sources.add_split(datasets.load_pack(pack, **cached), pack, prefix="")
    for stroke_file in strokes:
        drawn = datasets.load_pen_strokes(stroke_file, copies=stroke_copies, seed=seed, **cached)
        sources.add_training(drawn, stroke_file)
    for font_dir in font_dirs:
        rendered = fonts.render_font_folder(font_dir, copies=font_copies, seed=seed)
        sources.add_training(rendered, font_dir)
    return sources


def heldout_groups(data: GlyphData) -> dict[str, np.ndarray]:
    """Held-out images by source folder and case (lower, upper, digit) from their file names."""
    keys = [
        f"{Path(name).parts[0] if len(Path(name).parts) > 2 else 'all'}/"
        f"{Path(name).name.split('_')[0] if '_' in Path(name).name else 'all'}"
        for name in data.names
    ]
    return {key: np.array([k == key for k in keys]) for key in sorted(set(keys))}
