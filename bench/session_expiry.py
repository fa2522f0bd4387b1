"""How long the hourly session expiry takes as sessions and personal models pile up.

For each size N it makes a throw-away database (SQLite, or PostgreSQL when
DATABASE_URL names a server, as ``scripts/with_postgres.py`` does), migrates it
and fills it with bulk inserts: N personal models of browser-session writers (half
of their sessions live, a quarter expired, a quarter gone), N/10 of token writers,
and N more live and N/4 more expired sessions of visitors who never corrected a
drawing. Then it times ``writers.services.sessions_expire`` (what the Celery beat
task ``writers.expire_sessions`` runs): once with all that to clear, then again
with nothing ended since (the usual hourly run), and prints one row per size.

    .venv/bin/python bench/session_expiry.py --models 10000 100000
    .venv/bin/python scripts/with_postgres.py .venv/bin/python bench/session_expiry.py
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scale import BATCH, fresh_database  # noqa: E402
from bench.server import Deployment  # noqa: E402

STEADY_RUNS = 5


def run_size(models: int) -> dict:
    url, drop = fresh_database(models, None)
    try:
        with Deployment(**({"DATABASE_URL": url} if url else {})) as deployment:
            out = deployment.dir / "figures.json"
            subprocess.run(
                [sys.executable, __file__, "--child", str(models), "--out", str(out)],
                cwd=ROOT, env=deployment.env, check=True,
            )  # fmt: skip
            return json.loads(out.read_text())
    finally:
        drop()


def fill(models: int) -> None:
    from datetime import timedelta

    from django.contrib.sessions.models import Session
    from django.db import connection
    from django.utils import timezone

    from writers.identity import SESSION_WRITER
    from writers.models import PersonalModel

    now = timezone.now()
    live, ended = now + timedelta(days=14), now - timedelta(hours=1)
    keys = [f"scale{index:035d}" for index in range(2 * models + models // 2)]
    # Writers' sessions: half live, a quarter expired, a quarter gone (no row).
    writer_keys = keys[:models]
    expiry = {
        **dict.fromkeys(writer_keys[: models // 2], live),
        **dict.fromkeys(writer_keys[models // 2 : models * 3 // 4], ended),
        **dict.fromkeys(keys[models : 2 * models], live),
        **dict.fromkeys(keys[2 * models :], ended),
    }
    sessions = [Session(session_key=k, session_data="", expire_date=e) for k, e in expiry.items()]
    Session.objects.bulk_create(sessions, batch_size=BATCH)
    row = bytes(512)  # one float16 row of 256 features
    personal = [
        *(
            PersonalModel(writer=SESSION_WRITER + key, features=row, labels="a")
            for key in writer_keys
        ),
        *(
            PersonalModel(writer=f"token:1:end-user-{i}", features=row, labels="a")
            for i in range(models // 10)
        ),
    ]
    PersonalModel.objects.bulk_create(personal, batch_size=BATCH)
    if connection.vendor == "postgresql":  # the statistics autovacuum would soon gather
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def child(models: int, out: Path) -> None:
    import django

    django.setup()
    from django.contrib.sessions.models import Session

    from writers import services
    from writers.models import PersonalModel

    fill(models)
    before = (PersonalModel.objects.count(), Session.objects.count())
    started = time.perf_counter()
    deleted = services.sessions_expire()
    first_s = time.perf_counter() - started
    after = (PersonalModel.objects.count(), Session.objects.count())
    steady = []
    for _ in range(STEADY_RUNS):
        started = time.perf_counter()
        assert services.sessions_expire() == 0
        steady.append(time.perf_counter() - started)
    from django.db import connection

    out.write_text(
        json.dumps(
            {
                "database": connection.vendor,
                "models": before[0],
                "sessions": before[1],
                "first_s": first_s,
                "models_deleted": deleted,
                "sessions_cleared": before[1] - after[1],
                "steady_s": statistics.median(steady),
            }
        )
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.out)
        return
    print(
        "database    personal models  sessions   first run: s  models deleted  sessions "
        f"cleared   then, nothing ended: s (median of {STEADY_RUNS})"
    )
    for models in args.models:
        r = run_size(models)
        print(
            f"{r['database']:10} {r['models']:16,} {r['sessions']:9,} {r['first_s']:15.2f}"
            f" {r['models_deleted']:15,} {r['sessions_cleared']:17,} {r['steady_s']:26.3f}"
        )


if __name__ == "__main__":
    main()
