"""Choosing the served model by hand: activating a version, pinning versions' weights."""

from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied
from django.db import transaction

from .. import registry
from ..models import ModelVersion


class ActivationNotPermitted(PermissionDenied):
    """Only people with ``training.change_modelversion`` choose the model everyone is served."""


def model_version_activate(*, version: ModelVersion, user) -> ModelVersion:
    """Activate ``version`` at a person's request (roll back or forward), with an admin log entry.

    The one way the API and the admin activate: both need ``training.change_modelversion``,
    which moderators do not have, whatever the version's status.
    """
    if not (user and user.is_authenticated and user.has_perm("training.change_modelversion")):
        raise ActivationNotPermitted(
            "Activating a model version needs the training.change_modelversion permission."
        )
    with transaction.atomic():  # a pruned version is refused by the activation itself
        registry.version_activate(version=version)
        LogEntry.objects.log_actions(
            user_id=user.pk,
            queryset=[version],
            action_flag=CHANGE,
            change_message="Activated",
            single_object=True,
        )
    return version


def model_versions_pin(*, versions, pinned: bool) -> int:
    """Keep these versions' weights from ``prune_versions`` (or let it take them again)."""
    return ModelVersion.objects.filter(pk__in=[v.pk for v in versions]).update(pinned=pinned)
