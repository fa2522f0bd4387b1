"""Canvas-like drawings made with Pillow, for tests and benchmarks."""

import io

import numpy as np
from PIL import Image, ImageDraw


def draw_png(
    strokes,
    *,
    size: int = 280,
    width: int = 18,
    mode: str = "RGBA",
    ink=(0, 0, 0, 255),
    paper=(255, 255, 255, 255),
    image_format: str = "PNG",
) -> bytes:
    """A canvas-like drawing: anti-aliased round strokes on a square canvas."""
    scale = 4  # draw big, then reduce: anti-aliased edges like a browser canvas
    image = Image.new("RGBA", (size * scale, size * scale), paper)
    pen = ImageDraw.Draw(image)
    for stroke in strokes:
        points = [(x * scale, y * scale) for x, y in stroke]
        pen.line(points, fill=ink, width=width * scale, joint="curve")
        for x, y in points[:: max(1, len(points) - 1)]:
            radius = width * scale / 2
            pen.ellipse((x - radius, y - radius, x + radius, y + radius), fill=ink)
    image = image.resize((size, size), Image.Resampling.LANCZOS).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


# A 1 with its flag, as most people write it: a bare bar reads as much as an l or an i.
ONE = [[(110, 80), (140, 50), (140, 230)]]
SEVEN = [[(80, 60), (200, 60), (120, 230)]]
ZERO = [[(140 + 60 * np.sin(t), 140 - 90 * np.cos(t)) for t in np.linspace(0, 2 * np.pi, 40)]]
