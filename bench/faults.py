"""Fault drills on a whole deployment under load: a worker killed mid fine-tune, Redis restarted.

Each drill runs the mixed load of bench/load.py (predictions and corrections)
against gunicorn, a Celery worker and Redis on loopback, injects its fault while
the load runs, lets the system recover, and reports:

- whether predictions kept being served (every failed request, and the 5xx
  among them, counted; also during the fault window alone);
- whether any correction was lost (each must end trained, rejected or not
  needed: the pending ones are swept into a run once the fault is over);
- whether a partial model could have become active (every model version's
  weights match their sha256, the active version loads, no stray temp files).

(a) ``kill -9`` of the Celery worker and its pool in the middle of a fine-tune;
    a new worker (with the periodic sweep) fails the lost run and retrains.
(b) Redis killed and restarted empty during the load, with throttling on, so
    the throttle cache, the broker and the result backend all lose it.

    .venv/bin/python bench/faults.py [--seconds 40] [--users 8]
"""

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loadgen
from bench.load import ENVIRONMENT, MixedLoad, audit, database_of, lost, query, settle
from bench.server import Deployment

# Runs fail over fast in a drill: a dead run is noticed after 10 s, swept every second.
DRILL_ENVIRONMENT = {**ENVIRONMENT, "FINE_TUNE_STALE_SECONDS": 10, "TRAINING_SWEEP_INTERVAL": 1}
INTEGRITY_SCRIPT = """
import json
from django.conf import settings
from training import registry
from training.models import ModelVersion
bad = []
for version in ModelVersion.objects.all():
    try:
        registry.read_verified_weights(version)
    except registry.WeightsIntegrityError as error:
        bad.append(str(error))
active = ModelVersion.objects.filter(status="active")
number = None
if active.count() == 1:
    registry.version_load_model(active.get())
    number = active.get().number
stray = [p.name for p in (settings.MEDIA_ROOT / "model_versions").glob(".partial-*")]
print(json.dumps({"versions": ModelVersion.objects.count(), "bad": bad, "active": number,
                  "stray": stray}))
"""


def model_integrity(deployment: Deployment) -> dict:
    """Every version's weights match their sha256 and the one active version loads."""
    return json.loads(deployment.manage("shell", "-c", INTEGRITY_SCRIPT).strip().splitlines()[-1])


def kill_tree(pid: int):
    """SIGKILL a process and its children (the Celery pool), as a crashed machine would."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    for target in [pid, *children]:
        with contextlib.suppress(ProcessLookupError):  # it may have died on its own
            os.kill(target, signal.SIGKILL)


class LoadInBackground:
    """The mixed load in a thread, every request logged with the time it started."""

    def __init__(self, url: str, *, token: str, users: int, seconds: float):
        self.load = MixedLoad(url, token=token)
        self.tally = None
        self.thread = threading.Thread(target=self._run, args=(users, seconds))

    def _step(self, state):
        started = time.monotonic()
        kind, ok, status = self.load.step(state)
        state.setdefault("log", []).append((started, kind, status))
        return kind, ok, status

    def _run(self, users, seconds):
        self.tally = loadgen.run_clients(users, seconds, self._step, state=self.load.state)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.thread.join()

    def requests(self, kind: str, since: float = 0.0, until: float = float("inf")) -> list[int]:
        return [
            status
            for state in self.tally.states
            for started, seen, status in state["log"]
            if seen == kind and since <= started < until
        ]


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _wait_worker_ready(deployment: Deployment, name: str):
    log = deployment.dir / f"{name}.log"
    _wait(lambda: " ready." in log.read_text(errors="replace"), 120, f"worker {name}")


def _query(deployment: Deployment, sql: str) -> list[tuple]:
    return query(database_of(deployment), sql)


def _outcome(deployment, background, window, settle_timeout) -> dict:
    waited = settle(database_of(deployment), timeout=settle_timeout)
    figures = audit(database_of(deployment), background.tally)
    predictions = background.requests("predict")
    during = background.requests("predict", *window)
    return {
        "predictions": len(predictions),
        "prediction_failures": sum(1 for s in predictions if s != 201),
        "prediction_5xx": sum(1 for s in predictions if s >= 500),
        "predictions_during_fault": len(during),
        "failures_during_fault": sum(1 for s in during if s != 201),
        "corrections": len(background.requests("correct")),
        "correction_failures": sum(1 for s in background.requests("correct") if s != 201),
        "settled_after_s": round(waited, 1),
        "pending_left": figures["states"].get("pending", 0),
        "lost": lost(figures),
        "states": dict(figures["states"]),
        "runs": dict(figures["runs"]),
        "integrity": model_integrity(deployment),
    }


def worker_killed_mid_fine_tune(*, users: int, seconds: float, settle_timeout: float = 300):
    """(a) kill -9 the worker while it trains; a new worker recovers the run's corrections."""
    # The first worker's fine-tunes never end by themselves: the kill always lands mid-run.
    endless = {"FINE_TUNE_STEPS": 100_000, "FINE_TUNE_MAX_SECONDS": 3600}
    with Deployment(**DRILL_ENVIRONMENT, **endless) as deployment:
        deployment.start_redis()
        doomed = deployment.start_worker("doomed")
        url = deployment.start_web(workers=2)
        _wait_worker_ready(deployment, "doomed")
        token = deployment.trusted_token()
        with LoadInBackground(url, token=token, users=users, seconds=seconds) as background:
            _wait(
                lambda: _query(
                    deployment,
                    "select count(*) from training_trainingrun "
                    "where status='running' and heartbeat_at > started_at",
                )[0][0],
                timeout=seconds - 2,
                what="a fine-tune to be training",
            )
            killed_at = time.monotonic()
            kill_tree(doomed.pid)
            doomed.wait(10)
            (killed_run,) = _query(
                deployment, "select id from training_trainingrun where status='running'"
            )[0]
            for name in endless:
                deployment.env.pop(name)
            deployment.start_worker("recovered", beat=True)
        outcome = _outcome(deployment, background, (killed_at, killed_at + 15), settle_timeout)
        status, error, result = _query(
            deployment,
            f"select status, error, result_version_id from training_trainingrun "
            f"where id={killed_run}",
        )[0]
    return {
        **outcome,
        "killed_run": {"id": killed_run, "status": status, "error": error, "result": result},
    }


