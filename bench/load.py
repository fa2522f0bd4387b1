"""Mixed load on a whole deployment: predictions and corrections, then an audit of what was kept.

Gunicorn, a Celery worker (with the periodic sweep) and Redis on loopback, no
throttling. Each simulated user draws (90%) or corrects one of its own earlier
drawings (10%); some corrections confirm the model, others teach it (a "1" meant
as an "l") and are fine-tuned on while the load runs. Prints throughput, p50/p95/p99
and errors, waits for the training pipeline to settle, then checks the database:
every successful prediction stored exactly one sample, every correction is stored,
is trained, rejected, pending or not needed, and was settled by at most one run.

    .venv/bin/python bench/load.py [--seconds 60] [--users 16] [--workers 2]
"""

import argparse
import json
import random
import sqlite3
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loadgen
from bench.server import Deployment

CORRECTION_SHARE = 0.1
# The model reads these drawings right, so a correction with the true label only
# confirms it; half the time the user meant the look-alike letter, which teaches.
LOOK_ALIKES = {"1": "l", "0": "o"}
# A fine-tune trains with one thread so that the web workers keep the other core.
ENVIRONMENT = {"FINE_TUNE_THREADS": 1}


class MixedLoad:
    """The step and per-user state for loadgen.run_clients."""

    def __init__(
        self, url: str, *, token: str, correction_share: float = CORRECTION_SHARE, seed: int = 0
    ):
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.correction_share = correction_share
        # A trusted writer's app draws and corrects (only a drawing's drawer may label it),
        # so that corrections train the shared model.
        self.token = token
        self.seed = seed
        self.drawings = loadgen.drawings()

    def state(self, index: int) -> dict:
        return {
            "rng": random.Random(self.seed * 1000 + index),
            "uncorrected": [],  # (sample id, true label) of this user's drawings
            "samples": [],
            "corrections": [],
        }

    def step(self, state) -> tuple[str, bool, int]:
        rng = state["rng"]
        if state["uncorrected"] and rng.random() < self.correction_share:
            sample, label = state["uncorrected"].pop(rng.randrange(len(state["uncorrected"])))
            if rng.random() < 0.5:
                label = LOOK_ALIKES.get(label, label)
            body = json.dumps({"label": label}).encode()
            path = f"/api/samples/{sample}/corrections/"
            status, answer = loadgen.post_json(self.host, self.port, path, body, self.token)
            if status == 201:
                state["corrections"].append(json.loads(answer)["id"])
            return "correct", status == 201, status
        body, label = self.drawings[rng.randrange(len(self.drawings))]
        status, answer = loadgen.post_json(
            self.host, self.port, "/api/predictions/", body, self.token
        )
        if status == 201:
            sample = json.loads(answer)["sample"]
            state["samples"].append(sample)
            state["uncorrected"].append((sample, label))
        return "predict", status == 201, status

    def run(self, users: int, seconds: float) -> loadgen.Tally:
        return loadgen.run_clients(users, seconds, self.step, state=self.state)


def database_of(deployment: Deployment) -> Path:
    return Path(deployment.env["DATABASE_URL"].removeprefix("sqlite:///"))


