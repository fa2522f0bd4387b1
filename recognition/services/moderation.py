"""Moderation: a moderator's labels and review status, and making moderator accounts."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from ..models import Correction, Sample
from .corrections import CorrectionOutcome, correct_sample

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
    with transaction.atomic():
        # The label as stored, locked: a correction committed meanwhile is what is confirmed.
        sample.refresh_from_db(
            fields=["label", "status", "predicted_label"],
            from_queryset=Sample.objects.select_for_update(),
        )
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
    """Keep these samples out of every future fine-tune (replay, new corrections, evaluation).

    Their proposed labels are declined, so they leave the review queue: an excluded
    sample has nothing left to review.
    """
    with transaction.atomic():
        changing = samples.exclude(status=Sample.Status.EXCLUDED)
        Correction.objects.filter(
            sample__in=changing, training_state=Correction.TrainingState.PROPOSED
        ).update(training_state=Correction.TrainingState.DECLINED)
        return changing.update(status=Sample.Status.EXCLUDED, proposed=False)


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
