"""GET /metrics: real predictions, corrections and fine-tunes, read back as Prometheus text."""

import base64
import http.client
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from bench.server import Deployment
from recognition.models import Prediction
from training.classes import CLASSES
from training.models import TrainingRun
from training.services import training_run_execute

from .conftest import ONE, SEVEN, ZERO, draw_png, misread_handwriting, teacher

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def local_server(settings):
    """A local development server's settings: loopback may scrape without a token."""
    settings.DEBUG = True


def scrape(client=None, **headers) -> dict:
    """{(name, labels as a sorted tuple): value} for every sample on the page."""
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return parse(response.content.decode())


def parse(text: str) -> dict:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def predict(client, png: bytes) -> dict:
    body = {"image": base64.b64encode(png).decode()}
    response = client.post("/api/predictions/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_predictions_and_a_correction_are_counted(default_model, settings):
    client = APIClient()
    client.force_authenticate(teacher())  # a correction that trains the shared model
    empty = scrape()
    assert empty[("recognizer_predictions_total", (("label", "1"),))] == 0
    assert empty[("recognizer_active_model_version", ())] == default_model.number

    made = [predict(client, draw_png(strokes)) for strokes in (ONE, ONE, SEVEN, ZERO)]
    png, true_label = misread_handwriting(1)[0]
    wrong = predict(client, png)
    made.append(wrong)
    response = client.post(
        f"/api/samples/{wrong['sample']}/corrections/", {"label": true_label}, format="json"
    )
    assert response.status_code == 201, response.content

    metrics = scrape()
    for label in CLASSES:
        expected = sum(1 for p in made if p["label"] == label)
        assert metrics[("recognizer_predictions_total", (("label", label),))] == expected, label
    assert metrics[("recognizer_predictions_total", (("label", "1"),))] >= 2

    # The latency histogram is over the stored per-prediction latencies.
    latencies = sorted(Prediction.objects.values_list("latency_ms", flat=True))
    assert metrics[("recognizer_prediction_latency_seconds_count", ())] == len(made)
    assert metrics[("recognizer_prediction_latency_seconds_sum", ())] == pytest.approx(
        sum(latencies) / 1000
    )
    for bound in ("0.001", "0.01", "0.1", "1.0"):
        expected = sum(1 for ms in latencies if ms / 1000 <= float(bound))
        key = ("recognizer_prediction_latency_seconds_bucket", (("le", bound),))
        assert metrics[key] == expected, bound
    assert metrics[("recognizer_prediction_latency_seconds_bucket", (("le", "+Inf"),))] == len(made)

    assert metrics[("recognizer_corrections_total", (("source", "api"),))] == 1
    assert metrics[("recognizer_corrections_total", (("source", "page"),))] == 0
    assert metrics[("recognizer_corrections_in_state", (("training_state", "pending"),))] == 1
    assert metrics[("recognizer_fine_tunes_unfinished", (("status", "queued"),))] == 1
    assert metrics[("recognizer_fine_tunes_total", (("outcome", "succeeded"),))] == 0


@pytest.mark.slow  # a real (short) fine-tune
def test_a_finished_fine_tune_is_counted_with_its_duration(default_model, settings):
    settings.FINE_TUNE = {**settings.FINE_TUNE, "STEPS": 5, "THREADS": 1}
    client = APIClient()
    client.force_authenticate(teacher())
    png, label = misread_handwriting(1)[0]
    sample = predict(client, png)["sample"]
    run_id = client.post(
        f"/api/samples/{sample}/corrections/", {"label": label}, format="json"
    ).json()["training_run"]["id"]
    run = training_run_execute(run_id=run_id)  # the real fine-tune, in this process
    assert run.status in TrainingRun.FINISHED
    seconds = (run.finished_at - run.started_at).total_seconds()

    metrics = scrape()
    outcome = (("outcome", run.status),)
    assert metrics[("recognizer_fine_tunes_total", outcome)] == 1
    assert sum(metrics[("recognizer_fine_tunes_total", (("outcome", s),))] for s in
               TrainingRun.FINISHED) == 1  # fmt: skip
    assert metrics[("recognizer_fine_tune_duration_seconds_count", outcome)] == 1
    assert metrics[("recognizer_fine_tune_duration_seconds_sum", outcome)] == pytest.approx(
        seconds, abs=1e-3
    )
    for bound in (1, 2, 5, 10, 20, 30, 60, 120, 300, 600):
        key = ("recognizer_fine_tune_duration_seconds_bucket", (("le", f"{bound:.1f}"), *outcome))
        assert metrics[key] == (1 if seconds <= bound else 0), bound
    assert metrics[("recognizer_fine_tunes_unfinished", (("status", "queued"),))] == 0
    state = "trained" if run.status == "succeeded" else "rejected"
    assert metrics[("recognizer_corrections_in_state", (("training_state", state),))] == 1
    active = run.result_version.number if run.status == "succeeded" else default_model.number
    assert metrics[("recognizer_active_model_version", ())] == active


# --- Who may scrape --------------------------------------------------------------


def test_without_a_token_only_direct_loopback_clients_may_scrape(db, settings):
    settings.METRICS_TOKEN = ""
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="::1").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="203.0.113.9").get("/metrics").status_code == 403
    # A local reverse proxy relays outside clients from loopback; it says so.
    relayed = Client(REMOTE_ADDR="127.0.0.1").get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert relayed.status_code == 403


