"""Prediction throughput and latency under gunicorn (2 workers) on loopback.

Posts canvas-like PNGs (drawn with Pillow, as the page sends them) from 1 and from
8 concurrent clients for a fixed time each, prints requests/s, p50/p95/p99 and
errors, then checks that every successful request stored exactly one sample.

    .venv/bin/python bench/predict_load.py [--seconds 20]
"""

import argparse
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loadgen
from bench.server import Deployment


def request_bodies() -> list[bytes]:
    return [body for body, _ in loadgen.drawings()]


def run_clients(host: str, port: int, bodies, clients: int, seconds: float) -> dict:
    def step(state):
        body = bodies[state["next"] % len(bodies)]
        state["next"] += 1
        status, _ = loadgen.post_json(host, port, "/api/predictions/", body)
        return "predict", status == 201, status

    tally = loadgen.run_clients(clients, seconds, step, state=lambda index: {"next": index})
    return {"clients": clients, **tally.summary("predict")}


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
