"""Closed-loop HTTP load shared by the benchmarks: drawings to send, client threads, percentiles.

Each client thread sends one request at a time for a fixed time; a ``step``
function decides what to send and reports what kind of request it was and
whether it succeeded, and the runner times it. A new connection per request, so
gunicorn spreads requests over its workers.
"""

import base64
import json
import socket
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.drawing import ONE, SEVEN, ZERO, draw_png

SHAPES = [ONE, SEVEN, ZERO, [[(90, 70), (190, 70)], [(140, 70), (140, 230)]]]
SHAPE_LABELS = ["1", "7", "0", "t"]  # what a person would say each shape is


def drawings() -> list[tuple[bytes, str]]:
    """Sixteen canvas-like drawings as JSON prediction bodies, with their true labels."""
    found = []
    for index in range(len(SHAPES) * 4):
        strokes = SHAPES[index % len(SHAPES)]
        shifted = [[(x + index * 3 - 20, y + index * 2 - 15) for x, y in s] for s in strokes]
        png = draw_png(shifted, width=12 + index % 12)
        body = json.dumps({"image": base64.b64encode(png).decode()}).encode()
        found.append((body, SHAPE_LABELS[index % len(SHAPES)]))
    return found


def post_json(host: str, port: int, path: str, body: bytes, token: str = "") -> tuple[int, bytes]:
    """POST and read the answer; status 0 when the connection itself failed.

    A plain socket, not http.client: its header parsing cost the client a twentieth
    of the server's CPU, and the client shares the machine's two cores with it. The
    request asks the server to close, so the answer ends where the connection does.
    """
    authorization = f"Authorization: Token {token}\r\n" if token else ""
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"{authorization}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    chunks = []
    try:
        with socket.create_connection((host, port), timeout=30) as connection:
            connection.sendall(request)
            while chunk := connection.recv(65536):
                chunks.append(chunk)
    except OSError:
        return 0, b""
    head, _, answer = b"".join(chunks).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    # A chunked answer would need decoding; gunicorn sends Django's with a length.
    if len(status_line) < 2 or not status_line[1].isdigit() or b"chunked" in head.lower():
        return 0, b""
    return int(status_line[1]), answer


@dataclass
class Tally:
    """What the clients saw, per kind of request."""

    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    statuses: dict[str, Counter] = field(default_factory=dict)
    elapsed: float = 0.0
    states: list[dict] = field(default_factory=list)

    def add(self, kind: str, ok: bool, status: int, ms: float):
        self.statuses.setdefault(kind, Counter())[status] += 1
        if ok:
            self.latencies_ms.setdefault(kind, []).append(ms)

    def ok(self, kind: str) -> int:
        return len(self.latencies_ms.get(kind, []))

    def errors(self, kind: str) -> int:
        return sum(self.statuses.get(kind, Counter()).values()) - self.ok(kind)

    def summary(self, *kinds: str) -> dict:
        """Throughput and latency percentiles of the successful requests of these kinds."""
        latencies = [ms for kind in kinds for ms in self.latencies_ms.get(kind, [])]
        cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
        return {
            "requests": len(latencies),
            "errors": sum(self.errors(kind) for kind in kinds),
            "rps": len(latencies) / self.elapsed if self.elapsed else 0.0,
            "p50": cuts[49],
            "p95": cuts[94],
            "p99": cuts[98],
        }


def run_clients(clients: int, seconds: float, step, *, state=lambda index: {}) -> Tally:
    """Run ``clients`` threads for ``seconds``; ``step(state)`` returns (kind, ok, status).

    ``state(index)`` makes each thread's own state; the states come back in the tally.
    """
    tally = Tally()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(index: int):
        mine = state(index)
        seen = []
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            kind, ok, status = step(mine)
            seen.append((kind, ok, status, (time.perf_counter() - started) * 1000))
        with lock:
            for record in seen:
                tally.add(*record)
            tally.states.append(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tally.elapsed = time.monotonic() - started
    return tally
