"""Every drawing, every prediction made on it, and every correction of it."""

import hashlib
import hmac
import random
import uuid

import numpy as np
from django.conf import settings
from django.core.files.storage import storages
from django.db import models
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from training.classes import CLASSES
from training.preprocessing import glyph_from_bytes

LABEL_CHOICES = [(label, label) for label in CLASSES]


def sample_image_path(instance, filename):
    """Store drawings under a dated folder with a random name: no user input in the path."""
    return timezone.now().strftime(f"samples/%Y/%m/%d/{uuid.uuid4().hex}.png")


def drawing_storage():
    return storages["drawings"]


def heldout_bucket_of(name: str) -> int:
    """A keyed hash (``SECRET_KEY``) of the drawing's stored name, which clients never see:
    the held-out share (``bucket % HELDOUT_EVERY == 0``) cannot be aimed at from outside."""
    key = settings.SECRET_KEY.encode()
    digest = hmac.new(key, f"heldout:{name}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:4], "big") >> 1  # 31 bits: an integer on every database


class Sample(models.Model):
    """One drawing of one character, as received and as the model saw it."""

    class Source(models.TextChoices):
        PAGE = "page", "Drawing page"
        API = "api", "API"

    class Status(models.TextChoices):
        UNREVIEWED = "unreviewed", "Unreviewed"
        CONFIRMED = "confirmed", "Confirmed"
        RELABELED = "relabeled", "Relabeled"
        EXCLUDED = "excluded", "Excluded from training"

    image = models.FileField(upload_to=sample_image_path, max_length=255, storage=drawing_storage)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    glyph = models.BinaryField(help_text="The 28x28 uint8 image the model saw, row-major.")
    strokes = models.JSONField(null=True, blank=True, help_text="[[[x, y, t], ...], ...]")
    source = models.CharField(max_length=8, choices=Source.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    session_key = models.CharField(max_length=40, blank=True)
    # The key of the writer's personal model (``writers.identity``); blank for none.
    writer = models.CharField(max_length=100, blank=True)
    classes = models.CharField(
        "context",
        max_length=36,
        default="all",
        help_text="The context it was drawn under: all, digits, letters, or the allowed labels.",
    )
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.UNREVIEWED, db_index=True
    )
    # Derived by correction services (latest moderator label, else latest
    # correction); kept as a column so that lists can filter and sort by it.
    label = models.CharField(max_length=1, choices=LABEL_CHOICES, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # The latest prediction, kept on the sample (written with it by predict_drawing)
    # so that lists filter and sort on indexed columns instead of a subquery per row.
    predicted_label = models.CharField(max_length=1, choices=LABEL_CHOICES, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    # A writer's personal model shaped the prediction: not the shared model's reading.
    predicted_personally = models.BooleanField(default=False)
    model_version_number = models.PositiveIntegerField(null=True, blank=True, db_index=True)
    corrected = models.BooleanField(default=False, help_text="Someone gave it a label.")
    # A random order of samples: a fine-tune replays the next few of a class from a
    # random point of it, reading an index instead of every labelled sample.
    replay_key = models.FloatField(default=random.random)
    # A person and the model disagree: either the model must learn or the label is wrong.
    disputed = models.GeneratedField(
        expression=Case(
            When(~Q(label="") & ~Q(label=models.F("predicted_label")), then=Value(True)),
            default=Value(False),
        ),
        output_field=models.BooleanField(),
        db_persist=True,
    )
    # Chooses the samples no fine-tune replays (``heldout_bucket_of``); set when first saved.
    heldout_bucket = models.PositiveIntegerField(null=True, editable=False)
    # A correction from someone the shared model does not learn from awaits a moderator
    # (kept by the correction services, like ``label``): first in the review queue.
    proposed = models.BooleanField(default=False)
    reviewed = models.GeneratedField(
        expression=Case(When(status="unreviewed", then=Value(False)), default=Value(True)),
        output_field=models.BooleanField(),
        db_persist=True,
    )

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("moderate_sample", "Can review, relabel and exclude samples"),
            ("train_shared_model", "Corrections train the shared model without review"),
        ]
        indexes = [
            # The review queue's order (selectors.REVIEW_QUEUE_ORDERING, then the
            # admin's -pk): its first page is read straight off this index.
            models.Index(
                models.F("proposed").desc(),
                "reviewed",
                models.F("disputed").desc(),
                "confidence",
                models.F("created_at").desc(),
                models.F("id").desc(),
                name="sample_review_queue",
            ),
            models.Index(fields=["predicted_label", "confidence"], name="sample_predicted"),
            # Labelled samples, a few percent of all: replay by class, held-out, counts.
            models.Index(
                fields=["label", "replay_key"], name="sample_replay_order", condition=~Q(label="")
            ),
            # Moderator-reviewed ones, which replay takes first: their own order.
            models.Index(
                fields=["label", "replay_key"],
                name="sample_replay_moderated",
                condition=~Q(label="") & Q(status__in=["confirmed", "relabeled"]),
            ),
            models.Index(
                fields=["-id"],
                name="sample_labelled_newest",
                condition=~Q(label="") & ~Q(status="excluded"),
            ),
            models.Index(
                fields=["predicted_label", "label"],
                name="sample_disputed",
                condition=Q(disputed=True),
            ),
            # One drawer's drawings (the admin's "all their drawings").
            models.Index(fields=["writer", "-id"], name="sample_writer", condition=~Q(writer="")),
        ]

    def __str__(self):
        return f"sample {self.pk}"

    def save(self, *args, **kwargs):
        if self.heldout_bucket is None:
            self.heldout_bucket = heldout_bucket_of(self.image.name or uuid.uuid4().hex)
        super().save(*args, **kwargs)

    def glyph_array(self) -> np.ndarray:
        return glyph_from_bytes(self.glyph)

    def label_correction(self) -> "Correction | None":
        """The correction the label comes from: the latest moderator's, else the latest."""
        corrections = self.corrections.order_by("-created_at", "-pk")
        return corrections.filter(source=Correction.Source.ADMIN).first() or corrections.first()

    def derive_label(self) -> str:
        """Latest moderator label, else latest correction, else no label."""
        latest = self.label_correction()
        return latest.label if latest else ""


class Prediction(models.Model):
    sample = models.ForeignKey(Sample, on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey(
        "training.ModelVersion", on_delete=models.PROTECT, related_name="predictions"
    )
    label = models.CharField(max_length=1, choices=LABEL_CHOICES, db_index=True)
    confidence = models.FloatField(db_index=True)
    probabilities = models.JSONField(help_text="36 probabilities in class order.")
    personal = models.BooleanField(
        default=False, help_text="The writer's personal model shaped this answer or what it asks."
    )
    latency_ms = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["-created_at", "-id"], name="prediction_newest")]

    def __str__(self):
        return f"{self.label} ({self.confidence:.2f}) for sample {self.sample_id}"


# Upper bounds (ms) of the prediction latency histogram that /metrics exports.
LATENCY_BOUNDS_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]


