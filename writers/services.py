"""The only writers of personal models: learn a label, use (and rebuild), reset."""

from dataclasses import dataclass
from datetime import timedelta
from importlib import import_module

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from recognition import selectors as recognition_selectors
from training.classes import CLASSES
from training.registry import NoActiveModel
from training.serving import LoadedModel, active_model

from . import selectors
from .models import PersonalModel
from .prototypes import MAX_PROTOTYPES, Drawn, Prototypes, drawn

# A prediction records its use at most this often: a write per drawing would cost more.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# Ended sessions' personal models are deleted this many at a time: short transactions.
EXPIRY_BATCH = 1000
DATABASE_SESSION_ENGINES = (
    "django.contrib.sessions.backends.db",
    "django.contrib.sessions.backends.cached_db",
)


@dataclass(frozen=True)
class Reading:
    """The active model's one pass over a labelled sample: its answer, and the features a
    personal model keeps."""

    loaded: LoadedModel
    seen: Drawn

    @property
    def label(self) -> str:
        return CLASSES[int(self.seen.logits[0].argmax())]


def sample_reading(*, sample) -> Reading | None:
    """Read ``sample`` with the active model (None when no model serves). A forward pass:
    made before a transaction, so that no lock waits for it."""
    try:
        loaded = active_model.get()
    except NoActiveModel:
        return None
    return Reading(loaded=loaded, seen=drawn(loaded.model, sample.glyph_array()))


def personal_model_learn(*, sample, label: str, reading: Reading | None) -> PersonalModel | None:
    """Teach the writer who drew ``sample`` that it shows ``label``, for their next drawing.

    Runs for every label the writer gives (a correction or a confirmation), whoever
    may teach the shared model; a sample without a writer, or with no model to read
    it (``reading`` None), teaches nobody. A newer label of the same sample replaces its row.
    """
    if not sample.writer or reading is None:
        return None
    loaded, seen = reading.loaded, reading.seen
    with transaction.atomic():
        # Created first, then locked: a writer's first two labels at once both find the row.
        PersonalModel.objects.get_or_create(
            writer=sample.writer, defaults={"user_id": sample.user_id, "features": b""}
        )
        personal = PersonalModel.objects.select_for_update().get(writer=sample.writer)
        prototypes, _ = _prototypes_for(personal, loaded)
        sample_ids = list(personal.sample_ids)
        replaces = sample_ids.index(sample.pk) if sample.pk in sample_ids else None
        if replaces is not None:
            del sample_ids[replaces]
        prototypes = prototypes.with_row(seen.rows[0], label, replaces=replaces)
        personal.sample_ids = [*sample_ids, sample.pk][-MAX_PROTOTYPES:]
        _store(personal, prototypes, loaded)
        personal.corrections += 1
        personal.save()
    return personal


def personal_model_use(*, writer_key: str, loaded: LoadedModel) -> Prototypes | None:
    """The writer's prototypes for ``loaded`` to predict with, rebuilt if made under other
    hidden weights."""
    personal = PersonalModel.objects.filter(writer=writer_key).first()
    if personal is None:
        return None
    now = timezone.now()
    prototypes, rebuilt = _prototypes_for(personal, loaded)
    if rebuilt:  # kept, so the writer's next drawings need not rebuild them
        _store(personal, prototypes, loaded)
        # Only over the row as it was read: a label learned meanwhile must not be lost.
        PersonalModel.objects.filter(pk=personal.pk, updated_at=personal.updated_at).update(
            **{field: getattr(personal, field) for field in STORED_FIELDS},
            last_used_at=now,
            updated_at=now,
        )
    elif personal.last_used_at is None or now - personal.last_used_at > LAST_USED_RESOLUTION:
        PersonalModel.objects.filter(pk=personal.pk).update(last_used_at=now)
    return prototypes


def personal_models_reset(*, personal_models: QuerySet[PersonalModel]) -> int:
    """Forget these writers' handwriting: their next drawings get the shared model's answer."""
    deleted, _ = personal_models.delete()
    return deleted


def sessions_expire() -> int:
    """Clear expired browser sessions (Django's ``clearsessions``) and delete the personal
    models of every session that has ended; returns how many models went.

    Only sessions kept in the database can be looked up; with another engine the
    personal models stay.
    """
    import_module(settings.SESSION_ENGINE).SessionStore.clear_expired()
    if settings.SESSION_ENGINE not in DATABASE_SESSION_ENGINES:
        return 0
    ended = selectors.personal_models_of_ended_sessions().order_by("pk")
    deleted, after = 0, 0
    # Each batch reads on from the last one's end: every model is looked at once.
    while batch := list(ended.filter(pk__gt=after).values_list("pk", flat=True)[:EXPIRY_BATCH]):
        after = batch[-1]
        deleted += personal_models_reset(personal_models=PersonalModel.objects.filter(pk__in=batch))
    return deleted


def _prototypes_for(personal: PersonalModel, loaded: LoadedModel) -> tuple[Prototypes, bool]:
    """The stored prototypes, or, made under other hidden weights, rebuilt from the writer's
    samples (new weights move the rows; the kept samples give them anew); and whether
    they were rebuilt."""
    if personal.hidden_weights == loaded.hidden_weights or not personal.labels:
        return Prototypes.from_stored(personal.features, personal.labels), False
    glyphs = recognition_selectors.sample_glyphs(sample_ids=personal.sample_ids)
    kept = [
        (sample_id, label)
        for sample_id, label in zip(personal.sample_ids, personal.labels, strict=True)
        if sample_id in glyphs
    ]
    personal.sample_ids = [sample_id for sample_id, _ in kept]
    labels = "".join(label for _, label in kept)
    if not kept:
        return Prototypes.empty(), True
    return Prototypes(
        drawn(loaded.model, [glyphs[sample_id] for sample_id, _ in kept]).rows, labels
    ), True


# What ``_store`` and a rebuild write.
STORED_FIELDS = ("features", "labels", "sample_ids", "model_version_id", "hidden_weights")


def _store(personal: PersonalModel, prototypes: Prototypes, loaded: LoadedModel) -> None:
    personal.features = prototypes.to_bytes()
    personal.labels = prototypes.labels
    personal.model_version_id = loaded.version_id
    personal.hidden_weights = loaded.hidden_weights
