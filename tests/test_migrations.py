"""A fresh database and one migrated before the apps' migrations stopped depending on
each other both ways reach today's schema, the older one with its rows intact."""

import contextlib
import json
import os
import subprocess
import sys

import pytest
from django.conf import settings


@contextlib.contextmanager
def empty_database(tmp_path, name: str):
    """The URL of a new empty database on this run's server (SQLite: a new file)."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        yield f"sqlite:///{tmp_path / 'db.sqlite3'}"
        return
    import psycopg

    server = {key.lower(): db[key] for key in ("HOST", "PORT", "USER", "PASSWORD")}
    with psycopg.connect(**server, dbname=db["NAME"], autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield "postgres://{user}:{password}@{host}:{port}/".format(**server) + name
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


def migrated(tmp_path, mode: str) -> dict:
    with empty_database(tmp_path, f"migrations_{mode}_{os.getpid()}") as url:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "recognizer_site.settings",
            "DATABASE_URL": url,
            "MEDIA_ROOT": str(tmp_path / "media"),
        }
        done = subprocess.run(
            [sys.executable, "-m", "tests.migration_history.upgrade", mode],
            cwd=settings.BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    return migrated(tmp_path_factory.mktemp("fresh"), "fresh")


def test_a_fresh_database_gets_every_table_from_migrations_in_one_direction(fresh):
    assert fresh["link_columns"] == ["correction_id", "id", "trainingrun_id"]
    # Applying the replacing migration records the one it replaces too.
    assert {"0001_initial", "0001_squashed_initial"} <= set(fresh["recorded"])
    assert fresh["links"] == []


def test_a_database_migrated_before_keeps_its_runs_corrections_and_migrates_on(tmp_path, fresh):
    upgraded = migrated(tmp_path, "before")
    before = upgraded["before"]
    # The same table, now declared by recognition's Correction: old links read, new ones write.
    assert upgraded["link_columns"] == fresh["link_columns"]
    assert upgraded["links"] == [
        [before["run"], before["correction"]],
        [before["run"], before["added"]],
    ]
    # The migration that replaces the old 0001_initial counted as applied; the rest ran.
    assert upgraded["recorded"] == fresh["recorded"]
    # Runs failed before failure_kind existed get theirs from their error's prefix.
    assert upgraded["failure_kinds"] == [
        ["WeightsIntegrityError: v1.pt does not match its sha256", "unloadable_weights"],
        ["worker lost: no heartbeat", "worker_lost"],
    ]
