"""A throw-away deployment for benchmarks: its own database, media, Redis, gunicorn, worker."""

import http.cookiejar
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def call(
    url: str,
    path: str,
    body: dict | None = None,
    *,
    token: str = "",
    headers: dict | None = None,
    cookies: http.cookiejar.CookieJar | None = None,
) -> tuple[int, dict]:
    """A JSON request to a deployment (a POST when there is a body): status and answer;
    with ``cookies``, as a client that keeps its session cookie there."""
    headers = {"Content-Type": "application/json", **(headers or {})}
    if token:
        headers["Authorization"] = f"Token {token}"
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers=headers,
        method="POST" if body is not None else "GET",
    )
    open_url = urllib.request.urlopen
    if cookies is not None:
        open_url = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies)).open
    try:
        with open_url(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Deployment:
    """Migrated SQLite, the default model, and processes started on demand; all removed at exit."""

    def __init__(self, **env_overrides):
        self.dir = Path(tempfile.mkdtemp(prefix="recognizer-bench-"))
        self.redis_port = free_port()
        self.env = {
            **os.environ,
            "DEBUG": "0",
            "SECRET_KEY": "benchmark-only-secret-key-not-for-production-use-0123456789",
            "SECURE_SSL_REDIRECT": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": f"sqlite:///{self.dir / 'db.sqlite3'}",
            "MEDIA_ROOT": str(self.dir / "media"),
            "STATIC_ROOT": str(self.dir / "static"),
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "THROTTLE_ANON": "off",
            "THROTTLE_USER": "off",
            "THROTTLE_CORRECTIONS": "off",
            "DJANGO_SETTINGS_MODULE": "recognizer_site.settings",
            **{key: str(value) for key, value in env_overrides.items()},
        }
        self.processes: list[subprocess.Popen] = []
        try:
            self.manage("migrate", "--noinput", "--verbosity", "0")
            self.manage("collectstatic", "--noinput", "--verbosity", "0")
            self.manage("install_default_model", "--verbosity", "0")
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)  # nobody gets to close() it
            raise

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
        )
        if result.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    def trusted_token(self, *, moderator: bool = False) -> str:
        """An API token whose corrections train the shared model (LEARN_FROM=trusted): a
        member of "Trusted writers", who labels the drawings it made; with ``moderator`` a
        moderator, who labels any drawing and sees runs' figures.
        """
        name = "bench-moderator" if moderator else "bench-writer"
        group = "Moderators" if moderator else "Trusted writers"
        code = (
            "from django.contrib.auth.models import Group, User\n"
            "from rest_framework.authtoken.models import Token\n"
            f"user, _ = User.objects.get_or_create(username={name!r}, is_staff={moderator})\n"
            f"user.groups.add(Group.objects.get(name={group!r}))\n"
            "print(Token.objects.get_or_create(user=user)[0].key)"
        )
        # The shell announces its automatic imports first: the token is the last line.
        return self.manage("shell", "-c", code).strip().splitlines()[-1]

    def _start(self, command: list[str], log_name: str) -> subprocess.Popen:
        log = (self.dir / log_name).open("wb")
        process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        self.processes.append(process)
        return process

    def start_redis(self) -> subprocess.Popen:
        """Start Redis on this deployment's port (again, after a stop: the fault drills)."""
        process = self._start(
            [str(BIN / "redis-server"), "--bind", "127.0.0.1", "--port", str(self.redis_port),
             "--save", "", "--dir", str(self.dir)],
            "redis.log",
        )  # fmt: skip
        time.sleep(0.3)
        return process

    def start_web(self, workers: int = 2, *, access_log: bool = False) -> str:
        """Start gunicorn; with ``access_log``, web.log names the worker pid of every request."""
        port = free_port()
        log_options = ["--access-logfile", "-", "--access-logformat", '%(p)s "%(r)s" %(s)s']
        self._start(
            [str(BIN / "gunicorn"), "recognizer_site.wsgi", "--workers", str(workers),
             "--bind", f"127.0.0.1:{port}", "--backlog", "256",
             *(log_options if access_log else [])],
            "web.log",
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/model-versions/active/", timeout=5).read()
                return url
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError((self.dir / "web.log").read_text()) from None
                time.sleep(0.2)

    def start_worker(self, name: str = "worker", *, beat: bool = False) -> subprocess.Popen:
        """Start a Celery worker; give each of several workers its own name (and log).

        With ``beat`` it also sends the periodic sweep (one beat per deployment).
        """
        beat_options = ["--beat", "--schedule", str(self.dir / f"{name}-beat-schedule")]
        return self._start(
            [str(BIN / "celery"), "-A", "recognizer_site", "worker", "--queues", "training,celery",
             "--hostname", f"{name}@%h",
             "--concurrency", "1", "--without-gossip", "--without-mingle", "--loglevel", "INFO",
             *(beat_options if beat else [])],
            f"{name}.log",
        )  # fmt: skip

    def close_processes(self):
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()

    def close(self):
        self.close_processes()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
