"""Read-side queries over samples, predictions and corrections."""

from itertools import accumulate

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Mod
from django.db.models.lookups import Exact

from training.classes import CLASSES
from training.models import TrainingRun
from training.preprocessing import glyph_from_bytes

from .models import LATENCY_BOUNDS_MS, Correction, PredictionTally, Sample


def sample_list() -> QuerySet[Sample]:
    """Samples with their latest prediction's label, confidence and version number.

    Without their strokes (up to half a megabyte each), which only a detail shows.
    """
    # The id breaks ties between samples stored in the same instant, so pages neither
    # repeat nor skip a row.
    return Sample.objects.select_related("user").defer("strokes").order_by("-created_at", "-pk")


def sample_detail(*, sample_id: int) -> Sample:
    return (
        sample_list()
        .defer(None)
        .prefetch_related("predictions__model_version", "corrections")
        .get(pk=sample_id)
    )


def sample_for_correction(*, sample_id: int, user, session_key: str | None) -> Sample | None:
    """The sample if this person may label it: a moderator, or its owner (the user or the
    session that drew it). Nobody else, so that no stranger can relabel another's drawing."""
    sample = Sample.objects.filter(pk=sample_id).first()
    if sample is None or user.has_perm("recognition.moderate_sample"):
        return sample
    owned_by_user = sample.user_id is not None and sample.user_id == user.pk
    owned_by_session = bool(sample.session_key) and sample.session_key == session_key
    return sample if owned_by_user or owned_by_session else None


def trains_shared_model(*, user) -> bool:
    """Whether this person's corrections train the shared model without a moderator's review.

    Under ``LEARN_FROM=everyone`` everybody's do; under ``trusted``, those of moderators
    (``recognition.moderate_sample``) and of users with ``recognition.train_shared_model``
    (the "Trusted writers" group). Being staff alone grants neither.
    """
    if settings.LEARN_FROM == "everyone":
        return True
    if user is None or not user.is_authenticated:
        return False
    return user.has_perm("recognition.moderate_sample") or user.has_perm(
        "recognition.train_shared_model"
    )


def corrections_pending() -> QuerySet[Correction]:
    """Corrections that no finished fine-tune has learned or rejected yet."""
    return Correction.objects.filter(training_state=Correction.TrainingState.PENDING)


def corrections_awaiting_run() -> QuerySet[Correction]:
    """Pending corrections that no running fine-tune has taken: those a new run would learn."""
    return corrections_pending().exclude(training_runs__status=TrainingRun.Status.RUNNING)


def samples_trainable() -> QuerySet[Sample]:
    """Labelled samples that moderators have not excluded from training."""
    return Sample.objects.exclude(label="").exclude(status=Sample.Status.EXCLUDED)


def _label_correction(field: str) -> Subquery:
    """A field of the correction the sample's label comes from, as ``Sample.derive_label`` picks."""
    corrections = Correction.objects.filter(sample=OuterRef("pk")).order_by(
        Case(When(source=Correction.Source.ADMIN, then=Value(0)), default=Value(1)),
        "-created_at",
        "-pk",
    )
    return Subquery(corrections.values(field)[:1])


# Labels the shared model must not learn from: waiting for a moderator, or overruled.
UNTRUSTED_LABEL_STATES = (
    Correction.TrainingState.PROPOSED,
    Correction.TrainingState.DECLINED,
)


def samples_with_trusted_label() -> QuerySet[Sample]:
    """Trainable samples whose label someone trusted gave (``label_state`` annotated).

    A proposed label teaches the shared model nothing, not even as replay or in
    the gate's held-out set, until a moderator confirms it.
    """
    return (
        samples_trainable()
        # A label set without any correction (none is today) has nothing to trust.
        .annotate(label_state=Coalesce(_label_correction("training_state"), Value("")))
        .exclude(label_state__in=UNTRUSTED_LABEL_STATES)
    )


