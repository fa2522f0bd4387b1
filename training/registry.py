"""Model version storage, verification, loading, activation and pruning.

Weights are immutable files addressed by version; each is checked against its
sha256 before torch reads it, and read with ``weights_only=True``. What each
process serves, and its hot reload, is ``training.serving``.
"""

import hashlib
import logging
from functools import partial

import numpy as np
import torch
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from . import nn
from .models import ModelVersion

logger = logging.getLogger(__name__)


class WeightsIntegrityError(Exception):
    """A weights file is missing, altered or unreadable: it is never used."""


class NoActiveModel(Exception):
    """No model version is active, or none of them can be loaded."""


def weights_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def version_create(
    *,
    weights: bytes,
    architecture: str = nn.ARCHITECTURE,
    metrics: dict,
    training_info: dict,
    parent: ModelVersion | None = None,
    anchors: bytes | None = None,
    trained_sample_ids: list[int] | tuple[int, ...] = (),
    activate: bool = False,
    base: ModelVersion | None = None,
) -> ModelVersion:
    """Save serialized weights atomically and record them as the next version number.

    ``weights`` come from ``nn.serialize_state``, or with ``base`` (the version
    they overlay) from ``nn.serialize_delta``, as ``candidate_weights`` makes them;
    ``anchors`` are the npz bytes of the replay and evaluation glyphs; without them
    the version shares its parent's file (files are immutable).
    """
    digest = weights_sha256(weights)
    with transaction.atomic():
        number = (ModelVersion.objects.aggregate(top=Max("number"))["top"] or 0) + 1
        version = ModelVersion(
            number=number,
            parent=parent,
            sha256=digest,
            architecture=architecture,
            metrics=metrics,
            training_info=training_info,
            trained_sample_ids=list(trained_sample_ids),
            base=base,
        )
        version.weights.save(f"v{number}-{digest[:12]}.pt", ContentFile(weights), save=False)
        if anchors is not None:
            version.anchors.save(f"v{number}-anchors.npz", ContentFile(anchors), save=False)
        elif parent is not None:
            version.anchors.name = parent.anchors.name
        version.save()
        if activate:
            version_activate(version=version)
    return version


class VersionPruned(Exception):
    """A version whose weights file ``prune_versions`` deleted serves no more."""


def version_activate(*, version: ModelVersion) -> ModelVersion:
    """Make ``version`` the one active version (forward or rollback) in one transaction."""
    # Two activations at once on PostgreSQL: the later one's UPDATE waits for the earlier
    # one, then misses the version it activated, and the unique constraint refuses ours.
    # Once the earlier one has committed, a second attempt sees and retires it.
    for attempt in range(3):
        try:
            with transaction.atomic():
                ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).exclude(
                    pk=version.pk
                ).update(status=ModelVersion.Status.RETIRED)
                now = timezone.now()
                # Filtered on the file still being there: pruning may have just deleted it.
                activated = ModelVersion.objects.filter(pk=version.pk, pruned_at=None).update(
                    status=ModelVersion.Status.ACTIVE, activated_at=now
                )
                if not activated:
                    raise VersionPruned(
                        f"v{version.number}'s weights were pruned; it cannot be activated."
                    )
            version.status, version.activated_at = ModelVersion.Status.ACTIVE, now
            return version
        except IntegrityError:
            if attempt == 2:
                raise


# What pruning never deletes: the version serving, and one being published.
_UNPRUNABLE = (ModelVersion.Status.ACTIVE, ModelVersion.Status.CANDIDATE)


