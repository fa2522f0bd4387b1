"""Every drawing, every prediction made on it, and every correction of it."""

import uuid

import numpy as np
from django.conf import settings
from django.core.files.storage import storages
from django.db import models
from django.utils import timezone

from training.classes import CLASSES

LABEL_CHOICES = [(label, label) for label in CLASSES]


def sample_image_path(instance, filename):
    """Store drawings under a dated folder with a random name: no user input in the path."""
    return timezone.now().strftime(f"samples/%Y/%m/%d/{uuid.uuid4().hex}.png")


def drawing_storage():
    return storages["drawings"]


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

    class Meta:
        ordering = ["-created_at"]
        permissions = [("moderate_sample", "Can review, relabel and exclude samples")]

    def __str__(self):
        return f"sample {self.pk}"

    def glyph_array(self) -> np.ndarray:
        return np.frombuffer(bytes(self.glyph), dtype=np.uint8).reshape(28, 28)

    def latest_predicted_label(self) -> str:
        """The label of the latest prediction (every sample has at least one)."""
        latest = self.predictions.order_by("-created_at", "-pk").values_list("label", flat=True)
        return latest.first() or ""

    def derive_label(self) -> str:
        """Latest moderator label, else latest correction, else no label."""
        corrections = self.corrections.order_by("-created_at", "-pk")
        moderated = corrections.filter(source=Correction.Source.ADMIN).first()
        latest = moderated or corrections.first()
        return latest.label if latest else ""


class Prediction(models.Model):
    sample = models.ForeignKey(Sample, on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey(
        "training.ModelVersion", on_delete=models.PROTECT, related_name="predictions"
    )
    label = models.CharField(max_length=1, choices=LABEL_CHOICES, db_index=True)
    confidence = models.FloatField(db_index=True)
    probabilities = models.JSONField(help_text="36 probabilities in class order.")
    latency_ms = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.label} ({self.confidence:.2f}) for sample {self.sample_id}"


class Correction(models.Model):
    """A label given by a person: the user who drew it, a program, or a moderator."""

    class Source(models.TextChoices):
        PAGE = "page", "Drawing page"
        API = "api", "API"
        ADMIN = "admin", "Moderator"

    class TrainingState(models.TextChoices):
        NOT_NEEDED = "not_needed", "Nothing to learn (confirms the model)"
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

    def __str__(self):
        return f"{self.previous_label or '?'} -> {self.label} on sample {self.sample_id}"
