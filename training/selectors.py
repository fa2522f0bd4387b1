"""Read-side queries over model versions and training runs."""

from datetime import timedelta

from django.db.models import (
    Case,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    FloatField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    When,
)
from django.db.models.fields.json import KT, KeyTransform
from django.db.models.functions import Cast

from .models import ModelVersion, TrainingRun


def version_active() -> ModelVersion | None:
    return ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).first()


# A version's JSON columns (its metrics hold a confusion matrix), which a row that only
# names the version leaves unread.
VERSION_JSON = ("metrics", "training_info", "trained_sample_ids", "classes")


def version_json_of(relation: str) -> list[str]:
    """``VERSION_JSON`` of the version a query reaches through ``relation``, for ``defer()``."""
    return [f"{relation}__{name}" for name in VERSION_JSON]


def runs_with_versions() -> QuerySet[TrainingRun]:
    """Runs with their parent's and result's version numbers, not those versions' large columns."""
    return TrainingRun.objects.select_related("parent_version", "result_version").defer(
        *version_json_of("parent_version"), *version_json_of("result_version")
    )


# The figures a version shows outside the admin; its full metrics hold confusion matrices.
HEADLINE_METRICS = ("overall", "digits", "letters", "forgetting")


def versions_listed() -> QuerySet[ModelVersion]:
    """Versions with their parent's number and their headline metrics as ``headline_<name>``,
    without the large columns (full metrics, training record, trained sample ids)."""
    return (
        ModelVersion.objects.select_related("parent")
        .only(
            "number",
            "status",
            "parent__number",
            "architecture",
            "classes",
            "sha256",
            "created_at",
            "activated_at",
        )
        .annotate(
            **{f"headline_{name}": KeyTransform(name, "metrics") for name in HEADLINE_METRICS}
        )
    )


def version_metrics_of(*, version_id: int) -> ModelVersion | None:
    """A version with its metrics only (and the way to its parent)."""
    return ModelVersion.objects.filter(pk=version_id).only("metrics", "parent_id").first()


def version_active_number() -> int | None:
    return (
        ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE)
        .values_list("number", flat=True)
        .first()
    )


def version_chain_root(*, version: ModelVersion) -> ModelVersion:
    """The first version that uses ``version``'s anchors: the pretrained one they came from."""
    chain = ModelVersion.objects.filter(anchors=version.anchors.name).order_by("number")
    return chain.first() or version


def run_queued() -> TrainingRun | None:
    return TrainingRun.objects.filter(status=TrainingRun.Status.QUEUED).first()


def run_is_running() -> bool:
    return TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING).exists()


def runs_in_flight() -> QuerySet[TrainingRun]:
    return TrainingRun.objects.filter(
        status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]
    )


def runs_last_finished(*, parent: ModelVersion | None, limit: int) -> list[TrainingRun]:
    """The newest finished runs that built on ``parent``, newest first."""
    runs = TrainingRun.objects.filter(parent_version=parent, status__in=TrainingRun.FINISHED)
    return list(runs.order_by("-pk")[:limit])


# --- Comparing versions ------------------------------------------------------

# What the dashboard and the admin compare versions by. A pretrained version's own
# metrics are on its pretraining held-out images, a fine-tune's on the gate's fixed
# set, where letters weigh more: mixed, they would show a drop that did not happen.
MEASURE = "accuracy on the gate's fixed set"
MEASURED = ("overall", "digits", "letters")


def _recorded(key: str) -> Cast:
    """A figure of a version's ``metrics``, read by the database (None where not recorded)."""
    return Cast(KT(f"metrics__{key}"), FloatField())


def versions_annotate_gate_scores(versions: QuerySet) -> QuerySet:
    """Add each version's accuracy by ``MEASURE``: ``gate_overall``, ``gate_digits``,
    ``gate_letters``, and its ``recorded_forgetting`` (None where not recorded).

    A fine-tune's figures are its own; another version's are what its first fine-tune
    recorded for it, its parent. The database reads them, so lists can defer ``metrics``
    (a confusion matrix each).
    """
    first_fine_tune = ModelVersion.objects.filter(
        parent=OuterRef("pk"), training_info__kind="fine-tune"
    ).order_by("number")
    return versions.annotate(
        **{
            f"gate_{key}": Case(
                When(training_info__kind="fine-tune", then=_recorded(key)),
                default=Subquery(
                    first_fine_tune.annotate(score=_recorded(f"parent_{key}")).values("score")[:1]
                ),
            )
            for key in MEASURED
        },
        recorded_forgetting=_recorded("forgetting"),
    )


def versions_newest(*, limit: int) -> list[ModelVersion]:
    """The newest ``limit`` versions, oldest first, with their gate scores (``metrics``
    deferred)."""
    newest = ModelVersion.objects.order_by("-number").defer("metrics")[:limit]
    return list(versions_annotate_gate_scores(newest))[::-1]


def version_numbers_newest(*, limit: int) -> list[int]:
    """The numbers of the newest ``limit`` versions, newest first."""
    return list(ModelVersion.objects.order_by("-number").values_list("number", flat=True)[:limit])


def version_gate_scores(version: ModelVersion) -> dict:
    """A version's overall, digit and letter accuracy by ``MEASURE``, None where not recorded.

    ``version`` comes from ``versions_annotate_gate_scores``. A version that is no
    fine-tune has its figures once a fine-tune of it has run.
    """
    return {key: getattr(version, f"gate_{key}") for key in MEASURED}


# --- Operations (the /metrics endpoint) --------------------------------------


def run_counts() -> dict[str, int]:
    return dict(TrainingRun.objects.order_by().values_list("status").annotate(n=Count("pk")))


def run_duration_histogram(*, bounds_s: list[float]) -> dict[str, dict]:
    """Per finished status: cumulative counts at or under each bound, count, summed seconds."""
    runs = (
        TrainingRun.objects.filter(status__in=TrainingRun.FINISHED, started_at__isnull=False)
        .order_by()
        .annotate(
            duration=ExpressionWrapper(
                F("finished_at") - F("started_at"), output_field=DurationField()
            )
        )
    )
    rows = runs.values("status").annotate(
        count=Count("pk"),
        total=Sum("duration"),
        **{
            f"le{i}": Count("pk", filter=Q(duration__lte=timedelta(seconds=b)))
            for i, b in enumerate(bounds_s)
        },
    )
    return {
        row["status"]: {
            "buckets": [row[f"le{i}"] for i in range(len(bounds_s))],
            "count": row["count"],
            "sum_s": row["total"].total_seconds() if row["total"] else 0.0,
        }
        for row in rows
    }
