"""Prometheus metrics at ``GET /metrics``, read from the database at scrape time.

Every figure is an aggregate over rows every process shares, so any process reports
the same totals (aggregate instances with ``max``); docs/metrics.md says why.
Predictions are read from ``PredictionTally``, counted by label and latency
bucket in each prediction's own transaction, not by scanning every prediction.
Access: the ``METRICS_TOKEN`` bearer token; without one, only direct loopback
clients of a ``DEBUG=1`` server.
"""

import hmac

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString

from training import selectors as training_selectors
from training.classes import CLASSES
from training.models import TrainingRun

from . import selectors
from .models import LATENCY_BOUNDS_MS, Correction

FINE_TUNE_BOUNDS_S = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600]
LOOPBACK = {"127.0.0.1", "::1"}


def _buckets(bounds, cumulative, count) -> list:
    return [*zip(map(floatToGoString, bounds), cumulative, strict=True), ("+Inf", count)]


class DatabaseCollector:
    """Turns the selectors' aggregates into metric families, freshly at every scrape."""

    def collect(self):
        yield from self._predictions()
        yield from self._corrections()
        yield from self._fine_tunes()

    def _predictions(self):
        by_label = selectors.prediction_counts_by_label()
        predictions = CounterMetricFamily(
            "recognizer_predictions", "Predictions served, by predicted label.", labels=["label"]
        )
        for label in CLASSES:
            predictions.add_metric([label], by_label.get(label, 0))
        yield predictions

        latency = selectors.prediction_latency_histogram()
        family = HistogramMetricFamily(
            "recognizer_prediction_latency_seconds",
            "Model time per prediction (preprocessing and inference).",
        )
        family.add_metric(
            [],
            _buckets([b / 1000 for b in LATENCY_BOUNDS_MS], latency["buckets"], latency["count"]),
            latency["sum_ms"] / 1000,
        )
        yield family

    def _corrections(self):
        corrections = selectors.correction_counts()
        by_source = CounterMetricFamily(
            "recognizer_corrections", "Corrections received, by source.", labels=["source"]
        )
        for source in Correction.Source.values:
            by_source.add_metric(
                [source], sum(n for (s, _), n in corrections.items() if s == source)
            )
        yield by_source
        by_state = GaugeMetricFamily(
            "recognizer_corrections_in_state",
            "Corrections by training state (pending ones await a fine-tune).",
            labels=["training_state"],
        )
        for state in Correction.TrainingState.values:
            by_state.add_metric([state], sum(n for (_, t), n in corrections.items() if t == state))
        yield by_state

    def _fine_tunes(self):
        runs = training_selectors.run_counts()
        outcomes = CounterMetricFamily(
            "recognizer_fine_tunes", "Finished fine-tunes, by outcome.", labels=["outcome"]
        )
        for status in TrainingRun.FINISHED:
            outcomes.add_metric([status], runs.get(status, 0))
        yield outcomes
        waiting = GaugeMetricFamily(
            "recognizer_fine_tunes_unfinished", "Fine-tunes queued or running.", labels=["status"]
        )
        for status in (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING):
            waiting.add_metric([status], runs.get(status, 0))
        yield waiting

        durations = training_selectors.run_duration_histogram(bounds_s=FINE_TUNE_BOUNDS_S)
        family = HistogramMetricFamily(
            "recognizer_fine_tune_duration_seconds",
            "Wall time of finished fine-tunes, from claim to finish, by outcome.",
            labels=["outcome"],
        )
        none = {"buckets": [0] * len(FINE_TUNE_BOUNDS_S), "count": 0, "sum_s": 0.0}
        for status in TrainingRun.FINISHED:
            figures = durations.get(status, none)
            family.add_metric(
                [status],
                _buckets(FINE_TUNE_BOUNDS_S, figures["buckets"], figures["count"]),
                figures["sum_s"],
            )
        yield family

        active = GaugeMetricFamily(
            "recognizer_active_model_version", "Number of the active model version (0: none)."
        )
        active.add_metric([], training_selectors.version_active_number() or 0)
        yield active


# Its own registry: no per-process metrics (which would differ between workers).
REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(DatabaseCollector())


def _allowed(request) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        supplied = request.headers.get("Authorization", "")
        return hmac.compare_digest(supplied.encode(), f"Bearer {token}".encode())
    return (
        settings.DEBUG
        and request.META.get("REMOTE_ADDR") in LOOPBACK
        and "HTTP_X_FORWARDED_FOR" not in request.META
    )


@never_cache
@require_GET
def metrics(request):
    if not _allowed(request):
        return HttpResponse(
            "Forbidden: send the METRICS_TOKEN as a bearer token.\n",
            status=403,
            content_type="text/plain",
        )
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
