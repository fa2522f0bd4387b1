"""The only writers of samples, predictions and corrections.

Each use case is one function with keyword arguments that validates, writes in
one transaction, and leaves nothing half-written when it fails.
"""

import base64
import bisect
import time
from dataclasses import dataclass

import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import F
from PIL import Image

from training import runs
from training.classes import CLASS_INDEX, CLASSES
from training.models import TrainingRun
from training.preprocessing import BlankImageError, preprocess_image
from training.registry import NoActiveModel, active_model
from writers import services as writers_services
from writers.identity import Writer
from writers.prototypes import personal_proba

from . import selectors
from .context import DEFAULT_CONTEXT, context_labels, context_restrict
from .images import DrawingError, decode_drawing, encode_png
from .lookalikes import lookalike_pairs, lookalikes_of
from .models import LATENCY_BOUNDS_MS, Correction, Prediction, PredictionTally, Sample

TOP_K = 5


@dataclass(frozen=True)
class PredictionOutcome:
    sample: Sample
    prediction: Prediction
    top: list[dict]
    preview_png: bytes
    # The serving model's version number, known without reading its row back.
    model_version_number: int
    # The leading guesses when they are look-alikes too close to call, else empty.
    lookalikes: list[str]
    # Whether the writer's personal model changed the answer.
    personal: bool

    @property
    def preview_data_url(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.preview_png).decode("ascii")


@dataclass(frozen=True)
class CorrectionOutcome:
    correction: Correction
    training_run: TrainingRun | None


def predict_drawing(
    *,
    image_data: bytes,
    source: str,
    strokes: list | None = None,
    user=None,
    session_key: str = "",
    writer: Writer | None = None,
    classes: str = DEFAULT_CONTEXT,
) -> PredictionOutcome:
    """Recognize one drawing among the ``classes`` allowed, for ``writer``, and keep it.

    ``classes`` is a context from ``context.context_parse``. With a writer who has a
    personal model, it shapes the answer; everyone else gets the shared model's.
    Raises DrawingError for bad input (nothing is stored) and
    training.registry.NoActiveModel when no model can serve.
    """
    image = decode_drawing(image_data)
    started = time.perf_counter()
    try:
        glyph = preprocess_image(image)
    except BlankImageError as error:
        raise DrawingError("blank", f"The drawing is blank: {error}") from None
    loaded = active_model.get()
    prototypes = writer and writers_services.personal_model_use(
        writer_key=writer.key, loaded=loaded
    )
    if prototypes:
        probabilities, personal = personal_proba(loaded.model, glyph, prototypes)
    else:
        probabilities, personal = loaded.predict_proba(glyph[np.newaxis])[0], False
    probabilities = context_restrict(probabilities, classes)
    latency_ms = (time.perf_counter() - started) * 1000.0

    allowed = context_labels(classes)
    best_first = [CLASSES[index] for index in np.argsort(probabilities)[::-1]]
    top = [
        {"label": label, "probability": float(probabilities[CLASS_INDEX[label]])}
        for label in best_first
        if label in allowed
    ][:TOP_K]
    sample = Sample(
        width=image.width,
        height=image.height,
        glyph=glyph.tobytes(),
        strokes=strokes,
        source=source,
        user=user if user is not None and user.is_authenticated else None,
        session_key=session_key or "",
        writer=writer.key if writer else "",
        classes=classes,
        predicted_label=top[0]["label"],
        confidence=top[0]["probability"],
        model_version_number=loaded.number,
    )
    stored_png = image_data if image.format == "PNG" else encode_png(image)
    # The file is written (atomically) first; if the rows cannot be written it goes too.
    sample.image.save("drawing.png", ContentFile(stored_png), save=False)
    try:
        with transaction.atomic():
            sample.save()
            prediction = Prediction.objects.create(
                sample=sample,
                model_version_id=loaded.version_id,
                label=top[0]["label"],
                confidence=top[0]["probability"],
                probabilities=[round(float(p), 6) for p in probabilities],
                latency_ms=latency_ms,
            )
            _prediction_tally_add(label=prediction.label, latency_ms=latency_ms)
    except BaseException:
        sample.image.delete(save=False)
        raise
    return PredictionOutcome(
        sample=sample,
        prediction=prediction,
        top=top,
        preview_png=encode_png(Image.fromarray(glyph, mode="L")),
        model_version_number=loaded.number,
        lookalikes=lookalikes_of(probabilities, lookalike_pairs(loaded.version_id)),
        personal=personal,
    )


