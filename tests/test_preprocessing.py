"""One preprocessing function: the same glyph however it arrives gives nearly the same 28x28."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from training.preprocessing import (
    BlankImageError,
    glyph_from_bytes,
    glyphs_from_bytes,
    preprocess_image,
)

from .drawing import SEVEN, ZERO, draw_png

SHAPES = {"seven": SEVEN, "zero": ZERO}


def glyph(png: bytes) -> np.ndarray:
    return preprocess_image(Image.open(io.BytesIO(png)))


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def move(strokes, dx=0.0, dy=0.0, scale=1.0, centre=140):
    return [[(centre + (x - centre) * scale + dx, centre + (y - centre) * scale + dy) for x, y in s]
            for s in strokes]  # fmt: skip


@pytest.fixture(params=list(SHAPES))
def shape(request):
    return SHAPES[request.param]


def test_output_is_mnist_like(shape):
    result = glyph(draw_png(shape))
    assert result.shape == (28, 28) and result.dtype == np.uint8
    assert result.max() == 255 and result[0].max() == 0 and result[:, 0].max() == 0
    rows, cols = np.nonzero(result > 30)
    assert max(np.ptp(rows), np.ptp(cols)) <= 21  # the longer side fits the 20 px box
    centre = np.array(np.nonzero(result)).T.mean(axis=0)
    assert np.allclose(centre, 13.5, atol=2.5)


@pytest.mark.parametrize(
    "variant",
    [
        {"dx": -50, "dy": 40},
        {"dx": 50, "dy": -45},
        {"scale": 0.35},
        {"scale": 0.35, "dx": 80, "dy": 80},
        {"scale": 1.3},
    ],
)
def test_position_and_size_do_not_matter(shape, variant):
    reference = glyph(draw_png(shape))
    width = round(18 * variant.get("scale", 1.0))  # the same pen, relative to the glyph
    assert similarity(glyph(draw_png(move(shape, **variant), width=width)), reference) > 0.9


def test_stroke_width_hardly_matters(shape):
    reference = glyph(draw_png(shape, width=18))
    assert similarity(glyph(draw_png(shape, width=10)), reference) > 0.75
    assert similarity(glyph(draw_png(shape, width=28)), reference) > 0.75


def test_polarity_modes_and_transparency_do_not_matter(shape):
    reference = glyph(draw_png(shape))
    white_on_black = draw_png(shape, ink=(255, 255, 255, 255), paper=(0, 0, 0, 255))
    transparent = draw_png(shape, ink=(20, 20, 20, 255), paper=(0, 0, 0, 0))
    for variant in (
        white_on_black,
        transparent,
        draw_png(shape, mode="L"),
        draw_png(shape, mode="RGB", image_format="JPEG"),
        draw_png(shape, mode="P"),
        draw_png(shape, mode="LA"),
        draw_png(shape, mode="1"),
    ):
        assert similarity(glyph(variant), reference) > 0.9


def test_grey_noisy_paper_like_a_photo(shape):
    reference = glyph(draw_png(shape))
    ink = np.asarray(Image.open(io.BytesIO(draw_png(shape))).convert("L"), dtype=float)
    paper = 170 + np.random.default_rng(0).normal(0, 6, ink.shape)
    photo = np.clip(paper * ink / 255 + 40 * (1 - ink / 255), 0, 255).astype(np.uint8)
    assert similarity(preprocess_image(Image.fromarray(photo)), reference) > 0.85


def test_a_far_away_speck_does_not_decide_the_box(shape):
    reference = glyph(draw_png(shape))
    image = Image.open(io.BytesIO(draw_png(shape))).convert("L")
    ImageDraw.Draw(image).ellipse((262, 262, 265, 265), fill=0)
    assert similarity(preprocess_image(image), reference) > 0.95


def test_the_dot_of_an_i_is_kept():
    result = glyph(draw_png([[(140, 110), (140, 230)], [(140, 60), (140, 61)]]))
    rows = np.nonzero(result.max(axis=1) > 60)[0]
    assert np.diff(rows).max() > 1  # two separate pieces: the stem and the dot


def test_huge_canvas_and_tiny_image():
    big = Image.new("L", (4096, 4096), 255)
    ImageDraw.Draw(big).line([(1000, 900), (1000, 2900)], fill=0, width=120)
    assert preprocess_image(big).max() == 255
    tiny = Image.new("L", (12, 12), 0)
    ImageDraw.Draw(tiny).line([(6, 2), (6, 9)], fill=255, width=1)
    assert preprocess_image(tiny).max() == 255


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (280, 280), 255),
        Image.new("RGBA", (280, 280), (0, 0, 0, 0)),
        Image.new("L", (280, 280), 0),
        Image.new("L", (1, 1), 0),
    ],
    ids=["white", "transparent", "black", "one-pixel"],
)
def test_blank_raises(image):
    with pytest.raises(BlankImageError):
        preprocess_image(image)


def test_near_blank_raises():
    image = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(image).point([(40, 40), (200, 100)], fill=0)
    with pytest.raises(BlankImageError):
        preprocess_image(image)


def test_stored_glyphs_decode_whole_or_not_at_all():
    glyph = np.arange(784, dtype=np.uint8).reshape(28, 28)
    assert np.array_equal(glyph_from_bytes(glyph.tobytes()), glyph)
    assert glyphs_from_bytes(glyph.tobytes() * 3).shape == (3, 28, 28)
    assert glyphs_from_bytes(b"").shape == (0, 28, 28)
    for damaged in (b"", b"damaged", glyph.tobytes() * 2, glyph.tobytes() + b"x"):
        with pytest.raises(ValueError):
            glyph_from_bytes(damaged)