def query(database: Path, sql: str) -> list[tuple]:
    connection = sqlite3.connect(database, timeout=30)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def settle(database: Path, *, timeout: float) -> float:
    """Wait until no correction is pending and no run is queued or running; the seconds taken."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        busy = query(
            database,
            "select (select count(*) from recognition_correction where training_state='pending')"
            " + (select count(*) from training_trainingrun where status in ('queued','running'))",
        )[0][0]
        if not busy:
            break
        time.sleep(1)
    return time.monotonic() - started


def audit(database: Path, tally: loadgen.Tally) -> dict:
    """Compare what the clients were told with what the database kept."""
    samples = {s for state in tally.states for s in state["samples"]}
    corrections = {c for state in tally.states for c in state["corrections"]}
    stored_samples = {row[0] for row in query(database, "select id from recognition_sample")}
    states = dict(query(database, "select id, training_state from recognition_correction"))
    settled_by = Counter(
        correction
        for (correction,) in query(
            database,
            "select m.correction_id from training_trainingrun_corrections m"
            " join training_trainingrun r on r.id = m.trainingrun_id"
            " where r.status in ('succeeded', 'rejected')",
        )
    )
    trained_without_run = [c for c, s in states.items() if s == "trained" and not settled_by[c]]
    return {
        "predictions_ok": len(samples),
        "stored_samples": len(stored_samples),
        "samples_lost": len(samples - stored_samples),
        "samples_unanswered": len(stored_samples - samples),
        "corrections_ok": len(corrections),
        "corrections_stored": len(states),
        "corrections_lost": len(corrections - set(states)),
        "states": Counter(states.values()),
        "settled_twice": sum(1 for n in settled_by.values() if n > 1),
        "trained_without_run": len(trained_without_run),
        "runs": Counter(
            status for (status,) in query(database, "select status from training_trainingrun")
        ),
    }


def lost(figures: dict) -> int:
    return (
        figures["samples_lost"]
        + figures["corrections_lost"]
        + figures["settled_twice"]
        + figures["trained_without_run"]
    )


def report(tally: loadgen.Tally, figures: dict) -> list[str]:
    lines = [f"{'requests':<12} {'ok':>6} {'errors':>6} {'req/s':>7} {'p50 ms':>8} "
             f"{'p95 ms':>8} {'p99 ms':>8}"]  # fmt: skip
    for name, kinds in (("predictions", ["predict"]), ("corrections", ["correct"]),
                        ("all", ["predict", "correct"])):  # fmt: skip
        s = tally.summary(*kinds)
        lines.append(
            f"{name:<12} {s['requests']:>6} {s['errors']:>6} {s['rps']:>7.1f} "
            f"{s['p50']:>8.1f} {s['p95']:>8.1f} {s['p99']:>8.1f}"
        )
    failures = {
        k: {s: n for s, n in c.items() if s not in (201,)} for k, c in tally.statuses.items()
    }
    if any(failures.values()):
        lines.append(f"error statuses (0 = no connection): {failures}")
    states = ", ".join(f"{s} {n}" for s, n in sorted(figures["states"].items()))
    runs = ", ".join(f"{s} {n}" for s, n in sorted(figures["runs"].items()))
    lines += [
        f"stored samples {figures['stored_samples']} == successful predictions "
        f"{figures['predictions_ok']}: lost {figures['samples_lost']}, "
        f"stored but unanswered {figures['samples_unanswered']}",
        f"corrections stored {figures['corrections_stored']} of {figures['corrections_ok']} "
        f"accepted: {states}",
        f"training runs: {runs}; corrections settled by two runs {figures['settled_twice']}, "
        f"trained without a run {figures['trained_without_run']}",
        f"errors {tally.errors('predict') + tally.errors('correct')}, lost {lost(figures)}",
    ]
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--settle", type=float, default=300.0, help="seconds to wait for training")
    args = parser.parse_args()
    with Deployment(**ENVIRONMENT) as deployment:
        deployment.start_redis()
        deployment.start_worker(beat=True)
        url = deployment.start_web(workers=args.workers)
        tally = MixedLoad(url, token=deployment.trusted_token()).run(args.users, args.seconds)
        waited = settle(database_of(deployment), timeout=args.settle)
        figures = audit(database_of(deployment), tally)
    print(
        f"gunicorn {args.workers} workers + Celery worker + Redis on loopback, {args.users} users, "
        f"{args.seconds:.0f} s, {1 - CORRECTION_SHARE:.0%} predictions / "
        f"{CORRECTION_SHARE:.0%} corrections; training settled {waited:.0f} s after the load"
    )
    print("\n".join(report(tally, figures)))
    errors = tally.errors("predict") + tally.errors("correct")
    sys.exit(0 if errors == 0 and lost(figures) == 0 else 1)


if __name__ == "__main__":
    main()
