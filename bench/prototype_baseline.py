"""The Flask prototype's model against the committed default model, on the same held-out data.

The prototype (which this project replaces) had 3 convolutions with BatchNorm, one
256-unit hidden layer (about 0.4 M parameters), 10 epochs of Adam, no augmentation,
and no crop or centring: the whole canvas was inverted and resized to 28x28. This
bench trains that network, its way, on the same training images the default
model uses (MNIST train + the handwriting folders' training split, uppercase
I/O/S/Z dropped), then evaluates both models on:

- MNIST test, 36-way (and argmax over the ten digits alone);
- the handwriting folders' held-out split, per source and case;
- canvas-like drawings: black ink on a white 280x280 canvas at varied positions
  and sizes, as the drawing page sends them. "canvas strokes" are glyphs drawn
  with round strokes (tests/drawing.py); "canvas handwriting" is held-out real
  handwriting (MNIST test digits, held-out letters) placed on the canvas.

Each model reads every image through its own preprocessing. No Django.

    .venv/bin/python bench/prototype_baseline.py [--epochs 10] [--limit N]
"""

import argparse
import io
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn as torch_nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.drawing import draw_png
from training import canvas_eval, datasets, nn
from training import strokes as pen_strokes
from training.classes import CLASS_INDEX, DIGITS, NUM_CLASSES
from training.preprocessing import preprocess_image

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
DEFAULT_MODEL = ROOT / "training" / "default_model"
CANVAS = 280
PEN = 18  # the drawing page's pen width on a 280 px canvas


