"""Canvas simulation of real handwriting that training never saw (no Django).

Held-out UNIPEN writers drawn as the page draws (every pen width from 2 to 40 px,
canvases 100-560 px), then held-out images of the other sources re-drawn from their
skeletons; top-1 per pen width and case, exact / look-alike-tolerant. ``--misreads DIR``
also writes, per pen width, a sheet of the held-out writers' drawings read wrong even
with look-alikes counted as one: each as the canvas sent it, the glyph the model read,
and "label>answer", to judge by eye which misreads a person could read.

    .venv/bin/python bench/canvas_eval.py [--weights training/default_model/weights.pt]
        [--per-case 1000] [--misreads DIR [--misread-widths 8,36]]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import sheets
from training import canvas_eval, datasets, nn, strokes
from training.classes import CLASSES

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


def heldout_images(cache: Path) -> dict[str, datasets.GlyphData]:
    """Held-out images of the image sources: MNIST test, the packs' and folders' held-out split."""
    sources = {"mnist_test": datasets.load_mnist(DATA / "mnist", train=False, cache_dir=cache)}
    for pack in sorted((DATA / "packs").glob("*.npz")):
        sources[pack.stem] = datasets.split_heldout(datasets.load_pack(pack, cache_dir=cache))[1]
    folder = datasets.load_image_folder(DATA / "handwriting", cache_dir=cache)
    sources["handwriting"] = datasets.split_heldout(folder)[1]
    return sources


def misread_sheets(reader, drawings, *, widths, directory: Path) -> None:
    """Per width and case, a PNG of the drawings misread even with look-alikes as one
    (the same canvases as the table's)."""
    directory.mkdir(parents=True, exist_ok=True)
    labels = np.array([d.label for d in drawings])
    cases = np.array([d.case for d in drawings])
    for width in widths:
        images = [image for chunk in canvas_eval.drawn_at(drawings, width) for image in chunk]
        predicted = reader(images)
        wrong = canvas_eval.misread(predicted, labels)
        answers = [CLASSES[p] if p >= 0 else "blank" for p in predicted]
        for case in canvas_eval.CASES:
            shown = np.flatnonzero(wrong & (cases == case))
            entries = [
                (
                    [sheets.on_white(images[i]), _glyph_image(images[i])],
                    f"{CLASSES[labels[i]]}>{answers[i]}",
                )
                for i in shown
            ]
            sheets.sheet(entries).save(directory / f"{case}-{width}px.png")
            print(f"{width} px {case}: {len(shown)} of {(cases == case).sum()} misread")


def _glyph_image(image: Image.Image) -> Image.Image:
    glyph = datasets.glyph_or_none(image)
    return Image.fromarray(255 - glyph) if glyph is not None else Image.new("L", (28, 28), 255)


def _widths(text: str) -> list[float]:
    """Pen widths from "2,4.5,8": whole ones stay ints, so they label the table as given."""
    return [float(w) if "." in w else int(w) for w in text.split(",")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--weights", default=str(ROOT / "training" / "default_model" / "weights.pt")
    )
    parser.add_argument("--architecture", default=nn.ARCHITECTURE)
    parser.add_argument(
        "--per-case", type=int, default=1000, help="held-out pen characters per case"
    )
    parser.add_argument(
        "--per-source", type=int, default=300, help="skeleton re-drawings per case and source"
    )
    parser.add_argument("--widths", default=",".join(map(str, canvas_eval.PEN_WIDTHS)))
    parser.add_argument("--cache-dir", default=str(ROOT / "var" / "cache"))
    parser.add_argument("--json", help="also write the tables here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--misreads", help="write sheets of the writers' misreads here")
    parser.add_argument("--misread-widths", default="8,36")
    args = parser.parse_args()
    widths = _widths(args.widths)

    model = nn.deserialize_state(Path(args.weights).read_bytes(), args.architecture)
    reader = canvas_eval.model_reader(model)
    started = time.monotonic()
    characters = strokes.load_pen_characters(
        DATA / "strokes" / "unipen_r01v07.jsonl.gz", heldout=True
    )
    drawings = canvas_eval.pen_drawings(characters, per_case=args.per_case, seed=args.seed)
    tables = {"unipen_heldout_writers": canvas_eval.measure(reader, drawings, widths=widths)}
    print(
        canvas_eval.format_table(
            tables["unipen_heldout_writers"], "Held-out UNIPEN writers, exact / tolerant %"
        )
    )
    print(json.dumps(canvas_eval.summary(tables["unipen_heldout_writers"]), indent=1))
    if args.misreads:
        misread_sheets(
            reader, drawings, widths=_widths(args.misread_widths), directory=Path(args.misreads)
        )
    sources = heldout_images(Path(args.cache_dir)) if args.per_source else {}
    for name, data in sources.items():
        redrawn = canvas_eval.skeleton_drawings(data, per_case=args.per_source, seed=args.seed)
        tables[name] = canvas_eval.measure(reader, redrawn, widths=widths)
        print(canvas_eval.format_table(tables[name], f"{name} re-drawn from skeletons"))
    print(f"{time.monotonic() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({str(k): v for k, v in tables.items()}, indent=1))


if __name__ == "__main__":
    main()
