"""Accuracy when the page says what goes in the field: classes=digits and classes=letters.

Through the real API, in process, on a throw-away deployment with the committed
default model installed. MNIST's test set is sent as
canvas PNGs (black ink on white, 560 px, as the page sends them) with
``classes=digits``; the handwriting folder's held-out lowercase letters are sent
as their files with ``classes=letters``. Both are also sent with ``classes=all``
for comparison with ``--compare``.

    .venv/bin/python bench/context_accuracy.py [--limit N]
"""

import argparse
import base64
import io
import os
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.handwriting import HANDWRITING
from bench.server import Deployment

MNIST = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist"
CANVAS_PIXELS = 560


def mnist_as_canvas(limit: int | None) -> list[tuple[bytes, str]]:
    """MNIST test digits as the page would send them: black on white, 560x560 PNGs."""
    from torchvision.datasets import MNIST as MNISTDataset

    test = MNISTDataset(root=str(MNIST), train=False, download=False)
    images, labels = test.data.numpy(), test.targets.numpy()
    rows = []
    for image, label in list(zip(images, labels, strict=True))[:limit]:
        canvas = Image.fromarray(255 - image, mode="L").resize(
            (CANVAS_PIXELS, CANVAS_PIXELS), Image.Resampling.BILINEAR
        )
        buffer = io.BytesIO()
        canvas.convert("RGBA").save(buffer, format="PNG")
        rows.append((buffer.getvalue(), str(int(label))))
    return rows


def heldout_letters(limit: int | None) -> list[tuple[bytes, str]]:
    from training import datasets
    from training.classes import CLASSES, DIGITS

    files = [
        (path, CLASSES[label])
        for path, label in datasets.heldout_files(HANDWRITING)
        if CLASSES[label] not in DIGITS
    ]
    return [(path.read_bytes(), label) for path, label in files[:limit]]


def accuracy(client, drawings, classes: str) -> tuple[float, int]:
    right = 0
    for png, label in drawings:
        response = client.post(
            "/api/predictions/",
            {"image": base64.b64encode(png).decode(), "classes": classes},
            format="json",
        )
        if response.status_code == 400:  # a blank image: counted as wrong
            continue
        assert response.status_code == 201, response.content
        right += response.json()["label"] == label
    return right / len(drawings), len(drawings)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="at most this many of each set")
    parser.add_argument("--compare", action="store_true", help="also send them with classes=all")
    args = parser.parse_args()
    deployment = Deployment()
    try:
        os.environ.update(deployment.env)
        import django

        django.setup()
        from rest_framework.test import APIClient

        from training.models import ModelVersion

        client = APIClient(HTTP_HOST="127.0.0.1")
        version = ModelVersion.objects.get(status=ModelVersion.Status.ACTIVE)
        print(f"model v{version.number} ({version.training_info.get('kind', 'default model')})")
        for name, drawings, context in (
            ("MNIST test as canvas PNGs", mnist_as_canvas(args.limit), "digits"),
            ("held-out handwritten letters", heldout_letters(args.limit), "letters"),
        ):
            narrowed, count = accuracy(client, drawings, context)
            print(f"{name} ({count}): classes={context} {narrowed:.2%}", flush=True)
            if args.compare:
                print(f"{name} ({count}): classes=all {accuracy(client, drawings, 'all')[0]:.2%}")
    finally:
        deployment.close()


if __name__ == "__main__":
    main()