class PrototypeNet(torch_nn.Module):
    """The prototype's CNN: three conv + BatchNorm + pool stages, one 256-unit hidden layer."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()

        def stage(inputs, outputs):
            return [
                torch_nn.Conv2d(inputs, outputs, 3, padding=1),
                torch_nn.BatchNorm2d(outputs),
                torch_nn.ReLU(inplace=True),
                torch_nn.MaxPool2d(2),
            ]

        self.layers = torch_nn.Sequential(
            *stage(1, 32),
            *stage(32, 64),
            *stage(64, 128),
            torch_nn.Flatten(),
            torch_nn.Linear(128 * 3 * 3, 256),
            torch_nn.ReLU(inplace=True),
            torch_nn.Linear(256, num_classes),
        )

    def forward(self, x):
        return self.layers(x)


def prototype_preprocess(image: Image.Image) -> np.ndarray:
    """The prototype's way: grayscale, white ink on black (inverted when the paper is light),
    the whole image resized to 28x28: no crop, no centring."""
    if image.mode in ("RGBA", "LA", "P"):
        image = Image.alpha_composite(
            Image.new("RGBA", image.size, (255, 255, 255, 255)), image.convert("RGBA")
        )
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) >= 128:
        gray = 255.0 - gray
    resized = Image.fromarray(gray.astype(np.uint8)).resize((28, 28), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


# --- data -------------------------------------------------------------------


def load_mnist_raw(train: bool) -> tuple[np.ndarray, np.ndarray]:
    from torchvision.datasets import MNIST

    dataset = MNIST(str(DATA / "mnist"), train=train, download=False)
    return dataset.data.numpy(), dataset.targets.numpy().astype(np.int64)


def load_handwriting_prototype(names_kept: list[str]) -> datasets.GlyphData:
    """The handwriting folders through the prototype's preprocessing, named like load_image_folder.

    Only ``names_kept`` (the images the default pipeline did not reject as blank) are
    read, so both models are trained and judged on the same files.
    """
    root = DATA / "handwriting"
    kept = set(names_kept)
    glyphs, labels, names = [], [], []
    for path, label in datasets.image_folder_files(root):
        if str(path.relative_to(root)) not in kept:
            continue
        with Image.open(path) as image:
            glyphs.append(prototype_preprocess(image))
        labels.append(label)
        names.append(str(path.relative_to(root)))
    return datasets.GlyphData(np.stack(glyphs), np.asarray(labels, np.int64), names)


def groups(data: datasets.GlyphData) -> dict[str, np.ndarray]:
    """Held-out images by source and case, as `manage.py pretrain` reports them."""
    keys = [f"{Path(n).parts[0]}/{Path(n).name.split('_')[0]}" for n in data.names]
    return {key: np.array([k == key for k in keys]) for key in sorted(set(keys))}


def glyph_shapes() -> dict[str, list]:
    """Stroke glyphs in a unit box (x right, y down), one or two per class drawn here."""

    def arc(cx, cy, rx, ry, start=0.0, stop=2 * np.pi):
        """Points along an ellipse, clockwise from 12 o'clock (angles in radians)."""
        return [
            (cx + rx * math.sin(a), cy - ry * math.cos(a)) for a in np.linspace(start, stop, 40)
        ]

    pi = np.pi
    return {
        "0": [arc(0.5, 0.5, 0.3, 0.45)],
        "1": [[(0.5, 0.05), (0.5, 0.95)]],
        "2": [[*arc(0.5, 0.3, 0.28, 0.25, -pi / 2, pi * 0.75), (0.2, 0.95), (0.8, 0.95)]],
        "3": [arc(0.5, 0.28, 0.25, 0.23, -pi / 2, pi), arc(0.5, 0.73, 0.28, 0.23, 0, pi * 1.5)],
        "4": [[(0.6, 0.05), (0.15, 0.65), (0.85, 0.65)], [(0.6, 0.3), (0.6, 0.95)]],
        "5": [[(0.8, 0.05), (0.3, 0.05), (0.25, 0.45), *arc(0.5, 0.67, 0.3, 0.28, -1.2, 3.6)]],
        "6": [[(0.7, 0.05), (0.3, 0.5), *arc(0.5, 0.7, 0.25, 0.25, -2.2, 4.1)]],
        "7": [[(0.15, 0.05), (0.85, 0.05), (0.4, 0.95)]],
        "8": [arc(0.5, 0.27, 0.22, 0.22), arc(0.5, 0.72, 0.27, 0.23)],
        "9": [[*arc(0.5, 0.3, 0.25, 0.25), (0.75, 0.3), (0.7, 0.95)]],
        "a": [arc(0.45, 0.65, 0.28, 0.3), [(0.75, 0.35), (0.75, 0.95)]],
        "b": [[(0.25, 0.05), (0.25, 0.95)], arc(0.5, 0.7, 0.25, 0.25)],
        "c": [arc(0.5, 0.5, 0.35, 0.4, pi / 2 + 0.6, 2.5 * pi - 0.6)],
        "d": [[(0.75, 0.05), (0.75, 0.95)], arc(0.5, 0.7, 0.25, 0.25)],
        "e": [[(0.2, 0.55), (0.8, 0.55), *arc(0.5, 0.55, 0.3, 0.35, pi / 2, -pi - 0.9)]],
        "h": [
            [(0.25, 0.05), (0.25, 0.95)],
            [(0.25, 0.6), *arc(0.5, 0.6, 0.25, 0.2, -1.4, 1.6), (0.75, 0.95)],
        ],
        "k": [[(0.25, 0.05), (0.25, 0.95)], [(0.75, 0.35), (0.25, 0.7), (0.75, 0.95)]],
        "m": [
            [(0.1, 0.4), (0.1, 0.95)],
            [(0.1, 0.5), (0.3, 0.4), (0.5, 0.5), (0.5, 0.95)],
            [(0.5, 0.5), (0.7, 0.4), (0.9, 0.5), (0.9, 0.95)],
        ],
        "n": [[(0.2, 0.4), (0.2, 0.95)], [(0.2, 0.5), (0.5, 0.4), (0.8, 0.5), (0.8, 0.95)]],
        "r": [[(0.3, 0.4), (0.3, 0.95)], [(0.3, 0.55), (0.55, 0.42), (0.8, 0.45)]],
        "t": [[(0.5, 0.05), (0.5, 0.85), (0.65, 0.95), (0.8, 0.9)], [(0.2, 0.35), (0.8, 0.35)]],
        "u": [[(0.2, 0.4), (0.2, 0.8), (0.5, 0.95), (0.8, 0.8)], [(0.8, 0.4), (0.8, 0.95)]],
        "v": [[(0.15, 0.35), (0.5, 0.95), (0.85, 0.35)]],
        "w": [[(0.05, 0.35), (0.27, 0.95), (0.5, 0.5), (0.73, 0.95), (0.95, 0.35)]],
        "x": [[(0.2, 0.35), (0.8, 0.95)], [(0.8, 0.35), (0.2, 0.95)]],
        "y": [[(0.2, 0.35), (0.5, 0.7)], [(0.8, 0.35), (0.35, 1.0)]],
        "z": [[(0.2, 0.35), (0.8, 0.35), (0.2, 0.95), (0.8, 0.95)]],
    }


