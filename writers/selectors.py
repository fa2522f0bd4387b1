"""Read-side queries of personal models."""

from django.db.models import QuerySet

from .models import PersonalModel


def personal_models_of(*, writer_key: str) -> QuerySet[PersonalModel]:
    return PersonalModel.objects.filter(writer=writer_key)
