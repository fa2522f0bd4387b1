"""Model versions and the training runs that produce them."""

from django.db import models
from django.db.models import Q

from .classes import CLASSES


def _default_classes():
    return list(CLASSES)


class ModelVersion(models.Model):
    """One immutable set of weights; at most one version is active at a time."""

    class Status(models.TextChoices):
        CANDIDATE = "candidate", "Candidate"
        ACTIVE = "active", "Active"
        REJECTED = "rejected", "Rejected"
        RETIRED = "retired", "Retired"

    number = models.PositiveIntegerField(unique=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CANDIDATE)
    weights = models.FileField(upload_to="model_versions/", max_length=255)
    sha256 = models.CharField(max_length=64)
    # A head-only fine-tune stores only the tensors it trained (a delta); the rest are
    # this version's (a full set, or a delta over one), named in the delta by sha256.
    base = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="deltas"
    )
    # Kept by ``prune_versions`` whatever its age and status.
    pinned = models.BooleanField(default=False)
    # When ``prune_versions`` deleted its weights file (the row stays: predictions cite it).
    pruned_at = models.DateTimeField(null=True, blank=True)
    # Class-balanced anchor (replay) and evaluation glyphs, shared down the version chain.
    anchors = models.FileField(upload_to="model_versions/", max_length=255, blank=True)
    architecture = models.CharField(max_length=64)
    classes = models.JSONField(default=_default_classes)
    metrics = models.JSONField(default=dict, blank=True)
    training_info = models.JSONField(
        default=dict,
        blank=True,
        help_text="How it was trained: command, data, settings.",
    )
    trained_sample_ids = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["status"],
                condition=Q(status="active"),
                name="single_active_model_version",
            )
        ]

    def __str__(self):
        return f"v{self.number} ({self.status})"


class TrainingRun(models.Model):
    """One fine-tune of the active version on the corrections pending when it started."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        REJECTED = "rejected", "Rejected"
        FAILED = "failed", "Failed"

    class FailureKind(models.TextChoices):
        NONE = "", "-"
        WORKER_LOST = "worker_lost", "Worker lost (no heartbeat)"
        UNLOADABLE_WEIGHTS = "unloadable_weights", "The parent's weights failed their check"
        ERROR = "error", "Error while training"

    FINISHED = (Status.SUCCEEDED, Status.REJECTED, Status.FAILED)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    task_id = models.CharField(max_length=64, blank=True)
    # ``corrections``: the reverse of recognition's Correction.training_runs.
    parent_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    result_version = models.OneToOneField(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="training_run",
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    progress = models.FloatField(default=0.0)
    metrics = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True, help_text="Why the gate rejected the candidate.")
    error = models.TextField(blank=True)
    failure_kind = models.CharField(
        max_length=32, choices=FailureKind.choices, default=FailureKind.NONE, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Coalescing: later corrections join the one waiting run.
            models.UniqueConstraint(
                fields=["status"],
                condition=Q(status="queued"),
                name="single_queued_training_run",
            ),
            # Single writer: the version chain stays linear.
            models.UniqueConstraint(
                fields=["status"],
                condition=Q(status="running"),
                name="single_running_training_run",
            ),
        ]

    def __str__(self):
        return f"training run {self.pk} ({self.status})"