def canvas_placements(count: int, rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """(left, top, size) of a glyph's box on the canvas: 25-85% of it, anywhere inside."""
    placements = []
    for _ in range(count):
        size = rng.uniform(0.25, 0.85) * CANVAS
        left, top = rng.uniform(PEN, CANVAS - size - PEN, 2)
        placements.append((left, top, size))
    return placements


def canvas_strokes(per_shape: int, rng) -> tuple[list[Image.Image], np.ndarray]:
    images, labels = [], []
    for label, strokes in glyph_shapes().items():
        for left, top, size in canvas_placements(per_shape, rng):
            aspect = rng.uniform(0.7, 1.0)  # most glyphs are taller than wide
            placed = [
                [(left + size * (0.5 + (x - 0.5) * aspect), top + size * y) for x, y in stroke]
                for stroke in strokes
            ]
            images.append(Image.open(io.BytesIO(draw_png(placed, size=CANVAS, width=PEN))))
            labels.append(CLASS_INDEX[label])
    return images, np.asarray(labels)


def canvas_handwriting(glyphs: np.ndarray, rng) -> list[Image.Image]:
    """Real handwriting (white-on-black glyphs) as black ink on a white canvas, placed anywhere."""
    images = []
    for glyph, (left, top, size) in zip(glyphs, canvas_placements(len(glyphs), rng), strict=True):
        side = int(size * 28 / 20)  # the glyph's 20 px box becomes `size` pixels
        ink = Image.fromarray(glyph).resize((side, side), Image.Resampling.BICUBIC)
        canvas = Image.new("L", (CANVAS, CANVAS), 0)
        canvas.paste(ink, (int(left - size * 4 / 20), int(top - size * 4 / 20)))
        images.append(Image.fromarray(255 - np.asarray(canvas)).convert("RGBA"))
    return images


# --- training and evaluation --------------------------------------------------


def train_prototype(glyphs: np.ndarray, labels: np.ndarray, epochs: int, seed: int):
    """10 epochs of Adam (lr 1e-3, batch 128) over shuffled data, no augmentation."""
    torch.manual_seed(seed)
    model = PrototypeNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x_all = nn.glyphs_to_tensor(glyphs)
    y_all = torch.as_tensor(labels)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(y_all), generator=generator)
        total = 0.0
        for start in range(0, len(order), 128):
            index = order[start : start + 128]
            loss = F.cross_entropy(model(x_all[index]), y_all[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        print(f"  prototype epoch {epoch + 1}/{epochs}: loss {total / len(order):.4f}", flush=True)
    return model.eval()


def accuracy(model, glyphs: np.ndarray, labels: np.ndarray, digits_only: bool = False) -> float:
    probabilities = nn.predict_proba(model, glyphs)
    if digits_only:
        probabilities = probabilities[:, : len(DIGITS)]
    return float((probabilities.argmax(1) == labels).mean())


def preprocess_all(images: list[Image.Image], function) -> np.ndarray:
    return np.stack([function(image) for image in images])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--limit", type=int, help="At most this many training images per source.")
    parser.add_argument("--canvas-per-class", type=int, default=20)
    parser.add_argument("--canvas-handwriting", type=int, default=1000)
    parser.add_argument(
        "--canvas-per-case",
        type=int,
        default=300,
        help="Held-out UNIPEN characters per case for the canvas simulation (0: skip it).",
    )
    parser.add_argument("--cache-dir", default=str(ROOT / "var" / "cache"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--prototype-weights",
        help="Load the trained prototype from this file if it exists, else train and save it "
        "there (to compare it with a new default model without training it again).",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.monotonic()

    # The default model's inputs: the one preprocessing function (cached npz).
    cache = Path(args.cache_dir)
    mnist_test = datasets.load_mnist(DATA / "mnist", train=False, cache_dir=cache)
    folder = datasets.load_image_folder(DATA / "handwriting", cache_dir=cache)
    _, heldout = datasets.split_heldout(folder)

    # The prototype's inputs: the same images, its own preprocessing.
    mnist_images, mnist_labels = load_mnist_raw(train=True)
    mnist_train = datasets.GlyphData(
        mnist_images, mnist_labels, [f"mnist/train/{i}" for i in range(len(mnist_labels))]
    ).limit(args.limit, args.seed)
    proto_folder = load_handwriting_prototype(folder.names)
    proto_train, proto_heldout = datasets.split_heldout(proto_folder)
    proto_train = datasets.drop_uppercase_digit_lookalikes(proto_train).limit(args.limit, args.seed)
    test_images, test_labels = load_mnist_raw(train=False)
    train = datasets.GlyphData.concat([mnist_train, proto_train])
    weights = Path(args.prototype_weights) if args.prototype_weights else None
    if weights is not None and weights.exists():
        prototype = PrototypeNet()
        prototype.load_state_dict(torch.load(weights, weights_only=True))
        prototype.eval()
        trained = f"loaded from {weights}"
    else:
        print(f"prototype: training on {len(train)} images for {args.epochs} epochs", flush=True)
        train_started = time.monotonic()
        prototype = train_prototype(train.glyphs, train.labels, args.epochs, args.seed)
        trained = f"trained in {time.monotonic() - train_started:.0f} s on {args.threads} threads"
        if weights is not None:
            weights.parent.mkdir(parents=True, exist_ok=True)
            torch.save(prototype.state_dict(), weights)
    parameters = sum(p.numel() for p in prototype.parameters())

    architecture = json.loads((DEFAULT_MODEL / "version.json").read_text())["architecture"]
    default = nn.deserialize_state((DEFAULT_MODEL / "weights.pt").read_bytes(), architecture)

    rows = []  # (set, count, default model's accuracy, prototype's accuracy)

    def compare(name, default_glyphs, prototype_glyphs, labels, digits_only=False):
        rows.append((name, len(labels),
                     accuracy(default, default_glyphs, labels, digits_only),
                     accuracy(prototype, prototype_glyphs, labels, digits_only)))  # fmt: skip

    compare("MNIST test, 36-way", mnist_test.glyphs, test_images, test_labels)
    compare("MNIST test, argmax over 10 digits", mnist_test.glyphs, test_images, test_labels, True)
    assert heldout.names == proto_heldout.names
    letters = heldout.labels >= len(DIGITS)
    held_groups = {"letters, all": letters, "digits, all": ~letters, **groups(heldout)}
    for group, mask in held_groups.items():
        compare(f"held-out {group}", heldout.glyphs[mask], proto_heldout.glyphs[mask],
                heldout.labels[mask])  # fmt: skip

    rng = np.random.default_rng(args.seed)
    stroke_images, stroke_labels = canvas_strokes(args.canvas_per_class, rng)
    pick = rng.choice(len(mnist_test), args.canvas_handwriting, replace=False)
    letter_index = np.flatnonzero(letters)
    letter_pick = rng.choice(
        letter_index, min(args.canvas_handwriting, len(letter_index)), replace=False
    )
    is_digit = stroke_labels < len(DIGITS)
    canvas_sets = {
        "canvas strokes, digits": (
            [image for image, keep in zip(stroke_images, is_digit, strict=True) if keep],
            stroke_labels[is_digit],
        ),
        "canvas strokes, letters": (
            [image for image, keep in zip(stroke_images, is_digit, strict=True) if not keep],
            stroke_labels[~is_digit],
        ),
        "canvas handwriting, MNIST digits": (
            canvas_handwriting(mnist_test.glyphs[pick], rng),
            mnist_test.labels[pick],
        ),
        "canvas handwriting, held-out letters": (
            canvas_handwriting(heldout.glyphs[letter_pick], rng),
            heldout.labels[letter_pick],
        ),
    }
    for name, (images, labels) in canvas_sets.items():
        compare(name, preprocess_all(images, preprocess_image),
                preprocess_all(images, prototype_preprocess), labels)  # fmt: skip

    simulations = {}
    if args.canvas_per_case:
        characters = pen_strokes.load_pen_characters(
            DATA / "strokes" / "unipen_r01v07.jsonl.gz", heldout=True
        )
        drawings = canvas_eval.pen_drawings(
            characters, per_case=args.canvas_per_case, seed=args.seed
        )

        def read_prototype(images):
            return nn.predict_proba(prototype, preprocess_all(images, prototype_preprocess)).argmax(
                1
            )

        simulations = {
            "default model": canvas_eval.measure(canvas_eval.model_reader(default), drawings),
            "prototype": canvas_eval.measure(read_prototype, drawings),
        }

    default_parameters = sum(p.numel() for p in default.parameters())
    print(
        f"\nprototype: PrototypeNet, {parameters:,} parameters, {args.epochs} epochs "
        f"(limit {args.limit}) on {len(train)} images, {trained}"
    )
    print(f"default:   {architecture}, {default_parameters:,} parameters (training/default_model)")
    print("\n| evaluation set | n | default model | prototype |\n| --- | ---: | ---: | ---: |")
    for name, count, default_acc, proto_acc in rows:
        print(f"| {name} | {count} | {100 * default_acc:.2f}% | {100 * proto_acc:.2f}% |")
    for name, table in simulations.items():
        title = (
            f"\nCanvas simulation, held-out UNIPEN writers, {name} (exact / look-alike-tolerant %)"
        )
        print(canvas_eval.format_table(table, title))
    print(f"\n(top-1 over the 36 classes unless stated; {time.monotonic() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
