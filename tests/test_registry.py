"""Model versions: checksums, atomic files, one active version, hot reload across processes."""

import base64
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.db import IntegrityError, transaction

from recognizer_site.storage import AtomicFileSystemStorage
from training import nn, registry, serving
from training.models import ModelVersion

from .conftest import ONE, _database_url, _free_port, copy_of, draw_png


@pytest.mark.django_db
def test_tampered_or_missing_weights_are_never_loaded(default_model, settings, caplog):
    settings.MODEL_RELOAD_INTERVAL = 0
    assert serving.active_model.get().number == default_model.number
    tampered = copy_of(default_model)
    path = tampered.weights.path
    with open(path, "r+b") as handle:
        handle.seek(len(registry.read_verified_weights(default_model)) // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(registry.WeightsIntegrityError, match="sha256"):
        registry.version_load_model(tampered)

    registry.version_activate(version=tampered)
    assert serving.active_model.get().number == default_model.number  # keeps the last good one
    assert "Refusing model" in caplog.text

    missing = copy_of(default_model)
    os.unlink(missing.weights.path)
    with pytest.raises(registry.WeightsIntegrityError, match="cannot read"):
        registry.version_load_model(missing)


@pytest.mark.django_db
def test_only_one_version_can_be_active(default_model):
    second = copy_of(default_model)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=second.pk).update(status=ModelVersion.Status.ACTIVE)
    registry.version_activate(version=second)
    assert list(ModelVersion.objects.filter(status="active")) == [second]
    assert ModelVersion.objects.get(pk=default_model.pk).status == "retired"


def test_a_failed_write_leaves_no_file(tmp_path):
    storage = AtomicFileSystemStorage(location=tmp_path)

    class Exploding(ContentFile):
        def chunks(self, chunk_size=None):
            yield b"half of the weights"
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        storage.save("model_versions/v9.pt", Exploding(b""))
    assert list((tmp_path / "model_versions").iterdir()) == []
    name = storage.save("model_versions/v9.pt", ContentFile(b"whole"))
    assert storage.open(name).read() == b"whole"


def _post_prediction(port: int) -> dict:
    body = json.dumps({"image": base64.b64encode(draw_png(ONE)).decode()}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/predictions/",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _wait_until_serving(port: int, process, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _post_prediction(port)
        except OSError:
            assert process.poll() is None, "web process died"
            assert time.monotonic() < deadline, "web process did not start"
            time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_web_processes_switch_to_a_new_active_version(default_model, settings):
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "THROTTLE_ANON": "off",
        "MODEL_RELOAD_INTERVAL": "1",
    }
    ports = [_free_port(), _free_port()]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "recognizer_site.wsgi",
                "--workers",
                "1",
                "--bind",
                f"127.0.0.1:{port}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        for port, process in zip(ports, processes, strict=True):
            assert _wait_until_serving(port, process)["model_version"] == default_model.number
        second = copy_of(default_model, activate=True)
        activated = time.monotonic()
        seen = dict.fromkeys(ports)
        while not all(number == second.number for number in seen.values()):
            assert time.monotonic() - activated < 5, f"still serving {seen}"
            for port in ports:
                seen[port] = _post_prediction(port)["model_version"]
        switch_seconds = time.monotonic() - activated
        assert switch_seconds < 3
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)


@pytest.mark.django_db
def test_install_default_model_reactivates_the_last_served_version_that_verifies(default_model):
    served_last = copy_of(default_model, activate=True)
    broken = copy_of(default_model, activate=True)
    ModelVersion.objects.filter(pk=broken.pk).update(status=ModelVersion.Status.RETIRED)
    with broken.weights.open("r+b") as handle:
        handle.write(b"tampered")

    call_command("install_default_model", verbosity=0)

    assert ModelVersion.objects.get(status=ModelVersion.Status.ACTIVE) == served_last
    assert ModelVersion.objects.count() == 3
    call_command("install_default_model", verbosity=0)  # idempotent
    assert ModelVersion.objects.get(status=ModelVersion.Status.ACTIVE) == served_last


@pytest.mark.django_db
def test_install_default_model_installs_when_nothing_served_verifies(default_model):
    ModelVersion.objects.filter(pk=default_model.pk).update(status=ModelVersion.Status.REJECTED)

    call_command("install_default_model", verbosity=0)

    installed = ModelVersion.objects.get(status=ModelVersion.Status.ACTIVE)
    assert installed.number == default_model.number + 1
    assert installed.sha256 == default_model.sha256
    registry.version_load_model(installed)


@pytest.mark.django_db
def test_install_default_model_upgrade_publishes_the_committed_model_once(default_model):
    # A deployment serving a model of an older release: other weights, no committed ancestor.
    older = registry.version_create(
        weights=nn.serialize_state(nn.build_model(), half=True),
        architecture=nn.ARCHITECTURE,
        metrics={},
        training_info={"kind": "pretrain"},
        activate=True,
    )
    call_command("install_default_model", verbosity=0)  # something is active: kept
    assert ModelVersion.objects.get(status=ModelVersion.Status.ACTIVE) == older

    call_command("install_default_model", "--upgrade", verbosity=0)

    upgraded = ModelVersion.objects.get(status=ModelVersion.Status.ACTIVE)
    assert upgraded.sha256 == default_model.sha256 and upgraded.number == older.number + 1
    assert ModelVersion.objects.get(pk=older.pk).status == ModelVersion.Status.RETIRED
    fine_tuned = copy_of(upgraded, activate=True)  # learning goes on from the new model
    call_command("install_default_model", "--upgrade", verbosity=0)
    assert ModelVersion.objects.get(status=ModelVersion.Status.ACTIVE) == fine_tuned
    assert ModelVersion.objects.count() == 4
