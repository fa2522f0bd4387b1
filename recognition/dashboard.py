"""What the moderation dashboard shows: how the model does over versions and on user data."""

import numpy as np
from django.conf import settings
from django.db.models import FloatField, OuterRef, QuerySet, Subquery
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from training.classes import CLASS_INDEX
from training.models import ModelVersion, TrainingRun
from training.pretraining import confused_pairs
from training.registry import NoActiveModel, active_model

from . import charts, selectors

# Enough corrected samples for a stable figure, few enough to predict within a request.
CORRECTED_LIMIT = 2000


# What the dashboard and the admin compare versions by. A pretrained version's own
# metrics are on all of its pretraining held-out images (MNIST test and handwriting),
# a fine-tune's on the gate's fixed set (the anchors' class-balanced slice of those,
# plus held-out user samples), where letters weigh more: mixed, they show a drop
# between a pretrained version and its first fine-tune that did not happen.
MEASURE = "accuracy on the gate's fixed set"
MEASURED = ("overall", "digits", "letters")


def versions_annotate_gate_scores(versions: QuerySet) -> QuerySet:
    """Add what the first fine-tune of each version recorded for it, its parent, on the gate's
    fixed set: ``gate_overall``, ``gate_digits``, ``gate_letters`` (None if not recorded)."""
    first_fine_tune = ModelVersion.objects.filter(
        parent=OuterRef("pk"), training_info__kind="fine-tune"
    ).order_by("number")
    return versions.annotate(
        **{
            f"gate_{key}": Subquery(
                first_fine_tune.annotate(
                    score=Cast(KT(f"metrics__parent_{key}"), FloatField())
                ).values("score")[:1]
            )
            for key in MEASURED
        }
    )


def version_gate_scores(version: ModelVersion) -> dict:
    """A version's overall, digit and letter accuracy by ``MEASURE``, None where not recorded.

    ``version`` comes from ``versions_annotate_gate_scores``. A version that is no
    fine-tune has its figures once a fine-tune of it has run.
    """
    if version.training_info.get("kind") == "fine-tune":
        return {key: version.metrics.get(key) for key in MEASURED}
    return {key: getattr(version, f"gate_{key}") for key in MEASURED}


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
    glyphs = np.stack([np.frombuffer(bytes(g), np.uint8).reshape(28, 28) for _, g, _ in rows])
    predicted = model.predict_proba(glyphs).argmax(axis=1)
    heldout = np.array([bool(h) for _, _, h in rows])
    return {
        "version": model.number,
        "all": _accuracy(predicted, labels),
        "heldout": _accuracy(predicted[heldout], labels[heldout]),
    }


def dashboard_data() -> dict:
    versions = list(versions_annotate_gate_scores(ModelVersion.objects.order_by("number")))
    rows = [
        {
            "number": version.number,
            "status": version.status,
            "active": version.status == ModelVersion.Status.ACTIVE,
            **version_gate_scores(version),
            "forgetting": version.metrics.get("forgetting"),
        }
        for version in versions
    ]
    active = next((v for v in versions if v.status == ModelVersion.Status.ACTIVE), None)
    counts = selectors.sample_counts_by_class()
    pending = selectors.corrections_pending().select_related("author").order_by("-created_at")
    return {
        "versions": rows,
        "measure": MEASURE,
        "accuracy_chart": charts.data_url(charts.accuracy_over_versions_png(rows, measure=MEASURE))
        if rows
        else None,
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
        "runs_in_flight": TrainingRun.objects.filter(
            status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]
        ),
    }
