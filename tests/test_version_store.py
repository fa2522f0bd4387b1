"""Versions cost what they change: head-only fine-tunes, no version without a change, pruning."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from recognition import services as recognition_services
from recognition.models import Correction
from training import nn, registry, runs, services
from training.models import ModelVersion, TrainingRun
from training.trunk import FrozenTrunk

from .conftest import copy_of, misread_handwriting, teacher

pytestmark = pytest.mark.django_db


@pytest.fixture
def quick(settings):
    settings.FINE_TUNE = {**settings.FINE_TUNE, "STEPS": 10, "THREADS": 1}
    return settings.FINE_TUNE


def corrected(png: bytes, label: str) -> Correction:
    sample = recognition_services.predict_drawing(image_data=png, source="api").sample
    return recognition_services.correct_sample(
        sample=sample, label=label, source="api", author=teacher()
    ).correction


def run_queued() -> TrainingRun:
    return services.training_run_execute(run_id=TrainingRun.objects.get(status="queued").pk)


def file_size(version: ModelVersion) -> int:
    return Path(version.weights.path).stat().st_size


@pytest.mark.slow
def test_a_head_only_fine_tune_stores_kilobytes_and_loads_as_one_model(default_model, quick):
    rows = misread_handwriting(3)
    for png, label in rows:
        corrected(png, label)
    run = run_queued()
    version = run.result_version
    assert version is not None and version.base == default_model
    # The tensors the fine-tune trained, at half precision: kilobytes, not megabytes.
    assert file_size(version) < 200_000
    stored = torch.load(version.weights.path, weights_only=True)
    assert stored["base_sha256"] == default_model.sha256
    assert set(stored["tensors"]) == set(nn.STORED["last"])

    # Loaded as one model: the base's weights, the delta's, and what the gate judged.
    model = registry.version_load_model(version)
    parent = registry.version_load_model(default_model)
    assert nn.trunk_digest(model) == nn.trunk_digest(parent)
    untouched = set(parent.state_dict()) - set(nn.STORED["last"])
    assert all(torch.equal(model.state_dict()[k], parent.state_dict()[k]) for k in untouched)
    glyphs = run.corrections.first().sample.glyph_array()[np.newaxis]
    trunk = FrozenTrunk(parent)
    assert np.allclose(
        trunk.predict_proba(model, glyphs), nn.predict_proba(model, glyphs), atol=1e-5
    )

    # A chain of such versions keeps building on the one full set: it never grows deeper.
    for png, label in misread_handwriting(5)[3:]:
        corrected(png, label)
    second = run_queued().result_version
    if second is not None:
        assert second.base == default_model and file_size(second) < 200_000

    # A changed base file is refused for every delta that needs it.
    Path(default_model.weights.path).write_bytes(b"another trunk entirely")
    with pytest.raises(registry.WeightsIntegrityError, match="v1: weights do not match"):
        registry.version_load_model(version)


def delta_on(base: ModelVersion, *, scope: str = "last", seed: int = 0, **fields) -> ModelVersion:
    """A version of ``scope`` over ``base``'s chain, its trained tensors set at random."""
    model = registry.version_load_model(base)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in nn.STORED[scope]:
            tensor = model.state_dict()[name]
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.01)
    nn.as_stored(model, scope)
    weights, chosen = registry.candidate_weights(model, parent=base, scope=scope)
    version = registry.version_create(
        weights=weights, metrics={}, training_info={}, parent=base, base=chosen, **fields
    )
    assert same_weights(registry.version_load_model(version), model)  # what was judged
    return version


def same_weights(one, other) -> bool:
    return all(torch.equal(t, other.state_dict()[k]) for k, t in one.state_dict().items())


def earlier_head_file(model, *, trunk_sha256: str) -> bytes:
    """A head-only version's file as stored until deltas: the whole classifier at half."""
    head = {key: t.half() for key, t in model.classifier.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"trunk_sha256": trunk_sha256, "head": head}, buffer)
    return buffer.getvalue()


