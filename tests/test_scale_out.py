"""Several web and Celery processes on one database and one Redis agree on the model.

A throw-away deployment (bench/server.py: gunicorn, Celery workers, redis-server)
runs on this test's database, so the assertions read the rows the processes wrote.
"""

import base64
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import connection, transaction
from rest_framework.authtoken.models import Token

from bench.server import Deployment, call
from recognition.models import Correction
from recognition.services import moderator_create
from training import registry
from training.models import ModelVersion, TrainingRun

from .conftest import ONE, _database_url, copy_of, draw_png, misread_handwriting

RELOAD_INTERVAL = 1.0
CLIENTS = 8


@pytest.fixture
def deployment(transactional_db, moderators_group, settings):
    """A deployment on this test's database and media; stopped before the database is flushed."""
    created = []

    def deploy(**env) -> Deployment:
        created.append(
            Deployment(
                DATABASE_URL=_database_url(),
                MEDIA_ROOT=settings.MEDIA_ROOT,
                MODEL_RELOAD_INTERVAL=RELOAD_INTERVAL,
                **env,
            )
        )
        return created[-1]

    yield deploy
    for each in created:
        each.close()


def predict(url: str, png: bytes, tag: str = "") -> dict:
    status, body = call(url, f"/api/predictions/?{tag}", {"image": base64.b64encode(png).decode()})
    assert status == 201, body
    return body


def versions_served(url: str, web_log, round_name: str) -> dict[int, set[int]]:
    """Send concurrent predictions until both web workers have answered some: {pid: versions}."""
    served: dict[int, set[int]] = {}
    for attempt in range(5):  # the kernel may hand one burst to a single worker
        for pid, versions in _one_burst(url, web_log, f"{round_name}{attempt}").items():
            served.setdefault(pid, set()).update(versions)
        if len(served) >= 2:
            break
    return served


def _one_burst(url: str, web_log, round_name: str) -> dict[int, set[int]]:
    png = draw_png(ONE)
    tags = [f"{round_name}-{i}" for i in range(4 * CLIENTS)]
    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = dict(zip(tags, pool.map(lambda tag: predict(url, png, tag), tags), strict=True))
    # gunicorn writes its access line after the response: wait until all are there.
    deadline = time.monotonic() + 10
    while True:
        lines = re.findall(r'^<(\d+)> "POST /api/predictions/\?(\S+) ', web_log(), re.M)
        pids = {tag: pid for pid, tag in lines}
        if all(tag in pids for tag in tags) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert all(tag in pids for tag in tags), web_log()[-3000:]
    served: dict[int, set[int]] = {}
    for tag, answer in answers.items():
        served.setdefault(int(pids[tag]), set()).add(answer["model_version"])
    return served


