"""What the moderation dashboard shows: how the model does over versions and on user data."""

import logging
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from training import charts
from training import selectors as training_selectors
from training.classes import CLASS_INDEX
from training.models import ModelVersion
from training.preprocessing import glyph_from_bytes
from training.pretraining import confused_pairs
from training.registry import NoActiveModel
from training.serving import active_model

from . import selectors

# Enough corrected samples for a stable figure, few enough to predict within a task.
CORRECTED_LIMIT = 2000
# The versions the table and chart show: a busy site makes a new one every few corrections.
RECENT_VERSIONS = 50
# The figures that read whole tables or run the model are computed apart and kept: a page
# shows the newest and asks for fresh ones once they are older than this.
REFRESH_SECONDS = 60
FIGURES_KEY = "dashboard:figures"
REFRESHING_KEY = "dashboard:figures:refreshing"

logger = logging.getLogger(__name__)


def _accuracy(predicted: np.ndarray, labels: np.ndarray) -> dict | None:
    if not len(labels):
        return None
    return {"accuracy": float((predicted == labels).mean()), "count": len(labels)}


def active_model_on_corrected_samples() -> dict | None:
    """Accuracy of the active model on user samples a person labelled, newest first.

    Fine-tunes train on most of them: every correction is learned, whatever its
    sample. The held-out ones (in the held-out share and taken by no fine-tune,
    see ``selectors.samples_annotate_heldout``) are reported apart: that figure
    is honest, though it leans on drawings the model read right, since a misread
    one leaves the set once its correction is learned.
    """
    samples = selectors.samples_annotate_heldout(
        selectors.samples_corrected(), every=settings.FINE_TUNE["HELDOUT_EVERY"]
    )
    rows = list(samples.values_list("label", "glyph", "heldout")[:CORRECTED_LIMIT])
    try:
        model = active_model.get()
    except NoActiveModel:
        return None
    if not rows:
        return {"version": model.number, "all": None, "heldout": None}
    labels = np.array([CLASS_INDEX[label] for label, _, _ in rows])
    glyphs = np.stack([glyph_from_bytes(g) for _, g, _ in rows])
    predicted = model.predict_proba(glyphs).argmax(axis=1)
    heldout = np.array([bool(h) for _, _, h in rows])
    return {
        "version": model.number,
        "all": _accuracy(predicted, labels),
        "heldout": _accuracy(predicted[heldout], labels[heldout]),
    }


def _version_rows() -> list[dict]:
    return [
        {
            "number": version.number,
            "status": version.status,
            "active": version.status == ModelVersion.Status.ACTIVE,
            **training_selectors.version_gate_scores(version),
            "forgetting": version.recorded_forgetting,
        }
        for version in training_selectors.versions_newest(limit=RECENT_VERSIONS)
    ]


def figures_refresh() -> dict:
    """Compute the slow figures (per-class counts, confused pairs, the active model on
    corrected samples, the accuracy chart) and keep them for the pages."""
    rows = _version_rows()
    # One point a line is an empty axis: the chart needs two versions with scores.
    scored = [row for row in rows if any(row[k] is not None for k in training_selectors.MEASURED)]
    figures = {
        "computed_at": timezone.now(),
        "class_counts": list(selectors.sample_counts_by_class().items()),
        "user_confused_pairs": selectors.samples_confused_pairs(),
        "on_corrected": active_model_on_corrected_samples(),
        "accuracy_chart": (
            charts.data_url(
                charts.accuracy_over_versions_png(rows, measure=training_selectors.MEASURE)
            )
            if len(scored) >= 2
            else None
        ),
    }
    cache.set(FIGURES_KEY, figures, timeout=None)
    cache.delete(REFRESHING_KEY)
    return figures


def figures_kept() -> dict:
    """The kept figures, computed here only if there are none; stale ones are refreshed by a
    task (one at a time) while the page shows them."""
    figures = cache.get(FIGURES_KEY)
    if figures is None:
        return figures_refresh()
    stale = timezone.now() - figures["computed_at"] > timedelta(seconds=REFRESH_SECONDS)
    if stale and cache.add(REFRESHING_KEY, True, REFRESH_SECONDS):
        transaction.on_commit(_send_refresh)
    return figures


def _send_refresh():
    from .tasks import dashboard_refresh_task

    try:
        dashboard_refresh_task.apply_async(retry=False)
    except Exception as error:  # kombu and redis raise several connection error types
        logger.warning("Could not queue the dashboard's refresh (the next page will): %s", error)
        cache.delete(REFRESHING_KEY)


def dashboard_data() -> dict:
    active = training_selectors.version_active()
    pending = selectors.corrections_pending().select_related("author").order_by("-created_at")
    return {
        **figures_kept(),
        "versions": _version_rows(),
        "recent_versions": RECENT_VERSIONS,
        "refresh_seconds": REFRESH_SECONDS,
        "measure": training_selectors.MEASURE,
        "active_version": active,
        "model_confused_pairs": (
            confused_pairs(active.metrics["confusion"])
            if active and "confusion" in active.metrics
            else []
        ),
        "pending_count": pending.count(),
        "pending": pending[:20],
        "runs_in_flight": training_selectors.runs_in_flight(),
    }