def earlier_head(default_model) -> ModelVersion:
    model = registry.version_load_model(default_model)
    with torch.no_grad():
        model.classifier[1].weight.mul_(1.01)
    nn.as_stored(model, "head")
    head = registry.version_create(
        weights=earlier_head_file(model, trunk_sha256=default_model.sha256),
        metrics={},
        training_info={},
        parent=default_model,
        base=default_model,
    )
    assert same_weights(registry.version_load_model(head), model)
    return head


def test_earlier_full_heads_stay_loadable_and_deltas_build_on_them(default_model):
    head = earlier_head(default_model)
    # A delta over it keeps its changed hidden layer: it builds on the head's file.
    first = delta_on(head)
    assert first.base == head
    # The next one replaces everything ``first`` changed: it builds on the head too.
    second = delta_on(first, seed=1)
    assert second.base == head
    # A whole-head version replaces everything down to the full set.
    assert delta_on(second, scope="head", seed=2).base == default_model
    # And a whole set of weights needs no base at all.
    model = registry.version_load_model(second)
    assert registry.candidate_weights(model, parent=second, scope="all")[1] is None


def test_a_delta_whose_base_is_missing_altered_or_another_is_refused(default_model):
    head = earlier_head(default_model)
    delta = delta_on(head)
    # A delta that names another base than its version's.
    model = registry.version_load_model(default_model)
    forged = registry.version_create(
        weights=nn.serialize_delta(model, names=nn.STORED["last"], base_sha256="0" * 64),
        metrics={},
        training_info={},
        parent=default_model,
        base=default_model,
    )
    with pytest.raises(registry.WeightsIntegrityError, match="names another base"):
        registry.version_load_model(forged)
    # The base's file altered, then gone.
    Path(head.weights.path).write_bytes(b"not the head it was")
    with pytest.raises(registry.WeightsIntegrityError, match=f"v{head.number}: weights do not"):
        registry.version_load_model(delta)
    Path(head.weights.path).unlink()
    with pytest.raises(registry.WeightsIntegrityError, match=f"v{head.number}: cannot read"):
        registry.version_load_model(delta)


@pytest.mark.slow
def test_a_run_whose_parent_already_reads_its_corrections_publishes_nothing(
    default_model, settings
):
    settings.FINE_TUNE = {**settings.FINE_TUNE, "THREADS": 1}  # the product's 60 steps
    png, label = misread_handwriting(1)[0]
    correction = corrected(png, label)
    first = run_queued()
    assert first.status == "succeeded", first.reason
    versions = ModelVersion.objects.count()
    # The same correction reaches a run again (as a retried or duplicated request would).
    Correction.objects.filter(pk=correction.pk).update(training_state="pending")
    runs.training_run_request()
    again = run_queued()
    assert again.status == "rejected" and again.result_version is None
    assert "already reads" in again.reason
    assert ModelVersion.objects.count() == versions
    correction.refresh_from_db()
    assert correction.training_state == Correction.TrainingState.NOT_NEEDED


@pytest.mark.slow
def test_a_candidate_no_better_than_its_parent_publishes_nothing(default_model, settings):
    settings.FINE_TUNE = {**settings.FINE_TUNE, "STEPS": 0, "THREADS": 1, "ATTEMPTS": 1}
    png, label = misread_handwriting(1)[0]
    correction = corrected(png, label)
    run = run_queued()
    assert run.status == "rejected" and run.result_version is None, run.reason
    assert ModelVersion.objects.count() == 1
    correction.refresh_from_db()
    assert correction.training_state == Correction.TrainingState.REJECTED


def test_one_run_takes_at_most_max_corrections(default_model, settings):
    settings.FINE_TUNE = {**settings.FINE_TUNE, "MAX_CORRECTIONS": 2}
    for png, label in misread_handwriting(3):
        corrected(png, label)
    run = runs.training_run_claim(run_id=TrainingRun.objects.get(status="queued").pk)
    taken = list(run.corrections.order_by("pk"))
    assert len(taken) == 2
    waiting = Correction.objects.exclude(pk__in=[c.pk for c in taken])
    assert [c.training_state for c in waiting] == ["pending"]  # the next run's


