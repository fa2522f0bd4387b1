"""Faults during a running load on a live deployment (gunicorn, Celery worker, Redis).

tests/test_online_learning.py covers a worker killed mid-run and Redis down
between requests in one process; here the fault strikes while simulated users
keep drawing and correcting through gunicorn, as bench/faults.py drills it.
"""

import base64
import logging
import time

import pytest
from rest_framework.test import APIClient

from bench.faults import redis_restarted_under_load, worker_killed_mid_fine_tune
from recognizer_site import throttles

from .conftest import ONE, draw_png

pytestmark = pytest.mark.celery


def assert_nothing_lost_and_models_whole(outcome: dict):
    assert outcome["lost"] == 0, outcome
    assert outcome["pending_left"] == 0, outcome  # swept into a run once the fault was over
    assert set(outcome["states"]) <= {"trained", "rejected", "not_needed"}, outcome
    integrity = outcome["integrity"]
    assert integrity["bad"] == [] and integrity["stray"] == [], integrity
    assert integrity["active"] is not None, integrity


@pytest.mark.slow
def test_redis_restart_during_load_keeps_predicting_and_loses_no_correction():
    outcome = redis_restarted_under_load(users=4, seconds=24, down_after=6, down_for=8)
    # The outage really overlapped the load, and the throttles met it (and let requests in).
    assert outcome["predictions_during_fault"] >= 10, outcome
    assert outcome["throttle_fail_open_warnings"] > 0, outcome
    assert outcome["prediction_failures"] == 0, outcome
    assert outcome["correction_failures"] == 0, outcome
    # Corrections made while Redis was down waited and were trained or judged afterwards.
    assert (
        outcome["corrections"] > 0
        and outcome["states"].get("trained", 0) + outcome["states"].get("rejected", 0) > 0
    ), outcome
    assert_nothing_lost_and_models_whole(outcome)


@pytest.mark.slow
def test_worker_killed_mid_fine_tune_under_load_publishes_no_partial_model():
    outcome = worker_killed_mid_fine_tune(users=4, seconds=24)
    killed = outcome["killed_run"]
    assert killed["status"] == "failed" and "worker lost" in killed["error"], killed
    assert killed["result"] is None, killed  # the killed run published nothing
    assert outcome["prediction_failures"] == 0, outcome
    assert outcome["correction_failures"] == 0, outcome
    assert outcome["runs"].get("succeeded", 0) + outcome["runs"].get("rejected", 0) > 0, outcome
    assert_nothing_lost_and_models_whole(outcome)


@pytest.mark.django_db
def test_throttles_fail_open_while_redis_is_down_and_resume_after(
    default_model, redis_cache, redis_server, settings, caplog, monkeypatch
):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "2/min", "user": None},
    }
    monkeypatch.setattr(throttles, "RETRY_SECONDS", 0.5)
    body = {"image": base64.b64encode(draw_png(ONE)).decode()}

    def predict() -> int:
        return APIClient().post("/api/predictions/", body, format="json").status_code

    caplog.set_level(logging.INFO, logger=throttles.__name__)
    redis_server.stop()
    try:
        # Past the rate of 2/min: with no counter to consult, every request is served.
        assert [predict() for _ in range(4)] == [201] * 4
        down = [r for r in caplog.records if "Throttle cache unavailable" in r.message]
        assert len(down) == 1  # one line per outage, not one per request
    finally:
        redis_server.start()
    time.sleep(0.6)  # the retry pause is over: the next request asks Redis again
    assert [predict() for _ in range(3)] == [201, 201, 429]
    assert any("reachable again" in r.message for r in caplog.records)
