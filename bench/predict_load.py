"""Prediction throughput and latency under gunicorn (2 workers) on loopback.

Posts canvas-like PNGs (drawn with Pillow, as the page sends them) from 1 and from
8 concurrent clients for a fixed time each, prints requests/s, p50/p95/p99 and
errors, then checks that every successful request stored exactly one sample.

    .venv/bin/python bench/predict_load.py [--seconds 20]
"""

import argparse
import base64
import http.client
import json
import sqlite3
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.server import Deployment
from tests.drawing import ONE, SEVEN, ZERO, draw_png

SHAPES = [ONE, SEVEN, ZERO, [[(90, 70), (190, 70)], [(140, 70), (140, 230)]]]


def request_bodies() -> list[bytes]:
    bodies = []
    for index, strokes in enumerate(SHAPES * 4):
        shifted = [[(x + index * 3 - 20, y + index * 2 - 15) for x, y in s] for s in strokes]
        png = draw_png(shifted, width=12 + index % 12)
        bodies.append(json.dumps({"image": base64.b64encode(png).decode()}).encode())
    return bodies


def run_clients(host: str, port: int, bodies, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(offset: int):
        mine, failed, index = [], 0, offset
        while time.monotonic() < stop_at:
            body = bodies[index % len(bodies)]
            index += 1
            started = time.perf_counter()
            try:
                connection = http.client.HTTPConnection(host, port, timeout=30)
                connection.request(
                    "POST",
                    "/api/predictions/",
                    body,
                    {"Content-Type": "application/json"},
                )
                response = connection.getresponse()
                response.read()
                connection.close()
                ok = response.status == 201
            except OSError:
                ok = False
            if ok:
                mine.append((time.perf_counter() - started) * 1000)
            else:
                failed += 1
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0] * 99
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors[0],
        "rps": len(latencies) / elapsed,
        "p50": cuts[49],
        "p95": cuts[94],
        "p99": cuts[98],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    bodies = request_bodies()
    with Deployment() as deployment:
        url = deployment.start_web(workers=args.workers)
        host, port = url.removeprefix("http://").split(":")
        run_clients(host, int(port), bodies, 2, 3)  # warm up both workers
        database = Path(deployment.env["DATABASE_URL"].removeprefix("sqlite:///"))
        before = sqlite3.connect(database).execute("select count(*) from recognition_sample")
        stored_before = before.fetchone()[0]
        results = [run_clients(host, int(port), bodies, n, args.seconds) for n in (1, 8)]
        stored = sqlite3.connect(database).execute("select count(*) from recognition_sample")
        stored_after = stored.fetchone()[0] - stored_before

    print(f"gunicorn, {args.workers} workers, {args.seconds:.0f} s per level, 280x280 canvas PNGs")
    print(f"{'clients':>7} {'requests':>8} {'errors':>6} {'req/s':>7} {'p50 ms':>7} "
          f"{'p95 ms':>7} {'p99 ms':>7}")  # fmt: skip
    for r in results:
        print(
            f"{r['clients']:>7} {r['requests']:>8} {r['errors']:>6} {r['rps']:>7.1f} "
            f"{r['p50']:>7.2f} {r['p95']:>7.2f} {r['p99']:>7.2f}"
        )
    succeeded = sum(r["requests"] for r in results)
    verdict = "OK" if stored_after == succeeded else "MISMATCH"
    print(f"stored samples {stored_after} == successful predictions {succeeded}: {verdict}")
    sys.exit(0 if verdict == "OK" else 1)


if __name__ == "__main__":
    main()