def test_the_trunk_beats_inside_a_long_feature_pass(default_model):
    trunk = FrozenTrunk(registry.version_load_model(default_model))
    beats = []
    trunk.on_batch = lambda: beats.append(1)
    trunk.features(np.random.default_rng(0).integers(0, 255, (200, 28, 28), dtype=np.uint8))
    assert len(beats) == 4  # one per batch of 64


# --- Pruning -------------------------------------------------------------------


def test_prune_versions_keeps_what_serves_or_may_serve(
    default_model, django_capture_on_commit_callbacks
):
    # v2 a head-only version as stored before deltas; v3..v7 deltas that build on its file.
    versions = [default_model, earlier_head(default_model)]
    for seed in range(5):
        versions.append(delta_on(versions[-1], seed=seed, activate=True))
    v1, v2, v3, v4, v5, v6, v7 = (ModelVersion.objects.get(pk=v.pk) for v in versions)
    assert {v.base for v in (v3, v4, v5, v6, v7)} == {v2} and v2.base == v1
    ModelVersion.objects.filter(pk=v3.pk).update(status="rejected")
    ModelVersion.objects.filter(pk=v4.pk).update(pinned=True)
    ModelVersion.objects.filter(pk=v7.pk).update(status="retired")
    registry.version_activate(version=v6)
    ModelVersion.objects.filter(pk=v2.pk).update(status="retired")

    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):  # files go once the rows say so
        call_command("prune_versions", "--keep", "1", stdout=out)
    assert out.getvalue().strip() == "Pruned 2 version(s): v5, v3."
    pruned = set(ModelVersion.objects.exclude(pruned_at=None).values_list("number", flat=True))
    assert pruned == {3, 5}
    # The full set and the old head that the kept deltas build on, pinned, active, newest.
    for version in (v1, v2, v4, v6, v7):
        assert Path(version.weights.path).exists(), version
        registry.version_load_model(version)
    for version in (v3, v5):
        assert not Path(version.weights.path).exists()

    # A pruned version cannot come back; the rows stay for the predictions that cite them.
    operator = User.objects.create_user("operator", is_staff=True)
    operator.user_permissions.add(Permission.objects.get(codename="change_modelversion"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=operator).key}")
    refused = client.post(f"/api/model-versions/{v5.pk}/activate/")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "pruned"
    assert ModelVersion.objects.get(status="active") == v6
    # Read before pruning marked it: the activation's own UPDATE still refuses it.
    read_before_pruning = ModelVersion.objects.get(pk=v5.pk)
    read_before_pruning.pruned_at = None
    with pytest.raises(registry.VersionPruned):
        registry.version_activate(version=read_before_pruning)
    assert ModelVersion.objects.get(status="active") == v6
    # Running it again prunes nothing more.
    call_command("prune_versions", "--keep", "1", stdout=out)
    assert out.getvalue().strip().endswith("Pruned 0 version(s): none.")


def test_a_pinned_version_is_pinned_in_the_admin_by_whoever_may_activate(default_model):
    other = copy_of(default_model)
    url = "/admin/training/modelversion/"
    moderator = Client()
    moderator.force_login(recognition_services.moderator_create(username="mod"))
    body = {"action": "pin", ACTION_CHECKBOX_NAME: [other.pk]}
    moderator.post(url, body)
    assert not ModelVersion.objects.get(pk=other.pk).pinned
    operator = Client()
    operator.force_login(User.objects.create_superuser("root"))
    assert "Pinned 1 version" in operator.post(url, body, follow=True).content.decode()
    assert ModelVersion.objects.get(pk=other.pk).pinned
    assert LogEntry.objects.get(object_id=str(other.pk)).change_message == "Pinned"
