"""Corrections: the label a person gives a sample, and the training run that learns it."""

from dataclasses import dataclass

from django.db import transaction

from training import runs
from training.classes import CLASS_INDEX
from training.models import TrainingRun
from writers import services as writers_services

from .. import selectors
from ..models import Correction, Sample


@dataclass(frozen=True)
class CorrectionOutcome:
    correction: Correction
    training_run: TrainingRun | None


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

    Stored and counted but queueing nothing: a label the active shared model
    already reads on the sample, one that repeats the sample's current label
    (unless that label waits for review or was declined), and one on a sample
    excluded from training. A label from someone the shared model does not learn from
    (``selectors.trains_shared_model``) is *proposed*: a moderator's confirm or
    relabel sends it to training.
    Every label but a moderator's also teaches the personal model of the sample's
    writer at once.
    """
    if label not in CLASS_INDEX:
        raise ValueError(f"{label!r} is not one of the 36 classes")
    reading = writers_services.sample_reading(sample=sample)  # outside the transaction
    model_reads = reading.label if reading is not None else None
    with transaction.atomic():
        # Two corrections at once each derive the label: the second must see the first's.
        sample.refresh_from_db(
            fields=["label", "predicted_label", "status", "corrected", "proposed"],
            from_queryset=Sample.objects.select_for_update(),
        )
        predicted = sample.predicted_label
        previous = sample.label or predicted
        current = sample.label_correction()
        repeats = (
            current is not None
            and current.label == label
            and current.training_state not in selectors.UNTRUSTED_LABEL_STATES
        )
        # Only the shared model's own reading makes a label nothing to learn: the answer
        # shown may have been a personal model's, which a vandal's labels taught.
        if sample.status == Sample.Status.EXCLUDED or repeats or label == model_reads:
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
            writers_services.personal_model_learn(sample=sample, label=label, reading=reading)
        training_run = (
            runs.training_run_request() if state == Correction.TrainingState.PENDING else None
        )
    return CorrectionOutcome(correction=correction, training_run=training_run)


# --- Training (called by training's run life cycle) ------------------------


def corrections_take_pending(*, run: TrainingRun, limit: int) -> list[Correction]:
    """Give a run the oldest ``limit`` corrections pending now; the rest wait for the next run."""
    pending = list(selectors.corrections_pending().order_by("pk")[:limit])
    run.corrections.set(pending)
    return pending


def corrections_settle(*, run: TrainingRun, learned: bool) -> int:
    """Mark the run's corrections still pending as learned, or as refused by its gate."""
    state = Correction.TrainingState.TRAINED if learned else Correction.TrainingState.REJECTED
    return _pending_of(run).update(training_state=state)


def corrections_already_known(*, run: TrainingRun) -> int:
    """Mark the run's pending corrections as nothing to learn: its parent reads them all."""
    return _pending_of(run).update(training_state=Correction.TrainingState.NOT_NEEDED)


def _pending_of(run: TrainingRun):
    return run.corrections.filter(training_state=Correction.TrainingState.PENDING)