class PredictionTally(models.Model):
    """Predictions made, by label and latency bucket, counted in each prediction's transaction.

    /metrics reads these few rows instead of aggregating every prediction. Bucket
    ``i`` holds latencies in (LATENCY_BOUNDS_MS[i-1], LATENCY_BOUNDS_MS[i]]; the
    last one, ``len(LATENCY_BOUNDS_MS)``, those above every bound.
    """

    label = models.CharField(max_length=1, choices=LABEL_CHOICES)
    bucket = models.PositiveSmallIntegerField()
    count = models.BigIntegerField(default=0)
    sum_ms = models.FloatField(default=0.0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["label", "bucket"], name="prediction_tally_key")
        ]

    def __str__(self):
        return f"{self.count} predictions of {self.label!r} in latency bucket {self.bucket}"


class Correction(models.Model):
    """A label given by a person: the user who drew it, a program, or a moderator."""

    class Source(models.TextChoices):
        PAGE = "page", "Drawing page"
        API = "api", "API"
        ADMIN = "admin", "Moderator"

    class TrainingState(models.TextChoices):
        NOT_NEEDED = "not_needed", "Nothing to learn (confirms the model or repeats the label)"
        PROPOSED = "proposed", "Proposed: waits for a moderator before the shared model learns it"
        DECLINED = "declined", "Declined: a moderator gave the sample another label"
        PENDING = "pending", "Waiting for a fine-tune"
        TRAINED = "trained", "Learned by a published version"
        REJECTED = "rejected", "Its fine-tune failed the evaluation gate"

    sample = models.ForeignKey(Sample, on_delete=models.CASCADE, related_name="corrections")
    label = models.CharField(max_length=1, choices=LABEL_CHOICES)
    previous_label = models.CharField(max_length=1, blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    session_key = models.CharField(max_length=40, blank=True)
    source = models.CharField(max_length=8, choices=Source.choices)
    training_state = models.CharField(
        max_length=16,
        choices=TrainingState.choices,
        default=TrainingState.PENDING,
        db_index=True,
    )
    # The runs that took it: a failed run's corrections go to the next one. The table
    # keeps the name it had when the relation was declared on TrainingRun.
    training_runs = models.ManyToManyField(
        "training.TrainingRun",
        related_name="corrections",
        blank=True,
        db_table="training_trainingrun_corrections",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="correction_newest"),
            models.Index(fields=["source", "training_state"], name="correction_source_state"),
            models.Index(fields=["sample", "training_state"], name="correction_sample_state"),
        ]

    def __str__(self):
        return f"{self.previous_label or '?'} -> {self.label} on sample {self.sample_id}"
