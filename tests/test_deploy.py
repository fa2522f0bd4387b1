"""The production configuration (DEBUG=0) as the README documents it."""

import gzip
import os
import re
import subprocess
import sys
import urllib.request

import pytest
from django.conf import settings

from bench.server import Deployment

# The README's production environment (its Configuration table), nothing more.
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "a-long-random-production-key-made-for-this-test-only-0123456789",
    "ALLOWED_HOSTS": "recognizer.example.org",
    "CSRF_TRUSTED_ORIGINS": "https://recognizer.example.org",
    "DATABASE_URL": "postgres://recognizer:secret@db.example.org:5432/recognizer",
    "REDIS_URL": "redis://redis.example.org:6379/0",
}


def check_deploy(**env) -> subprocess.CompletedProcess:
    # Only what a production machine has: nothing from this test run's environment
    # (the browser tests set DJANGO_ALLOW_ASYNC_UNSAFE, which the check rightly refuses).
    base = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "recognizer_site.settings"}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=settings.BASE_DIR,
        env={**base, **env},
        capture_output=True,
        text=True,
    )


def test_deploy_check_is_clean_with_the_production_environment():
    clean = check_deploy(**PRODUCTION)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "no issues" in clean.stdout
    # The check does look: a weak key or missing HTTPS redirect is a failure.
    weak = check_deploy(**{**PRODUCTION, "SECRET_KEY": "short", "SECURE_SSL_REDIRECT": "0"})
    assert weak.returncode != 0
    assert "security.W009" in weak.stderr and "security.W008" in weak.stderr


def test_production_refuses_to_start_without_a_secret_key():
    result = check_deploy(**{**PRODUCTION, "SECRET_KEY": ""})
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


def fetch(url: str, **headers) -> tuple[int, dict, bytes]:
    # Behind the TLS proxy of the README: the request arrived over HTTPS.
    request = urllib.request.Request(url, headers={"X-Forwarded-Proto": "https", **headers})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, dict(response.headers), response.read()


@pytest.mark.slow
def test_whitenoise_serves_collected_static_files_with_debug_off():
    # Deployment: DEBUG=0, collectstatic into its own STATIC_ROOT, then gunicorn (plain
    # HTTP: it stands for the app server behind the proxy, so no redirect to HTTPS).
    with Deployment() as site:
        url = site.start_web(workers=1)
        status, _, page = fetch(f"{url}/")
        assert status == 200
        # The page links the hashed names from the manifest, never the source files.
        script = re.search(rb'src="(/static/js/app\.[0-9a-f]{12}\.js)"', page).group(1).decode()
        status, headers, body = fetch(url + script)
        assert status == 200 and "javascript" in headers["Content-Type"]
        assert body == (settings.BASE_DIR / "static" / "js" / "app.js").read_bytes()
        assert "immutable" in headers["Cache-Control"]  # hashed files are cached for good
        _, headers, zipped = fetch(url + script, **{"Accept-Encoding": "gzip"})
        assert headers["Content-Encoding"] == "gzip" and gzip.decompress(zipped) == body
        assert (site.dir / "static" / script.removeprefix("/static/")).is_file()
