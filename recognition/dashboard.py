"""What the moderation dashboard shows: how the model does over versions and on user data."""

import hashlib
import json

import numpy as np
from django.conf import settings
from django.core.cache import cache

from training import charts
from training import selectors as training_selectors
from training.classes import CLASS_INDEX
from training.models import ModelVersion
from training.pretraining import confused_pairs
from training.registry import NoActiveModel, active_model

from . import selectors
from .models import Correction

# Enough corrected samples for a stable figure, few enough to predict within a request.
CORRECTED_LIMIT = 2000
# The versions the table and chart show: a busy site makes a new one every few corrections.
RECENT_VERSIONS = 50
# The active model's figure on corrected samples is kept until a new correction or
# version; moderators' exclusions show within this many seconds.
ON_CORRECTED_SECONDS = 60
CHART_SECONDS = 3600


def _accuracy(predicted: np.ndarray, labels: np.ndarray) -> dict | None:
    if not len(labels):
        return None
    return {"accuracy": float((predicted == labels).mean()), "count": len(labels)}


def active_model_on_corrected_samples() -> dict | None:
    """``active_model_on_corrected_samples_now()``, cached until a new correction or version."""
    try:
        number = active_model.get().number
    except NoActiveModel:
        return None
    newest = Correction.objects.order_by("-pk").values_list("pk", flat=True).first()
    key = f"dashboard:on-corrected:v{number}:c{newest}"
    figures = cache.get(key)
    if figures is None:
        figures = active_model_on_corrected_samples_now()
        cache.set(key, figures, ON_CORRECTED_SECONDS)
    return figures


def active_model_on_corrected_samples_now() -> dict | None:
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
    glyphs = np.stack([np.frombuffer(bytes(g), np.uint8).reshape(28, 28) for _, g, _ in rows])
    predicted = model.predict_proba(glyphs).argmax(axis=1)
    heldout = np.array([bool(h) for _, _, h in rows])
    return {
        "version": model.number,
        "all": _accuracy(predicted, labels),
        "heldout": _accuracy(predicted[heldout], labels[heldout]),
    }


def _accuracy_chart(rows: list[dict]) -> str | None:
    """The chart of ``rows``, drawn once per distinct set of figures (drawing it is most of
    the dashboard's time)."""
    if not rows:
        return None
    key = "dashboard:chart:" + hashlib.sha256(json.dumps(rows).encode()).hexdigest()
    chart = cache.get(key)
    if chart is None:
        png = charts.accuracy_over_versions_png(rows, measure=training_selectors.MEASURE)
        chart = charts.data_url(png)
        cache.set(key, chart, CHART_SECONDS)
    return chart


def dashboard_data() -> dict:
    versions = training_selectors.versions_newest(limit=RECENT_VERSIONS)
    rows = [
        {
            "number": version.number,
            "status": version.status,
            "active": version.status == ModelVersion.Status.ACTIVE,
            **training_selectors.version_gate_scores(version),
            "forgetting": version.recorded_forgetting,
        }
        for version in versions
    ]
    active = training_selectors.version_active()
    counts = selectors.sample_counts_by_class()
    pending = selectors.corrections_pending().select_related("author").order_by("-created_at")
    return {
        "versions": rows,
        "recent_versions": RECENT_VERSIONS,
        "measure": training_selectors.MEASURE,
        "accuracy_chart": _accuracy_chart(rows),
        "active_version": active,
        "class_counts": list(counts.items()),
        "on_corrected": active_model_on_corrected_samples(),
        "user_confused_pairs": selectors.samples_confused_pairs(),
        "model_confused_pairs": (
            confused_pairs(active.metrics["confusion"])
            if active and "confusion" in active.metrics
            else []
        ),
        "pending_count": pending.count(),
        "pending": pending[:20],
        "runs_in_flight": training_selectors.runs_in_flight(),
    }
