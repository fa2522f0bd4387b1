"""Where one prediction request's time goes, in one process, in the order it is spent.

The same canvas-like PNGs as ``bench/predict_load.py``. Each round times the
service's pieces one after another on one drawing (so each piece meets the caches
the one before it left, as in a request), then the whole ``predict_drawing``
service, then the whole request through Django, its middleware and DRF (the test
client). Storing (the drawing's file, two inserts, the commit) is the service's
time less its pieces; Django + DRF is the request's time less the service's.
gunicorn, the socket and the client come on top of all of this.

    .venv/bin/python bench/predict_stages.py [--rounds 600]
"""

import argparse
import base64
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loadgen
from bench.server import Deployment


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, (time.perf_counter() - started) * 1000


def measure(rounds: int) -> dict[str, list[float]]:
    import django

    django.setup()
    from django.test import Client
    from PIL import Image

    from recognition import services
    from recognition.images import decode_drawing, encode_png
    from training.preprocessing import preprocess_image
    from training.serving import active_model

    bodies = [body for body, _ in loadgen.drawings()]
    pngs = [base64.b64decode(json.loads(body)["image"]) for body in bodies]
    client = Client(HTTP_HOST="127.0.0.1")
    times: dict[str, list[float]] = {}
    for index in range(rounds + 32):
        data, body = pngs[index % len(pngs)], bodies[index % len(bodies)]
        loaded = active_model.get()
        image, decode_ms = timed(decode_drawing, data)
        glyph, preprocess_ms = timed(preprocess_image, image)
        _, forward_ms = timed(loaded.predict_proba, glyph[np.newaxis])
        _, preview_ms = timed(encode_png, Image.fromarray(glyph, mode="L"))
        _, service_ms = timed(services.predict_drawing, image_data=data, source="api")
        response, request_ms = timed(
            client.post, "/api/predictions/", body, content_type="application/json"
        )
        assert response.status_code == 201, response.content
        if index < 32:
            continue  # warm-up
        pieces = decode_ms + preprocess_ms + forward_ms + preview_ms
        for name, value in (
            ("decode PNG", decode_ms),
            ("preprocess", preprocess_ms),
            ("forward pass", forward_ms),
            ("preview PNG", preview_ms),
            ("store: file, 2 inserts, commit", service_ms - pieces),
            ("predict_drawing service", service_ms),
            ("Django, DRF, test client", request_ms - service_ms),
            ("request in process", request_ms),
        ):
            times.setdefault(name, []).append(value)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=600)
    args = parser.parse_args()
    deployment = Deployment()
    try:
        os.environ.update(deployment.env)
        times = measure(args.rounds)
    finally:
        deployment.close()
    total = statistics.median(times["request in process"])
    print(f"{args.rounds} requests, 280x280 canvas PNGs, 1 torch thread; medians")
    print(f"{'stage':32} {'ms':>6} {'share':>6}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:32} {median:6.2f} {median / total:6.0%}")


if __name__ == "__main__":
    main()
