"""Writers' personal models: what each writer's own labels taught, for them alone."""

from django.conf import settings
from django.db import models

from .identity import writer_shown
from .prototypes import MAX_PROTOTYPES


class PersonalModel(models.Model):
    """One writer's prototypes, made with one shared model version's features.

    ``writer`` is the key ``writers.identity`` gives a person: ``user:<id>``,
    ``session:<key>`` or ``token:<user id>:<writer>``. The rows serve every shared
    version with the same trunk and hidden weights (``hidden_weights``), the default
    fine-tunes' versions included; under other ones they are rebuilt from the samples
    in ``sample_ids``.
    """

    writer = models.CharField(max_length=100, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="personal_models",
    )
    model_version = models.ForeignKey(
        "training.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The shared version the rows were last stored under.",
    )
    hidden_weights = models.CharField(
        max_length=64,
        blank=True,
        help_text="nn.hidden_weights_digest of the network the rows were computed with.",
    )
    features = models.BinaryField(help_text="float16 feature rows, one per label")
    labels = models.CharField(
        max_length=MAX_PROTOTYPES, blank=True, help_text="The label of each row."
    )
    sample_ids = models.JSONField(default=list, help_text="The sample behind each row.")
    corrections = models.PositiveIntegerField(default=0, help_text="Labels learned in all.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-updated_at"]

    def __str__(self):
        return f"personal model of {writer_shown(self.writer)}"

    @property
    def size_bytes(self) -> int:
        return len(self.features) + len(self.labels)