def redis_restarted_under_load(
    *, users: int, seconds: float, down_after: float = 8, down_for: float = 10,
    settle_timeout: float = 300,
) -> dict:  # fmt: skip
    """(b) Redis dies during the load and comes back empty; throttling on, so the cache is used."""
    with Deployment(
        **DRILL_ENVIRONMENT, THROTTLE_ANON="100000/min", THROTTLE_USER="100000/min"
    ) as deployment:
        redis = deployment.start_redis()
        deployment.start_worker(beat=True)
        url = deployment.start_web(workers=2)
        _wait_worker_ready(deployment, "worker")
        token = deployment.trusted_token()
        with LoadInBackground(url, token=token, users=users, seconds=seconds) as background:
            time.sleep(down_after)
            down_at = time.monotonic()
            redis.kill()
            redis.wait(10)
            time.sleep(down_for)
            up_at = time.monotonic()
            deployment.start_redis()
        outcome = _outcome(deployment, background, (down_at, up_at), settle_timeout)
        web_log = (deployment.dir / "web.log").read_text(errors="replace")
    return {
        **outcome,
        "redis_down_s": round(up_at - down_at, 1),
        "throttle_fail_open_warnings": web_log.count("Throttle cache unavailable"),
    }


def healthy(outcome: dict) -> list[str]:
    """What went wrong, if anything."""
    problems = []
    if outcome["prediction_failures"]:
        problems.append(f"{outcome['prediction_failures']} predictions failed")
    if outcome["correction_failures"]:
        problems.append(f"{outcome['correction_failures']} corrections failed")
    if outcome["lost"]:
        problems.append(f"{outcome['lost']} lost")
    if outcome["pending_left"]:
        problems.append(f"{outcome['pending_left']} corrections still pending")
    integrity = outcome["integrity"]
    if integrity["bad"] or integrity["active"] is None or integrity["stray"]:
        problems.append(f"model integrity: {integrity}")
    return problems


def print_report(name: str, outcome: dict):
    print(f"--- {name}")
    for key, value in outcome.items():
        print(f"  {key}: {value}")
    problems = healthy(outcome)
    print(f"  verdict: {'OK' if not problems else 'FAILED: ' + '; '.join(problems)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="load per drill")
    parser.add_argument("--users", type=int, default=8)
    args = parser.parse_args()
    print(
        f"mixed load (90% predictions / 10% corrections), {args.users} users, "
        f"{args.seconds:.0f} s per drill, gunicorn 2 workers + Celery worker + Redis"
    )
    killed = worker_killed_mid_fine_tune(users=args.users, seconds=args.seconds)
    print_report("(a) Celery worker killed with SIGKILL mid fine-tune", killed)
    restarted = redis_restarted_under_load(users=args.users, seconds=args.seconds)
    print_report("(b) Redis killed and restarted empty under load", restarted)
    sys.exit(0 if not healthy(killed) and not healthy(restarted) else 1)


if __name__ == "__main__":
    main()
