"""Run a command against a throw-away PostgreSQL server, then remove the server and its data.

    .venv/bin/python scripts/with_postgres.py .venv/bin/python -m pytest tests/test_api.py

The server listens on loopback only, on a free port, with its unix socket in
its own temporary folder, and the command gets DATABASE_URL (an empty database
``recognizer`` whose owner may create the ``test_recognizer`` that pytest-django
makes). The server is stopped and its folder deleted however the command ends;
Ctrl-C and SIGTERM stop the command first. Binaries come from PG_BINDIR, else Debian's
/usr/lib/postgresql/<newest>/bin, else PATH.
"""

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATABASE = "recognizer"
USER = "recognizer"


def bindir() -> Path:
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if debian:
        return debian[-1].parent
    found = shutil.which("postgres")
    if found is None:
        sys.exit("with_postgres: no PostgreSQL server found (apt-get install postgresql)")
    return Path(found).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_account() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root: as root, use the package's `postgres` user (or nobody)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    sys.exit("with_postgres: running as root and no unprivileged user to run PostgreSQL as")


class Server:
    def __init__(self):
        self.bin = bindir()
        self.account = server_account()
        self.dir = Path(tempfile.mkdtemp(prefix="recognizer-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.password = secrets.token_hex(16)
        self.process: subprocess.Popen | None = None
        self.url = f"postgres://{USER}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"
        if self.account is not None:  # the server writes its data and socket here
            os.chown(self.dir, self.account.pw_uid, self.account.pw_gid)

    def _as_server_user(self) -> dict:
        if self.account is None:
            return {}
        return {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}

    def start(self):
        password_file = self.dir / "password"
        password_file.write_text(self.password)
        if self.account is not None:
            os.chown(password_file, self.account.pw_uid, self.account.pw_gid)
        subprocess.run(
            [str(self.bin / "initdb"), "--pgdata", str(self.data), "--username", USER,
             "--pwfile", str(password_file), "--auth", "scram-sha-256", "--encoding", "UTF8",
             "--locale", "C", "--no-sync"],
            check=True, stdout=subprocess.DEVNULL, cwd=self.dir, **self._as_server_user(),
        )  # fmt: skip
        password_file.unlink()
        log = (self.dir / "server.log").open("wb")
        # Durability settings off: the data is thrown away, and tests run faster without fsync.
        self.process = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.dir,
            start_new_session=True,  # Ctrl-C reaches us, and we shut it down in order
            **self._as_server_user(),
        )  # fmt: skip
        env = {**os.environ, "PGPASSWORD": self.password}
        deadline = time.monotonic() + 30
        while subprocess.run(
            [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        ).returncode:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "PostgreSQL did not start:\n" + (self.dir / "server.log").read_text()
                )
            time.sleep(0.1)
        subprocess.run(
            [str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER,
             DATABASE],
            check=True, env=env,
        )  # fmt: skip

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown: disconnect clients, stop
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 2
    command: subprocess.Popen | None = None

    def on_sigterm(signum, frame):
        # The command shuts down its own processes (honcho's, pytest's workers) before
        # the server goes; before it has started, just clean up.
        if command is None:
            raise SystemExit(128 + signum)
        command.send_signal(signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    server = Server()
    try:
        server.start()
        print(f"with_postgres: PostgreSQL on 127.0.0.1:{server.port}", file=sys.stderr)
        command = subprocess.Popen(argv, env={**os.environ, "DATABASE_URL": server.url})
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the command from the terminal
        return command.wait()
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