def wait_for(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


@pytest.mark.slow
@pytest.mark.celery
def test_web_and_celery_workers_agree_on_one_linear_version_chain(deployment):
    site = deployment(FINE_TUNE_STEPS=15, FINE_TUNE_THREADS=1)
    site.start_redis()
    url = site.start_web(workers=2, access_log=True)
    site.start_worker("w1")
    site.start_worker("w2")
    web_log = (site.dir / "web.log").read_text
    first = ModelVersion.objects.get(status="active")

    before = versions_served(url, web_log, "before")
    assert len(before) == 2 and all(seen == {first.number} for seen in before.values()), before

    # A moderator activates another version through the API; both web workers follow.
    second = copy_of(first)
    staff = moderator_create(username="operator")
    staff.user_permissions.add(Permission.objects.get(codename="change_modelversion"))
    token = Token.objects.create(user=staff).key
    status, body = call(url, f"/api/model-versions/{second.pk}/activate/", {}, token=token)
    assert status == 200 and body["status"] == "active", body
    time.sleep(RELOAD_INTERVAL + 0.1)
    after = versions_served(url, web_log, "after")
    assert set(after) == set(before) and all(seen == {second.number} for seen in after.values()), (
        after
    )

    # Eight people correct real misread handwriting at the same moment.
    misread = misread_handwriting(CLIENTS)
    samples = [predict(url, png)["sample"] for png, _ in misread]
    start = threading.Barrier(CLIENTS)

    def correct(index: int) -> tuple[int, dict]:
        start.wait()
        return call(
            url,
            f"/api/samples/{samples[index]}/corrections/",
            {"label": misread[index][1]},
            token=token,  # a moderator: their corrections train the shared model
        )

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(correct, range(CLIENTS)))
    assert [status for status, _ in answers] == [201] * CLIENTS, answers
    assert all(body["training_state"] == "pending" for _, body in answers), answers

    def settled():
        busy = TrainingRun.objects.filter(status__in=["queued", "running"]).exists()
        return not busy and not Correction.objects.filter(training_state="pending").exists()

    wait_for(settled, timeout=300, what="every correction to be trained or rejected")

    runs = list(TrainingRun.objects.order_by("started_at"))
    assert not [run for run in runs if run.status == "failed"], [run.error for run in runs]
    succeeded = [run for run in runs if run.status == "succeeded"]
    assert succeeded, [(run.status, run.reason) for run in runs]
    # Every correction is in exactly one run; a trained one in exactly one succeeded run,
    # whose new version learned its sample.
    for correction in Correction.objects.prefetch_related("training_runs"):
        in_runs = list(correction.training_runs.all())
        assert len(in_runs) == 1, (correction.pk, in_runs)
        (run,) = in_runs
        expected = {"succeeded": "trained", "rejected": "rejected"}[run.status]
        assert correction.training_state == expected
        assert correction.sample_id in run.result_version.trained_sample_ids
    # One writer at a time, each on top of the version active when it started.
    active = second
    for earlier, later in pairwise(runs):
        assert earlier.finished_at <= later.started_at
    for run in runs:
        assert run.parent_version == active, (run.pk, run.parent_version, active)
        if run.status == "succeeded":
            active = run.result_version
    assert ModelVersion.objects.get(status="active") == active
    # A worker's start-up sweep can queue a run for corrections that another run takes
    # just then; that run finds nothing and ends without a version, which is harmless.
    empty = [run for run in runs if run.result_version is None]
    assert all(run.reason == "nothing left to learn" for run in empty)
    assert not [run for run in empty if run.corrections.exists()]
    numbers = list(ModelVersion.objects.order_by("number").values_list("number", flat=True))
    assert numbers == list(range(1, len(runs) - len(empty) + 3))

    # And every web worker serves the end of the chain.
    time.sleep(RELOAD_INTERVAL + 0.1)
    final = versions_served(url, web_log, "final")
    assert all(seen == {active.number} for seen in final.values()), final


@pytest.mark.slow
def test_the_anonymous_throttle_is_one_count_across_web_processes(deployment):
    site = deployment(THROTTLE_ANON="6/min")
    site.start_redis()
    # Two gunicorns, so that we choose which process answers. One at a time: DRF's
    # read-then-write of the count can let a few simultaneous requests through.
    urls = [site.start_web(workers=1), site.start_web(workers=1)]
    body = {"image": base64.b64encode(draw_png(ONE)).decode()}
    codes = [call(urls[i % 2], "/api/predictions/", body)[0] for i in range(8)]
    assert codes == [201] * 6 + [429] * 2


def test_two_activations_at_once_leave_the_later_one_active(transactional_db):
    """Two moderators activate different versions at the same moment: no error, one active."""
    call_command("install_default_model", verbosity=0)
    first = ModelVersion.objects.get(status="active")
    second, third = (copy_of(first) for _ in range(2))
    earlier_activated, release = threading.Event(), threading.Event()
    errors = []

    def activate(version, *, hold: bool):
        try:
            with transaction.atomic():
                registry.version_activate(version=version)
                if hold:  # keep the transaction open while the other activation starts
                    earlier_activated.set()
                    release.wait(10)
        except Exception as error:  # reported by the assertion below
            errors.append(error)
        finally:
            connection.close()

    earlier = threading.Thread(target=activate, args=(second,), kwargs={"hold": True})
    earlier.start()
    assert earlier_activated.wait(10)
    later = threading.Thread(target=activate, args=(third,), kwargs={"hold": False})
    later.start()
    time.sleep(1)  # the later one is now waiting for the earlier one's locks
    release.set()
    earlier.join(10)
    later.join(10)
    assert errors == []
    statuses = dict(ModelVersion.objects.values_list("pk", "status"))
    assert statuses == {first.pk: "retired", second.pk: "retired", third.pk: "active"}