def samples_replayable() -> QuerySet[Sample]:
    """Trusted-label samples whose label the fine-tune gate has not refused.

    Replay trains on a sample in run after run, so a label the gate refused (it
    may be careless or hostile) must not come back that way; a later correction
    or a moderator's label of the sample gives it a new chance. ``moderated``
    marks samples a moderator confirmed or relabelled, the labels trusted most.
    """
    return (
        samples_with_trusted_label()
        .exclude(label_state=Correction.TrainingState.REJECTED)
        .annotate(
            moderated=Q(status__in=[Sample.Status.CONFIRMED, Sample.Status.RELABELED]),
        )
    )


def samples_annotate_heldout(samples: QuerySet[Sample], *, every: int) -> QuerySet[Sample]:
    """``samples`` with ``in_heldout_share`` and ``heldout``.

    The held-out share is the samples whose secret ``heldout_bucket`` falls in one
    bucket of ``every`` (not their ids, which clients see): replay never draws
    from it. A correction, though, is learned whatever its sample's bucket, so
    only the share's samples that no fine-tune has trained on are ``heldout``:
    none of their corrections was taken by a finished run, whether its candidate
    was published or refused (a refused version is kept and can be activated).
    The one lag: a run whose parent was deactivated while it trained leaves its
    corrections pending, and the next run, queued at once, settles them.
    """
    taken_by_a_run = Exists(
        Correction.objects.filter(
            sample=OuterRef("pk"),
            training_state__in=[
                Correction.TrainingState.TRAINED,
                Correction.TrainingState.REJECTED,
            ],
        )
    )
    return samples.annotate(in_heldout_share=Exact(Mod("heldout_bucket", every), 0)).annotate(
        heldout=Q(in_heldout_share=True) & ~taken_by_a_run
    )


# --- Moderation -------------------------------------------------------------

# Proposed corrections first (the shared model learns them only once approved);
# then active learning: unreviewed before reviewed, disputed labels first (a person
# and the model disagree: either the model must learn or the label is careless
# or hostile), then the least confident predictions, whose labels teach most.
REVIEW_QUEUE_ORDERING = (
    F("proposed").desc(),
    F("reviewed").asc(),
    F("disputed").desc(),
    "confidence",  # never null: every sample is stored with its prediction
    "-created_at",
)
CONFIDENCE_BANDS = {
    "low": (0.0, 0.5),
    "medium": (0.5, 0.8),
    "high": (0.8, 0.95),
    "certain": (0.95, 1.01),
}


def sample_review_queue() -> QuerySet[Sample]:
    """Samples to review, in ``REVIEW_QUEUE_ORDERING`` (the index ``sample_review_queue``)."""
    return sample_list().order_by(*REVIEW_QUEUE_ORDERING)


def samples_in_confidence_band(samples: QuerySet[Sample], *, band: str) -> QuerySet[Sample]:
    low, high = CONFIDENCE_BANDS[band]
    return samples.filter(confidence__gte=low, confidence__lt=high)


def samples_for_export(*, statuses=None) -> QuerySet[Sample]:
    """Labelled samples, optionally of some statuses only, oldest first."""
    samples = Sample.objects.exclude(label="")
    if statuses:
        samples = samples.filter(status__in=statuses)
    return samples.order_by("pk")


def sample_counts_by_class() -> dict[str, dict[str, int]]:
    """Per class: samples predicted as it, labelled as it, and corrections to and away from it."""
    counts = {label: dict.fromkeys(("predicted", "labelled", "to", "from"), 0) for label in CLASSES}
    tallies = {
        "labelled": Sample.objects.exclude(label="").values_list("label").annotate(n=Count("pk")),
        "to": Correction.objects.values_list("label").annotate(n=Count("pk")),
        "from": Correction.objects.exclude(previous_label="")
        .values_list("previous_label")
        .annotate(n=Count("pk")),
    }
    for column, rows in tallies.items():
        for label, n in rows.order_by():
            if label in counts:
                counts[label][column] = n
    # Every sample has exactly one prediction: predictions by label count samples too.
    for label, n in prediction_counts_by_label().items():
        if label in counts:
            counts[label]["predicted"] = n
    return counts


