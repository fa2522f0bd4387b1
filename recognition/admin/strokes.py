"""A sample's recorded pen strokes, replayed as an animated drawing on its admin page."""

from django.template.loader import render_to_string

# Stored strokes may predate their validation: the page draws only what makes sense.
_DRAWABLE_COORDINATE = 1e7


def drawable_strokes(raw) -> list[list[tuple[float, float]]]:
    """The (x, y) of every point that is a list of finite, bounded numbers; nothing else."""
    strokes = []
    for stroke in raw if isinstance(raw, list) else []:
        points = [
            (float(point[0]), float(point[1]))
            for point in (stroke if isinstance(stroke, list) else [])
            if isinstance(point, list)
            and len(point) >= 2
            and all(
                isinstance(v, int | float)
                and not isinstance(v, bool)
                and abs(v) <= _DRAWABLE_COORDINATE
                for v in point[:2]
            )
        ]
        if points:
            strokes.append(points)
    return strokes


def strokes_replay_html(raw) -> str:
    """The strokes as HTML, one path after another, or why there is nothing to draw."""
    strokes = drawable_strokes(raw)
    if not strokes:
        return "not recorded" if not raw else "recorded, but not drawable"
    # Strokes are in the page's CSS pixels, not the image's: frame their own
    # bounding box, squared, with a margin.
    xs = [point[0] for stroke in strokes for point in stroke]
    ys = [point[1] for stroke in strokes for point in stroke]
    size = max(max(xs) - min(xs), max(ys) - min(ys), 1.0) * 1.3
    left = (min(xs) + max(xs) - size) / 2
    top = (min(ys) + max(ys) - size) / 2
    paths = [
        " ".join(
            f"{'M' if i == 0 else 'L'}{point[0]:.1f},{point[1]:.1f}"
            for i, point in enumerate(stroke)
        )
        for stroke in strokes
    ]
    return render_to_string(
        "admin/recognition/sample/strokes_replay.html",
        {
            "view_box": f"{left:.1f} {top:.1f} {size:.1f} {size:.1f}",
            "width": f"{size / 24:.1f}",
            "strokes": [{"d": d, "begin": f"{0.6 * i:.1f}"} for i, d in enumerate(paths)],
        },
    )
