"""Read-side queries of personal models."""

from django.contrib.sessions.models import Session
from django.db.models import Exists, OuterRef, QuerySet
from django.db.models.functions import Substr
from django.utils import timezone

from .identity import SESSION_WRITER
from .models import PersonalModel


def personal_models_of(*, writer_key: str) -> QuerySet[PersonalModel]:
    return PersonalModel.objects.filter(writer=writer_key)


def personal_models_of_ended_sessions() -> QuerySet[PersonalModel]:
    """Browser-session writers whose session has expired or is gone (logged out, or
    replaced at login): no cookie can name them again. One index lookup per model."""
    live = Session.objects.filter(
        session_key=Substr(OuterRef("writer"), len(SESSION_WRITER) + 1),
        expire_date__gt=timezone.now(),
    )
    return PersonalModel.objects.filter(writer__startswith=SESSION_WRITER).filter(~Exists(live))