def versions_prune(*, keep: int) -> list[ModelVersion]:
    """Delete the weights files of old retired and rejected versions; return those versions.

    Kept whatever their age: the newest ``keep`` versions, the active one, pinned
    ones, and every version whose weights one of those builds on, down to its full
    set. The rows stay (predictions cite them); a pruned version can no longer be loaded.
    """
    versions = list(ModelVersion.objects.filter(pruned_at=None).order_by("-number"))
    kept = [
        version
        for index, version in enumerate(versions)
        if index < keep or version.pinned or version.status in _UNPRUNABLE
    ]
    needed = _with_bases({v.pk for v in kept})
    needed_files = {v.weights.name for v in versions if v.pk in needed}
    pruned = []
    for version in versions:
        if version.pk in needed:
            continue
        with transaction.atomic():
            marked = (
                ModelVersion.objects.filter(pk=version.pk, pruned_at=None)
                .exclude(status__in=_UNPRUNABLE)
                .exclude(pinned=True)
                .update(pruned_at=timezone.now())
            )
            # Copies may share a file with a kept version: that file stays.
            if marked and version.weights.name not in needed_files:
                transaction.on_commit(partial(version.weights.delete, save=False))
        if marked:
            pruned.append(version)
    return pruned


def _with_bases(pks: set[int]) -> set[int]:
    """These versions and every version their weights build on, however deep."""
    bases = dict(ModelVersion.objects.exclude(base=None).values_list("pk", "base_id"))
    needed, todo = set(), list(pks)
    while todo:
        pk = todo.pop()
        if pk not in needed:
            needed.add(pk)
            todo.extend([bases[pk]] if pk in bases else [])
    return needed


def read_verified_weights(version: ModelVersion) -> bytes:
    try:
        with version.weights.open("rb") as handle:
            data = handle.read()
    except (OSError, ValueError) as error:
        raise WeightsIntegrityError(f"v{version.number}: cannot read weights: {error}") from error
    if weights_sha256(data) != version.sha256:
        raise WeightsIntegrityError(f"v{version.number}: weights do not match their sha256")
    return data


# More links than any chain ``candidate_weights`` builds (see there): a loop or a forgery.
MAX_BASE_LINKS = 4


def version_load_model(version: ModelVersion) -> torch.nn.Module:
    """Load a version's network for inference, refusing any file that fails its checksum.

    The one way every process loads a version. A delta (a head-only fine-tune's
    changed tensors) is loaded as one model with the weights it builds on, every
    file checked, and each delta's own record of its base's sha256.
    """
    chain = [version]
    while chain[-1].base_id is not None:
        if len(chain) > MAX_BASE_LINKS:
            raise WeightsIntegrityError(f"v{version.number}: more than {MAX_BASE_LINKS} bases")
        chain.append(chain[-1].base)
    files = [(link, read_verified_weights(link)) for link in chain]
    link, data = files.pop()
    try:
        model = nn.deserialize_state(data, link.architecture)
        while files:
            base, (link, data) = link, files.pop()
            model = nn.apply_delta(model, data, base_sha256=base.sha256)
    except Exception as error:  # torch raises many types for a malformed archive
        raise WeightsIntegrityError(f"v{link.number}: cannot load weights: {error}") from error
    return model


def candidate_weights(
    candidate: nn.GlyphNet, *, parent: ModelVersion, scope: str
) -> tuple[bytes, ModelVersion | None]:
    """What a fine-tuned candidate of ``parent`` is stored as, and the version it builds on.

    A whole-network fine-tune stores a full set. A head-only one stores the tensors
    its scope trains, over the nearest version of the parent's chain whose own
    tensors it does not all replace: the full set, unless that version changed more
    (an earlier, wider scope). Scopes nest, so a chain is at most as deep as the
    number of scopes ever used, whatever its length: no full copy is ever needed.
    """
    if scope == "all":
        return nn.serialize_state(candidate), None
    names = set(nn.STORED[scope])
    base = parent
    while base.base_id is not None:
        _, changed = nn.delta_contents(read_verified_weights(base))
        if not set(changed) <= names:
            break
        base = base.base
    return nn.serialize_delta(candidate, names=names, base_sha256=base.sha256), base


def version_load_anchors(version: ModelVersion) -> dict[str, np.ndarray]:
    with version.anchors.open("rb") as handle, np.load(handle) as archive:
        return {key: archive[key] for key in archive.files}