def _prediction_tally_add(*, label: str, latency_ms: float):
    """Count one prediction in its (label, latency bucket) row, inside the caller's transaction."""
    bucket = bisect.bisect_left(LATENCY_BOUNDS_MS, latency_ms)
    counted = PredictionTally.objects.filter(label=label, bucket=bucket).update(
        count=F("count") + 1, sum_ms=F("sum_ms") + latency_ms
    )
    if counted:
        return
    try:
        with transaction.atomic():  # the row's first prediction, unless another process won
            PredictionTally.objects.create(label=label, bucket=bucket, count=1, sum_ms=latency_ms)
    except IntegrityError:
        PredictionTally.objects.filter(label=label, bucket=bucket).update(
            count=F("count") + 1, sum_ms=F("sum_ms") + latency_ms
        )


def correct_sample(
    *,
    sample: Sample,
    label: str,
    source: str,
    author=None,
    session_key: str = "",
) -> CorrectionOutcome:
    """Record the label a person gave a sample; queue a fine-tune of the shared model if the
    label teaches it something and the person may teach it.

    Stored and counted but queueing nothing: a label the active model already
    reads on the sample, one that repeats the sample's current label (unless
    that label still waits for review), and one on a sample excluded from
    training. A label from someone the shared model does not learn from
    (``selectors.trains_shared_model``) is *proposed*: a moderator's confirm or
    relabel sends it to training.
    Every label but a moderator's also teaches the personal model of the sample's
    writer at once.
    """
    if label not in CLASS_INDEX:
        raise ValueError(f"{label!r} is not one of the 36 classes")
    model_reads = _active_model_reading(sample)  # a forward pass: outside the transaction
    with transaction.atomic():
        predicted = sample.predicted_label
        previous = sample.label or predicted
        current = sample.label_correction()
        repeats = (
            current is not None
            and current.label == label
            and current.training_state != Correction.TrainingState.PROPOSED
        )
        confirms = label == previous and label == predicted
        if sample.status == Sample.Status.EXCLUDED or repeats or confirms or label == model_reads:
            state = Correction.TrainingState.NOT_NEEDED
        elif selectors.trains_shared_model(user=author):
            state = Correction.TrainingState.PENDING
        else:
            state = Correction.TrainingState.PROPOSED
        correction = Correction.objects.create(
            sample=sample,
            label=label,
            previous_label=previous,
            author=author if author is not None and author.is_authenticated else None,
            session_key=session_key or "",
            source=source,
            training_state=state,
        )
        sample.label = sample.derive_label()
        sample.corrected = True
        sample.proposed = sample.proposed or state == Correction.TrainingState.PROPOSED
        sample.save(update_fields=["label", "corrected", "proposed"])
        if source != Correction.Source.ADMIN:
            writers_services.personal_model_learn(sample=sample, label=label)
        training_run = (
            runs.training_run_request() if state == Correction.TrainingState.PENDING else None
        )
    return CorrectionOutcome(correction=correction, training_run=training_run)


def _active_model_reading(sample: Sample) -> str | None:
    """The label the active model gives the sample's glyph now (None when no model serves)."""
    try:
        loaded = active_model.get()
    except NoActiveModel:
        return None
    return CLASSES[int(loaded.predict_proba(sample.glyph_array()[np.newaxis]).argmax())]


# --- Training (called by training's run life cycle) ------------------------


def corrections_take_pending(*, run: TrainingRun, limit: int) -> list[Correction]:
    """Give a run the oldest ``limit`` corrections pending now; the rest wait for the next run."""
    pending = list(selectors.corrections_pending().order_by("pk")[:limit])
    run.corrections.set(pending)
    return pending


def corrections_settle(*, run: TrainingRun, learned: bool) -> int:
    """Mark the run's corrections still pending as learned, or as refused by its gate."""
    state = Correction.TrainingState.TRAINED if learned else Correction.TrainingState.REJECTED
    return run.corrections.filter(training_state=Correction.TrainingState.PENDING).update(
        training_state=state
    )