def samples_confused_pairs(*, limit: int = 10) -> list[dict]:
    """The most frequent (predicted -> labelled) disagreements on user samples, where the
    shared model answered: a personal model's answers are its writer's teaching."""
    rows = (
        sample_review_queue()
        .filter(disputed=True, predicted_personally=False)
        .exclude(status=Sample.Status.EXCLUDED)
        .values("predicted_label", "label")
        .annotate(count=Count("pk"))
        .order_by("-count", "predicted_label", "label")[:limit]
    )
    return [
        {"predicted": row["predicted_label"], "true": row["label"], "count": row["count"]}
        for row in rows
    ]


def samples_corrected() -> QuerySet[Sample]:
    """Trainable samples that a person labelled, newest first."""
    return samples_trainable().filter(corrected=True).order_by("-pk")


def samples_labelled_by(samples: QuerySet[Sample], *, author_id: int) -> QuerySet[Sample]:
    """The samples this person corrected: to review or undo all of one person's labels."""
    return samples.filter(
        Exists(Correction.objects.filter(sample=OuterRef("pk"), author_id=author_id))
    )


def samples_of_drawer(samples: QuerySet[Sample], *, sample_id: int) -> QuerySet[Sample]:
    """Every drawing by whoever drew this sample (its writer: a session, a user, a token's
    end user; else its user): to review or stop one anonymous drawer at once."""
    drawn = Sample.objects.filter(pk=sample_id).values("writer", "user_id").first()
    if drawn is None:
        return samples.none()
    if drawn["writer"]:
        return samples.filter(writer=drawn["writer"])
    if drawn["user_id"] is not None:
        return samples.filter(user_id=drawn["user_id"])
    return samples.filter(pk=sample_id)


# How many newest corrections per listed author are read to find distinct authors.
AUTHOR_SCAN_FACTOR = 20


def correction_authors_recent(*, limit: int) -> list:
    """Up to ``limit`` people who gave the newest labels, newest first.

    A filter listing every author ever would grow with the site; the others are
    reached by URL or by searching their name.
    """
    newest = Correction.objects.exclude(author=None).order_by("-pk")
    author_ids = list(
        dict.fromkeys(newest.values_list("author", flat=True)[: limit * AUTHOR_SCAN_FACTOR])
    )[:limit]
    users = get_user_model().objects.in_bulk(author_ids)
    return [users[pk] for pk in author_ids if pk in users]


# --- Operations (the /metrics endpoint) --------------------------------------
# Read from the database so that every process reports the same totals (see
# recognition/metrics.py): predictions from their tally, the rest by aggregates
# over tables that grow with corrections and runs, not with predictions.


def prediction_counts_by_label() -> dict[str, int]:
    counts = PredictionTally.objects.order_by().values_list("label").annotate(n=Sum("count"))
    return dict(counts)


def prediction_latency_histogram() -> dict:
    """Cumulative counts of predictions within each of ``LATENCY_BOUNDS_MS``, count, summed ms."""
    rows = (
        PredictionTally.objects.order_by()
        .values_list("bucket")
        .annotate(n=Sum("count"), ms=Sum("sum_ms"))
    )
    per_bucket = [0] * (len(LATENCY_BOUNDS_MS) + 1)
    sum_ms = 0.0
    for bucket, n, ms in rows:
        per_bucket[bucket] += n
        sum_ms += ms
    return {
        "buckets": list(accumulate(per_bucket[:-1])),
        "count": sum(per_bucket),
        "sum_ms": sum_ms,
    }


def correction_counts() -> dict[tuple[str, str], int]:
    """Corrections by (source, training state)."""
    rows = Correction.objects.order_by().values_list("source", "training_state")
    return {(source, state): n for source, state, n in rows.annotate(n=Count("pk"))}


def sample_glyphs(*, sample_ids) -> dict:
    """The 28x28 glyphs of these samples by id; samples that are gone are left out."""
    rows = Sample.objects.filter(pk__in=list(sample_ids)).values_list("pk", "glyph")
    return {pk: glyph_from_bytes(glyph) for pk, glyph in rows}
