"""Read-side queries over samples, predictions and corrections."""

from django.db.models import Exists, OuterRef, QuerySet, Subquery

from .models import Correction, Prediction, Sample


def _latest_prediction(field: str) -> Subquery:
    latest = Prediction.objects.filter(sample=OuterRef("pk")).order_by("-created_at", "-pk")
    return Subquery(latest.values(field)[:1])


def sample_list() -> QuerySet[Sample]:
    """Samples annotated with their latest prediction and whether anyone corrected them."""
    return Sample.objects.annotate(
        predicted_label=_latest_prediction("label"),
        confidence=_latest_prediction("confidence"),
        model_version_number=_latest_prediction("model_version__number"),
        corrected=Exists(Correction.objects.filter(sample=OuterRef("pk"))),
    ).select_related("user")


def sample_detail(*, sample_id: int) -> Sample:
    return (
        sample_list()
        .prefetch_related("predictions__model_version", "corrections")
        .get(pk=sample_id)
    )


def sample_for_correction(*, sample_id: int, user, session_key: str | None) -> Sample | None:
    """The sample if this person may label it: staff, its owner, or anyone for ownerless ones."""
    sample = Sample.objects.filter(pk=sample_id).first()
    if sample is None or (user.is_authenticated and user.is_staff):
        return sample
    owned_by_user = sample.user_id is not None and sample.user_id == user.pk
    owned_by_session = bool(sample.session_key) and sample.session_key == session_key
    ownerless = sample.user_id is None and not sample.session_key
    return sample if owned_by_user or owned_by_session or ownerless else None


def corrections_pending() -> QuerySet[Correction]:
    """Corrections that no finished fine-tune has learned or rejected yet."""
    return Correction.objects.filter(training_state=Correction.TrainingState.PENDING)


def samples_trainable() -> QuerySet[Sample]:
    """Labelled samples that moderators have not excluded from training."""
    return Sample.objects.exclude(label="").exclude(status=Sample.Status.EXCLUDED)
