"""The new training sources: EMNIST-style packs, pen strokes drawn as a canvas would, and fonts."""

import gzip
import json

import numpy as np
import pytest
from PIL import ImageFont

from training import datasets, fonts, strokes
from training.classes import CLASS_INDEX

from .test_datasets import bar_images


def write_pack(path, count=40):
    images = bar_images(count, vertical=True)
    labels = np.array(["1", "l", "7", "a"] * (count // 4))
    cases = np.array(["digit", "lower", "digit", "upper"] * (count // 4))
    np.savez_compressed(path, images=images, labels=labels, cases=cases)
    return path


def write_strokes(path, writers=40):
    """A tiny UNIPEN-style file: each writer draws a vertical 1 and a round o."""
    t = np.linspace(0, 2 * np.pi, 30)
    round_o = np.stack([500 + 400 * np.sin(t), 500 - 500 * np.cos(t)], 1).round().tolist()
    with gzip.open(path, "wt") as out:
        for writer in range(writers):
            for label, case, lines in (
                ("1", "digit", [[[0, 0], [0, 1000]]]),
                ("O", "upper", [round_o]),
            ):
                row = {"label": label, "case": case, "writer": f"w{writer}", "strokes": lines}
                out.write(json.dumps(row) + "\n")
    return path


def test_a_pack_is_named_like_an_image_folder(tmp_path):
    data = datasets.load_pack(write_pack(tmp_path / "tiny.npz"), cache_dir=tmp_path / "cache")
    assert len(data) == 40 and data.glyphs.shape[1:] == (28, 28)
    assert data.names[1] == "tiny/l/lower_1" and data.labels[1] == CLASS_INDEX["l"]
    assert data.names[3] == "tiny/a/upper_3"
    again = datasets.load_pack(tmp_path / "tiny.npz", cache_dir=tmp_path / "cache")
    assert np.array_equal(again.glyphs, data.glyphs) and again.names == data.names


def test_pen_strokes_keep_whole_writers_on_one_side(tmp_path):
    path = write_strokes(tmp_path / "pen.jsonl.gz")
    train = strokes.load_pen_characters(path, heldout=False)
    heldout = strokes.load_pen_characters(path, heldout=True)
    assert heldout and train and len(train) + len(heldout) == 80
    assert not {c.writer for c in train} & {c.writer for c in heldout}
    assert {c.label for c in heldout} == {"1", "o"}  # uppercase folded to its class


def test_pen_strokes_drawn_as_training_images(tmp_path):
    path = write_strokes(tmp_path / "pen.jsonl.gz")
    drawn = datasets.load_pen_strokes(path, copies=2, cache_dir=tmp_path / "cache")
    train_writers = len({c.writer for c in strokes.load_pen_characters(path, heldout=False)})
    assert len(drawn) == 2 * 2 * train_writers
    ones = drawn.glyphs[drawn.labels == CLASS_INDEX["1"]]
    # A vertical stroke at any pen width: a narrow upright bar in the middle of the field.
    columns = (ones > 128).any(axis=1).sum(axis=1)
    assert columns.max() <= 5 and ones.max() == 255
    assert all(name.startswith("pen.jsonl/") for name in drawn.names)


def test_font_renderer_on_pillows_built_in_font():
    rng = np.random.default_rng(0)
    image = fonts.render_character(None, "a", rng)
    assert image.mode == "L" and np.asarray(image).min() < 64  # dark ink on light paper
    data = fonts.render_font(None, name="fonts/default", copies=2, seed=0)
    assert set(data.labels.tolist()) == set(range(36))
    assert not any(n.split("/")[-2] in "iosz" and "upper_" in n for n in data.names)
    assert (data.glyphs.reshape(len(data), -1).max(axis=1) == 255).all()


def write_font_folder(folder):
    """Pillow's built-in scalable font as a .ttf file, so no system font is needed."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "builtin.ttf").write_bytes(ImageFont.load_default(size=20).path.getvalue())
    return folder


def test_a_fonts_folder_renders_every_font(tmp_path):
    data = fonts.render_font_folder(write_font_folder(tmp_path / "fonts"), copies=1, seed=0)
    assert set(data.labels.tolist()) == set(range(36))
    with pytest.raises(fonts.FontsUnavailable):
        fonts.render_font_folder(tmp_path / "nothing", copies=1, seed=0)