def corrections_already_known(*, run: TrainingRun) -> int:
    """Mark the run's pending corrections as nothing to learn: its parent reads them all."""
    return run.corrections.filter(training_state=Correction.TrainingState.PENDING).update(
        training_state=Correction.TrainingState.NOT_NEEDED
    )


# --- Moderation -------------------------------------------------------------

MODERATORS_GROUP = "Moderators"


def sample_relabel(*, sample: Sample, label: str, moderator) -> CorrectionOutcome:
    """Give a sample a moderator's label: an audited correction queued for training like any other.

    Proposed corrections of the same label go to training with it; the others are
    declined. An excluded sample keeps its exclusion (only ``samples_include``
    lifts it), so its new label is recorded but never trained on.
    """
    return _moderator_label(
        sample=sample, label=label, moderator=moderator, status=Sample.Status.RELABELED
    )


def sample_confirm(*, sample: Sample, moderator) -> CorrectionOutcome:
    """Record that a moderator checked the sample's current label (or the model's guess if none).

    The confirmation is stored as a moderator Correction so that it shows in the
    audit history and, like any moderator label, outranks later user corrections.
    Confirming a proposed label sends it to training; otherwise it queues a
    fine-tune only when it teaches the model something, as any correction does.
    An excluded sample stays excluded.
    """
    sample.refresh_from_db(fields=["label", "status", "predicted_label"])  # as stored
    return _moderator_label(
        sample=sample,
        label=sample.label or sample.predicted_label,
        moderator=moderator,
        status=Sample.Status.CONFIRMED,
    )


def samples_confirm(*, samples, moderator) -> list[CorrectionOutcome]:
    """``sample_confirm`` for many samples in one transaction: what they teach is one run."""
    with transaction.atomic():
        return [sample_confirm(sample=sample, moderator=moderator) for sample in samples]


def samples_relabel(*, samples, label: str, moderator) -> list[CorrectionOutcome]:
    """``sample_relabel`` for many samples in one transaction: what they teach is one run."""
    with transaction.atomic():
        return [
            sample_relabel(sample=sample, label=label, moderator=moderator) for sample in samples
        ]


def _moderator_label(*, sample: Sample, label: str, moderator, status: str) -> CorrectionOutcome:
    """A moderator Correction, the fate of the sample's proposals, and the review status."""
    with transaction.atomic():
        outcome = correct_sample(
            sample=sample, label=label, source=Correction.Source.ADMIN, author=moderator
        )
        proposed = sample.corrections.filter(training_state=Correction.TrainingState.PROPOSED)
        # Agreeing proposals share the moderator's correction's fate: trained with it, or
        # nothing to learn (the model reads the label already, or the sample is excluded).
        proposed.filter(label=label).update(training_state=outcome.correction.training_state)
        proposed.exclude(label=label).update(training_state=Correction.TrainingState.DECLINED)
        sample.proposed = False
        if sample.status != Sample.Status.EXCLUDED:
            sample.status = status
        sample.save(update_fields=["status", "proposed"])
    return outcome


def samples_exclude(*, samples) -> int:
    """Keep these samples out of every future fine-tune (replay, new corrections, evaluation)."""
    return samples.exclude(status=Sample.Status.EXCLUDED).update(status=Sample.Status.EXCLUDED)


def samples_include(*, samples) -> int:
    """Undo an exclusion; the samples go back to the review queue as unreviewed."""
    return samples.filter(status=Sample.Status.EXCLUDED).update(status=Sample.Status.UNREVIEWED)


def moderator_create(*, username: str, email: str = "", password: str | None = None):
    """Create (or promote) a staff account in the Moderators group; idempotent.

    Without a password a new account gets an unusable one (set it later with
    ``manage.py changepassword``); an existing account keeps its password.
    """
    with transaction.atomic():
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"email": email}
        )
        user.is_staff = True
        if password is not None:
            user.set_password(password)
        elif created:
            user.set_unusable_password()
        user.save()
        user.groups.add(Group.objects.get(name=MODERATORS_GROUP))
    return user
