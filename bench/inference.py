"""Per-image latency of preprocessing + forward pass, single and batched, on 1 and 2 threads.

Uses the committed default model, as the web serves it (``nn.for_inference``:
BatchNorm folded into the convolutions), and canvas-like PNGs (560x560, as a 280 CSS px
canvas on a 2x screen sends them). No Django: this is the ML core alone.

    .venv/bin/python bench/inference.py
"""

import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.drawing import ONE, SEVEN, ZERO, draw_png
from training import nn
from training.preprocessing import preprocess_image

MODEL = Path(__file__).resolve().parent.parent / "training" / "default_model" / "weights.pt"
BATCH = 32


def timed(function, repeats: int) -> list[float]:
    function()  # warm up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return times


def main():
    trained = nn.deserialize_state(MODEL.read_bytes(), nn.ARCHITECTURE)
    model = nn.for_inference(trained)
    shapes = [ONE, SEVEN, ZERO]
    pngs = [draw_png([[(2 * x, 2 * y) for x, y in s] for s in shape], size=560, width=36)
            for shape in shapes]  # fmt: skip
    images = [Image.open(io.BytesIO(png)) for png in pngs]
    for image in images:
        image.load()
    glyphs = np.stack([preprocess_image(image) for image in images])
    batch = np.resize(glyphs, (BATCH, 28, 28))

    def preprocess(index: int) -> np.ndarray:
        return preprocess_image(images[index])

    print(f"model {nn.ARCHITECTURE}, {sum(p.numel() for p in trained.parameters()):,} parameters")
    print(f"{'threads':>7} {'step':<34} {'median ms':>9} {'p95 ms':>7} {'per image ms':>12}")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        rows = [
            ("decode PNG + preprocess", lambda: preprocess_image(Image.open(io.BytesIO(pngs[1])))),
            ("forward, single image", lambda: nn.predict_proba(model, glyphs[:1])),
            ("forward, single, BatchNorm unfolded", lambda: nn.predict_proba(trained, glyphs[:1])),
            ("preprocess + forward, single", lambda: nn.predict_proba(model, preprocess(1))),
            (f"forward, batch of {BATCH}", lambda: nn.predict_proba(model, batch)),
        ]
        for name, function in rows:
            count = BATCH if "batch" in name else 1
            times = timed(function, 200 if count == 1 else 50)
            median = statistics.median(times)
            p95 = statistics.quantiles(times, n=20)[18]
            print(f"{threads:>7} {name:<34} {median:>9.3f} {p95:>7.3f} {median / count:>12.3f}")


if __name__ == "__main__":
    main()
