"""What stroke-width normalisation costs a prediction: this preprocessing against an earlier one.

Held-out UNIPEN characters drawn as the page sends them (random pen width 2-40 px)
on 280 and 560 px canvases, as PNG bytes; the earlier ``training/preprocessing.py``
is read from git (by default the last commit before the normalisation). Both run in
this one process, alternating in three rounds, so host drift touches both alike.

    .venv/bin/python bench/preprocess_cost.py [--before c31334c] [--per-canvas 120]
"""

import argparse
import io
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training import preprocessing, strokes

ROOT = Path(__file__).resolve().parent.parent
STROKES = ROOT.parent / "shared" / "data" / "strokes" / "unipen_r01v07.jsonl.gz"


def preprocessing_at(revision: str):
    """The ``training.preprocessing`` module as it was at ``revision``."""
    source = subprocess.run(
        ["git", "show", f"{revision}:training/preprocessing.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType("earlier_preprocessing")
    exec(compile(source, f"{revision}:training/preprocessing.py", "exec"), module.__dict__)
    return module


def canvas_pngs(characters, *, canvas: int, count: int, rng) -> list[bytes]:
    pngs = []
    for character in characters[:count]:
        pen = strokes.random_pen(rng, width=float(rng.uniform(2, 40)), canvas=canvas)
        buffer = io.BytesIO()
        strokes.draw(character.strokes, pen).save(buffer, "PNG")
        pngs.append(buffer.getvalue())
    return pngs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="c31334c", help="git revision of the earlier one")
    parser.add_argument("--per-canvas", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    versions = {"before": preprocessing_at(args.before), "now": preprocessing}
    characters = strokes.load_pen_characters(STROKES, heldout=True)
    rng = np.random.default_rng(0)
    for canvas in (280, 560):
        pngs = canvas_pngs(characters, canvas=canvas, count=args.per_canvas, rng=rng)
        times = {name: [] for name in versions}
        for round_number in range(args.rounds):
            order = list(versions) if round_number % 2 == 0 else list(versions)[::-1]
            for name in order:
                for png in pngs:
                    started = time.perf_counter()
                    versions[name].preprocess_image(Image.open(io.BytesIO(png)))
                    times[name].append((time.perf_counter() - started) * 1000)
        before, now = (statistics.median(times[name]) for name in ("before", "now"))
        print(
            f"{canvas} px canvas: preprocess p50 {before:.2f} ms before, {now:.2f} ms now "
            f"({now - before:+.2f} ms), {len(pngs)} drawings x {args.rounds} rounds"
        )


if __name__ == "__main__":
    main()