def test_with_a_token_every_scrape_must_bring_it(db, settings):
    settings.METRICS_TOKEN = "scrape-secret"
    outside = Client(REMOTE_ADDR="203.0.113.9")
    assert outside.get("/metrics").status_code == 403
    assert Client().get("/metrics").status_code == 403  # loopback is not enough now
    assert outside.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert scrape(outside, HTTP_AUTHORIZATION="Bearer scrape-secret")


# --- Several processes -----------------------------------------------------------


@pytest.mark.slow
def test_every_gunicorn_worker_reports_the_same_totals():
    with Deployment(METRICS_TOKEN="scrape-secret") as deployment:  # DEBUG=0 needs it
        host, port = (
            deployment.start_web(workers=3, access_log=True).removeprefix("http://").split(":")
        )
        body = f'{{"image": "{base64.b64encode(draw_png(ONE)).decode()}"}}'

        def request(method, path, payload=None):
            # A new connection each time, so that different workers answer.
            connection = http.client.HTTPConnection(host, int(port), timeout=30)
            headers = {
                "Content-Type": "application/json",
                "Authorization": "Bearer scrape-secret",
            }
            connection.request(method, path, payload, headers)
            response = connection.getresponse()
            return response.status, response.read().decode()

        for _ in range(12):
            assert request("POST", "/api/predictions/", body)[0] == 201
        database = deployment.env["DATABASE_URL"].removeprefix("sqlite:///")
        stored = sqlite3.connect(database).execute("select count(*) from recognition_prediction")
        stored = stored.fetchone()[0]
        scrapes, scraped_by = [], set()
        # Concurrent bursts: one request at a time is usually taken by the same idle
        # worker, and even a burst may all land on one, so burst until two have answered.
        for _ in range(5):
            with ThreadPoolExecutor(6) as pool:
                pages = pool.map(lambda _: request("GET", "/metrics")[1], range(6))
                scrapes += [parse(page) for page in pages]
            log = (Path(deployment.dir) / "web.log").read_text().splitlines()
            scraped_by = {line.split()[0] for line in log if '"GET /metrics' in line}
            if len(scraped_by) >= 2:
                break
    assert len(scraped_by) >= 2, log  # several workers answered, and they agree
    assert stored == 12
    assert all(page == scrapes[0] for page in scrapes)
    assert scrapes[0][("recognizer_prediction_latency_seconds_count", ())] == 12
    assert scrapes[0][("recognizer_predictions_total", (("label", "1"),))] == 12
