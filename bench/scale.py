"""How the pages, the API, /metrics, a fine-tune's selection and the export grow with the data.

For each size it makes a throw-away database (SQLite, or PostgreSQL when
DATABASE_URL names a server, as ``scripts/with_postgres.py`` does), migrates it,
installs the default model, times a prediction on the empty database, then fills
it with bulk inserts: N samples each with its prediction (a realistic label and
confidence spread; every drawing is one shared real PNG), N/20 corrections,
max(20, N/500) model versions with their training runs. Then it times, with a
warm cache, requests through Django's whole stack (the test client: middleware,
admin, DRF) and the jobs themselves, and prints one table per size.

    .venv/bin/python bench/scale.py --rows 10000 1000000
    .venv/bin/python scripts/with_postgres.py .venv/bin/python bench/scale.py --rows 10000 1000000

Each measurement runs once to warm up, then up to --repeat times within --budget
seconds (at least once): the n column says how many. The cpu column is the median
CPU time of the measuring process (Django's work, not the database server's).
With ``--keep DIR`` the databases and media stay in DIR: the first run of a size
fills it, later runs migrate it and measure again; then ``--compare-empty`` rounds
time predictions on the filled database and on a copy of it emptied of samples, in
one process switching between them, so that both meet the same machine and model.
"""

import argparse
import base64
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.server import Deployment  # noqa: E402

BATCH = 20_000
HELDOUT_COMPARED = 15  # held-out glyphs a 10,000-row fill always holds
REPLAY_COMPARED = 3  # replayable samples a 10,000-row fill holds of every class
DAYS = 60


# --- the parent: one fresh database per size ---------------------------------


def fresh_database(rows: int, keep: Path | None):
    """(DATABASE_URL, drop) for the size's database: a new PostgreSQL one, else SQLite's
    default; with ``keep``, one that outlives the run (made once, filled once)."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        if keep is None:
            return None, lambda: None
        return f"sqlite:///{keep / f'db_{rows}.sqlite3'}", lambda: None
    import psycopg

    name = f"scale_{rows}" if keep else f"scale_{rows}_{os.getpid()}"
    with psycopg.connect(url.replace("postgres://", "postgresql://"), autocommit=True) as db:
        exists = db.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            db.execute(f"CREATE DATABASE {name}")
    if keep:
        return url.rsplit("/", 1)[0] + f"/{name}", lambda: None

    def drop():
        with psycopg.connect(url.replace("postgres://", "postgresql://"), autocommit=True) as db:
            db.execute(f"DROP DATABASE {name} WITH (FORCE)")

    return url.rsplit("/", 1)[0] + f"/{name}", drop


def run_size(rows: int, args) -> dict:
    url, drop = fresh_database(rows, args.keep)
    overrides = {"DATABASE_URL": url} if url else {}
    overrides["METRICS_TOKEN"] = "scale-benchmark-scrape"
    if args.keep:
        overrides["MEDIA_ROOT"] = args.keep / f"media_{rows}"
    try:
        with Deployment(**overrides) as deployment:
            deployment.start_redis()
            out = deployment.dir / "figures.json"
            subprocess.run(
                [sys.executable, __file__, "--child", str(rows), "--out", str(out),
                 "--repeat", str(args.repeat), "--budget", str(args.budget),
                 *(["--keep", str(args.keep)] if args.keep else [])],
                cwd=ROOT, env=deployment.env, check=True,
            )  # fmt: skip
            return json.loads(out.read_text())
    finally:
        drop()


def compare_empty(rows: int, args) -> None:
    """A prediction's p50 on the filled database and on a copy of it emptied of samples, in one
    process that switches between them every few requests, so that both meet the same
    machine and the same model: the whole request and its database time."""
    url, _ = fresh_database(rows, args.keep)
    empty_url, drop_empty = emptied_copy(rows, url, args.keep)
    try:
        overrides = {"DATABASE_URL": url, "EMPTY_DATABASE_URL": empty_url}
        overrides["MEDIA_ROOT"] = args.keep / f"media_{rows}"
        with Deployment(**overrides) as deployment:
            deployment.start_redis()
            out = deployment.dir / "predict.json"
            subprocess.run(
                [sys.executable, __file__, "--child-predict", "--out", str(out),
                 "--compare-empty", str(args.compare_empty)],
                cwd=ROOT, env=deployment.env, check=True,
            )  # fmt: skip
            figures = json.loads(out.read_text())
    finally:
        drop_empty()
    print(f"\nA prediction, {rows:,} rows against none, {figures['rounds']} rounds alternated:")
    for figure, by_database in figures["p50"].items():
        print(
            f"  {figure}: p50 {by_database['filled']:.2f} ms filled, {by_database['empty']:.2f} "
            f"ms empty ({by_database['filled'] - by_database['empty']:+.2f} ms)",
            flush=True,
        )


# What an emptied copy keeps: the model versions, their runs, users; no samples.
EMPTIED = ["recognition_sample", "recognition_predictiontally"]


def emptied_copy(rows: int, url: str | None, keep: Path):
    """(DATABASE_URL, drop) of a copy of the size's database without samples, predictions,
    corrections or tallies."""
    if url is None or not url.startswith("postgres"):
        original = keep / f"db_{rows}.sqlite3"
        copy = keep / f"db_{rows}_empty.sqlite3"
        with sqlite3.connect(original) as source, sqlite3.connect(copy) as target:
            source.backup(target)
            target.executescript(
                "PRAGMA foreign_keys=OFF; DELETE FROM recognition_prediction; "
                "DELETE FROM training_trainingrun_corrections; DELETE FROM recognition_correction; "
                + "".join(f"DELETE FROM {table}; " for table in EMPTIED)
            )
        return f"sqlite:///{copy}", lambda: copy.unlink(missing_ok=True)
    import psycopg

    server = url.replace("postgres://", "postgresql://").rsplit("/", 1)[0]
    name = f"scale_{rows}_empty"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as db:
        db.execute(f"DROP DATABASE IF EXISTS {name}")
        db.execute(f"CREATE DATABASE {name} TEMPLATE scale_{rows}")
    with psycopg.connect(f"{server}/{name}", autocommit=True) as db:
        db.execute(f"TRUNCATE {', '.join(EMPTIED)} CASCADE")
        db.execute("VACUUM ANALYZE")

    def drop():
        with psycopg.connect(f"{server}/postgres", autocommit=True) as db:
            db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    return url.rsplit("/", 1)[0] + f"/{name}", drop


def print_table(figures: dict):
    print(f"\n## {figures['database']}, {figures['rows']:,} samples", flush=True)
    print(", ".join(f"{key} {value}" for key, value in figures["filled"].items()))
    print(f"| {'measured':<52} | {'p50 ms':>9} | {'p95 ms':>9} | {'cpu p50':>9} | {'n':>3} | note")
    print(f"|{'-' * 54}|{'-' * 11}|{'-' * 11}|{'-' * 11}|{'-' * 5}|------")
    for name, row in figures["rows_measured"].items():
        note = row.get("note", "")
        cpu = f"{row['cpu']:>9.1f}" if "cpu" in row else f"{'-':>9}"
        print(
            f"| {name:<52} | {row['p50']:>9.1f} | {row['p95']:>9.1f} | {cpu} | {row['n']:>3} "
            f"| {note}"
        )


# --- the child: fill, then measure -------------------------------------------


def timed_runs(function, *, repeat: int, budget: float) -> dict:
    """p50 and p95 wall time, and the p50 of this process's CPU time (Django's own work,
    without the database's), which a loaded machine stretches less than wall time."""
    begin = time.perf_counter()
    function()  # warm-up: caches, the model, the query plan
    warm_up = (time.perf_counter() - begin) * 1000
    if warm_up > budget * 1000:  # too slow to repeat: the one (cold) run is the figure
        return {"p50": warm_up, "p95": warm_up, "n": 1, "note": "cold, once"}
    times, cpu = [], []
    started = time.monotonic()
    while len(times) < repeat and (not times or time.monotonic() - started < budget):
        begin, begin_cpu = time.perf_counter(), time.process_time()
        function()
        times.append((time.perf_counter() - begin) * 1000)
        cpu.append((time.process_time() - begin_cpu) * 1000)
    times.sort()
    return {
        "p50": statistics.median(times),
        "p95": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))],
        "cpu": statistics.median(cpu),
        "n": len(times),
    }


def insert(model, objects: list, connection):
    """Insert model instances (the small tables): ``insert_rows`` of their field values."""
    rows = ({f.attname: getattr(obj, f.attname) for f in _columns(model)} for obj in objects)
    insert_rows(model, rows, connection)


def _columns(model) -> list:
    return [
        f
        for f in model._meta.concrete_fields
        if not f.primary_key and not getattr(f, "generated", False)
    ]


def insert_rows(model, rows, connection):
    """Insert rows given as {attname: value}, other columns at their default, in one pass:
    COPY on PostgreSQL, executemany elsewhere. No model instances: a million rows each."""
    fields = _columns(model)
    plain = {"CharField", "FloatField", "IntegerField", "PositiveIntegerField", "BooleanField",
             "PositiveSmallIntegerField", "BigIntegerField", "ForeignKey", "FileField"}  # fmt: skip
    native = connection.vendor == "postgresql" and {"DateTimeField", "BinaryField"}
    prepare = [
        None
        if f.get_internal_type() in plain or f.get_internal_type() in (native or ())
        else f.get_db_prep_save
        for f in fields
    ]
    defaults = [f.get_db_prep_save(f.get_default(), connection) for f in fields]
    names = [f.attname for f in fields]
    prepared_json: dict = {}  # the few JSON values there are, adapted once each

    def values(row: dict) -> list:
        out = list(defaults)
        for i, name in enumerate(names):
            if name in row:
                value = row[name]
                if prepare[i] is None:
                    out[i] = value
                elif isinstance(value, list | dict):
                    key = (i, id(value))
                    if key not in prepared_json:
                        prepared_json[key] = (value, prepare[i](value, connection))
                    out[i] = prepared_json[key][1]
                else:
                    out[i] = prepare[i](value, connection)
        return out

    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(values(row))
            return
        marks = ", ".join(["%s"] * len(fields))
        batch: list = []
        for row in rows:
            batch.append(values(row))
            if len(batch) == BATCH:
                cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", batch)
                batch = []
        if batch:
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", batch)


def fill(rows: int, png: bytes) -> dict:
    import numpy as np
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from django.core.files.storage import storages
    from django.db import connection, transaction
    from django.utils import timezone

    from recognition.models import (
        LATENCY_BOUNDS_MS,
        Correction,
        Prediction,
        PredictionTally,
        Sample,
    )
    from training.classes import CLASSES
    from training.models import ModelVersion, TrainingRun

    rng = np.random.default_rng(17)
    started = time.monotonic()
    image_name = storages["drawings"].save("samples/scale/shared.png", ContentFile(png))
    glyph = bytes(Sample.objects.get().glyph)  # the empty-database prediction's drawing
    now = timezone.now()
    origin = now - timezone.timedelta(days=DAYS)
    step = timezone.timedelta(days=DAYS) / rows
    version_count = max(20, rows // 500)
    correction_count = rows // 20
    User = get_user_model()

    first = ModelVersion.objects.get()
    users = User.objects.bulk_create(
        [User(username=f"labeller{i}", password="!") for i in range(50)]
    )
    moderator = User.objects.create(username="moderator-scale", is_staff=True, password="!")

    # Versions: a chain of fine-tunes of the default model, the newest one active.
    classes = list(CLASSES)
    confusion = (np.eye(36, dtype=int) * 40 + rng.integers(0, 2, (36, 36))).tolist()
    versions = []
    for number in range(2, version_count + 1):
        overall = float(0.9 + 0.05 * rng.random())
        versions.append(
            ModelVersion(
                number=number,
                status=ModelVersion.Status.RETIRED,
                weights=first.weights.name,
                sha256=first.sha256,
                anchors=first.anchors.name,
                architecture=first.architecture,
                classes=classes,
                metrics={
                    "overall": overall,
                    "digits": overall + 0.03,
                    "letters": overall - 0.02,
                    "forgetting": float(rng.normal(0, 0.004)),
                    "parent_overall": overall - 0.001,
                    "parent_digits": overall + 0.029,
                    "parent_letters": overall - 0.021,
                    "confusion": confusion,
                    "per_class": dict.fromkeys(classes, overall),
                    "count": 1440,
                },
                training_info={"kind": "fine-tune", "settings": {}, "correction_ids": []},
                trained_sample_ids=[int(i) for i in rng.integers(1, rows, 25)],
                created_at=origin + (number - 1) * (now - origin) / version_count,
            )
        )
    with transaction.atomic():
        ModelVersion.objects.filter(pk=first.pk).update(status=ModelVersion.Status.RETIRED)
        ModelVersion.objects.bulk_create(versions, batch_size=500)
        versions = list(ModelVersion.objects.order_by("number"))
        ModelVersion.objects.filter(pk=versions[-1].pk).update(
            status=ModelVersion.Status.ACTIVE, activated_at=now
        )
        parents = {v.number: v for v in versions}
        TrainingRun.objects.bulk_create(
            [
                TrainingRun(
                    status=TrainingRun.Status.SUCCEEDED,
                    parent_version=parents[v.number - 1],
                    result_version=v,
                    attempts=1,
                    progress=1.0,
                    started_at=v.created_at - timezone.timedelta(seconds=2),
                    heartbeat_at=v.created_at,
                    finished_at=v.created_at,
                )
                for v in versions[1:]
            ],
            batch_size=500,
        )
        for version in versions[1:]:
            version.parent = parents[version.number - 1]
        ModelVersion.objects.bulk_update(versions[1:], ["parent"], batch_size=500)
    version_ids = [v.pk for v in versions]

    # Samples and predictions: digits drawn more than letters, mostly confident.
    weights = np.array([2.0] * 10 + [1.0] * 26)
    predicted = rng.choice(36, size=rows, p=weights / weights.sum())
    confidence = np.clip(rng.beta(5, 1, size=rows), 0.05, 0.9999)
    latency = rng.lognormal(np.log(6), 0.4, size=rows)
    probability_rows = {}
    for index in range(36):
        p = np.full(36, 0.001)
        p[index] = 0.9
        probability_rows[index] = [round(float(x), 6) for x in p / p.sum()]
    replay_keys = rng.random(rows)
    # Sample.save's keyed hash of the stored name is uniform over 31 bits: so are these.
    heldout_buckets = rng.integers(0, 2**31, size=rows)
    version_numbers = [v.number for v in versions]

    def sample_extra(i: int) -> dict:
        """The latest prediction kept on the sample, its place in the replay order, its held-out
        bucket."""
        return {
            "predicted_label": CLASSES[predicted[i]],
            "confidence": float(confidence[i]),
            "model_version_number": version_numbers[i * len(version_numbers) // rows],
            "replay_key": float(replay_keys[i]),
            "heldout_bucket": int(heldout_buckets[i]),
        }

    sample_start = Sample.objects.count() + 1
    with transaction.atomic():
        for begin in range(0, rows, BATCH):
            chunk = range(begin, min(rows, begin + BATCH))
            samples = (
                {
                    "image": image_name,
                    "width": 280,
                    "height": 280,
                    "glyph": glyph,
                    "source": Sample.Source.PAGE,
                    "session_key": f"{i % 5000:040d}",
                    "status": Sample.Status.UNREVIEWED,
                    "label": "",
                    "created_at": origin + i * step,
                    **sample_extra(i),
                }
                for i in chunk
            )
            insert_rows(Sample, samples, connection)
        sample_ids = list(
            Sample.objects.filter(pk__gte=sample_start).order_by("pk").values_list("pk", flat=True)
        )
        for begin in range(0, rows, BATCH):
            chunk = range(begin, min(rows, begin + BATCH))
            predictions = (
                {
                    "sample_id": sample_ids[i],
                    "model_version_id": version_ids[i * len(version_ids) // rows],
                    "label": CLASSES[predicted[i]],
                    "confidence": float(confidence[i]),
                    "probabilities": probability_rows[predicted[i]],
                    "latency_ms": float(latency[i]),
                    "created_at": origin + i * step,
                }
                for i in chunk
            )
            insert_rows(Prediction, predictions, connection)

        # What predict_drawing counts as it goes.
        buckets = np.searchsorted(LATENCY_BOUNDS_MS, latency, side="left")
        PredictionTally.objects.all().delete()
        PredictionTally.objects.bulk_create(
            PredictionTally(
                label=CLASSES[label],
                bucket=bucket,
                count=int(chosen.sum()),
                sum_ms=float(latency[chosen].sum()),
            )
            for label in range(36)
            for bucket in range(len(LATENCY_BOUNDS_MS) + 1)
            if (chosen := (predicted == label) & (buckets == bucket)).any()
        )

        # Corrections on one sample in 20: mostly a real correction, some confirmations.
        corrected = np.sort(rng.choice(rows, size=correction_count, replace=False))
        corrections, labelled = [], {}
        for n, i in enumerate(corrected):
            teaches = rng.random() < 0.75
            label = CLASSES[(predicted[i] + rng.integers(1, 36)) % 36] if teaches else None
            label = label or CLASSES[predicted[i]]
            by_moderator = rng.random() < 0.2
            state = (
                Correction.TrainingState.NOT_NEEDED
                if not teaches
                else Correction.TrainingState.PENDING
                if n >= correction_count - 20
                else Correction.TrainingState.REJECTED
                if rng.random() < 0.05
                else Correction.TrainingState.TRAINED
            )
            corrections.append(
                Correction(
                    sample_id=sample_ids[i],
                    label=label,
                    previous_label=CLASSES[predicted[i]],
                    author=moderator if by_moderator else users[int(rng.integers(0, 50))],
                    source=Correction.Source.ADMIN if by_moderator else Correction.Source.PAGE,
                    training_state=state,
                    created_at=origin + i * step + timezone.timedelta(minutes=1),
                )
            )
            roll = rng.random()
            status = (
                Sample.Status.EXCLUDED
                if roll < 0.05
                else Sample.Status.RELABELED
                if by_moderator and teaches
                else Sample.Status.CONFIRMED
                if by_moderator
                else Sample.Status.UNREVIEWED
            )
            labelled[sample_ids[i]] = (label, status)
        insert(Correction, corrections, connection)
        for (label, status), ids in _group(labelled).items():
            for begin in range(0, len(ids), 5000):
                Sample.objects.filter(pk__in=ids[begin : begin + 5000]).update(
                    label=label, status=status, corrected=True
                )
        # Each fine-tune learned the corrections made since the one before it.
        through = TrainingRun.corrections.through
        runs = list(TrainingRun.objects.order_by("pk").values_list("pk", flat=True))
        correction_ids = list(
            Correction.objects.filter(sample_id__gte=sample_start)
            .exclude(training_state=Correction.TrainingState.PENDING)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        links = [
            through(trainingrun_id=runs[k * len(runs) // len(correction_ids)], correction_id=c)
            for k, c in enumerate(correction_ids)
        ]
        insert(through, links, connection)
        # Statistics that count this transaction's rows (an autovacuum during the fill sees
        # none): the deferred foreign-key checks are planned with them at commit.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # what autovacuum would have done by now
            cursor.execute("VACUUM")
    return {
        "samples": Sample.objects.count(),
        "corrections": len(corrections),
        "versions": len(versions),
        "fill_s": round(time.monotonic() - started, 1),
    }


def _group(labelled: dict) -> dict:
    groups: dict = {}
    for sample_id, key in labelled.items():
        groups.setdefault(key, []).append(sample_id)
    return groups


def export_run(env: dict, out: Path) -> dict:
    """Time and peak resident memory of ``manage.py export_samples`` in its own process."""
    begin = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "export_samples", "--out", str(out)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = (time.perf_counter() - begin) * 1000
    if status:
        raise RuntimeError("export_samples failed")
    exported = sum(1 for _ in out.rglob("*.png"))
    return {"ms": elapsed, "peak_mb": usage.ru_maxrss / 1024, "files": exported}


def prediction_request(png: bytes):
    """A function that posts ``png`` to the prediction API through Django's whole stack."""
    from django.test import Client

    body = json.dumps({"image": base64.b64encode(png).decode()})
    api = Client(HTTP_HOST="127.0.0.1")

    def predict():
        response = api.post("/api/predictions/", body, content_type="application/json")
        assert response.status_code == 201, response.content

    return predict


def child_predict(out: Path, rounds: int):
    """``rounds`` of 40 predictions on each database (EMPTY_DATABASE_URL's and
    DATABASE_URL's, the first of each order alternating), switching the one connection
    between them; the p50 of each database's requests and of their queries' time."""
    import django
    import environ

    django.setup()
    from django.db import connection

    from tests.drawing import ONE, draw_png

    predict = prediction_request(draw_png(ONE))
    names = {
        "filled": connection.settings_dict["NAME"],
        "empty": environ.Env.db_url_config(os.environ["EMPTY_DATABASE_URL"])["NAME"],
    }
    spent = []

    def timed_query(execute, sql, params, many, context):
        begin = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            spent[-1] += time.perf_counter() - begin

    times = {name: [] for name in names}
    database_ms = {name: [] for name in names}
    for round_number in range(rounds):
        for which in list(names)[:: 1 if round_number % 2 else -1]:
            connection.close()
            connection.settings_dict["NAME"] = names[which]
            for _ in range(5):  # the new connection, its plans and the pages it reads
                predict()
            with connection.execute_wrapper(timed_query):
                for _ in range(40):
                    spent.append(0.0)
                    begin = time.perf_counter()
                    predict()
                    times[which].append((time.perf_counter() - begin) * 1000)
                    database_ms[which].append(spent[-1] * 1000)
    out.write_text(json.dumps({
        "rounds": rounds,
        "p50": {
            "request": {name: statistics.median(values) for name, values in times.items()},
            "its queries": {
                name: statistics.median(values) for name, values in database_ms.items()
            },
        },
    }))  # fmt: skip


def child(rows: int, out: Path, repeat: int, budget: float, keep: Path | None):
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import Client

    from recognition.models import Sample
    from tests.drawing import ONE, draw_png
    from training import replay
    from training.models import ModelVersion

    png = draw_png(ONE)
    predict = prediction_request(png)
    figures: dict = {}
    kept = keep / f"filled_{connection.vendor}_{rows}.json" if keep else None
    if kept is not None and kept.exists():  # filled by an earlier run: its empty figure too
        earlier = json.loads(kept.read_text())
        filled, empty = earlier["filled"], earlier["empty"]
        figures["POST /api/predictions/ (empty database)"] = {**empty, "note": "earlier run"}
    else:
        figures["POST /api/predictions/ (empty database)"] = timed_runs(
            predict, repeat=max(repeat, 60), budget=budget
        )
        Sample.objects.exclude(pk=Sample.objects.order_by("pk").values("pk")[:1]).delete()
        filled = fill(rows, png)
        if kept is not None:
            empty = figures["POST /api/predictions/ (empty database)"]
            kept.write_text(json.dumps({"filled": filled, "empty": empty}))
    print(f"filled {filled}", file=sys.stderr, flush=True)

    figures["POST /api/predictions/"] = timed_runs(predict, repeat=max(repeat, 60), budget=budget)

    from django.contrib.auth import get_user_model

    moderator = get_user_model().objects.get(username="moderator-scale")
    moderator.is_superuser = True
    moderator.save()
    admin = Client(HTTP_HOST="127.0.0.1")
    admin.force_login(moderator)

    def page(url, client=admin):
        def get():
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
            b"".join(response) if response.streaming else response.content

        return get

    newest = ModelVersion.objects.order_by("-number").first()
    labeller = get_user_model().objects.get(username="labeller7")
    some_sample = Sample.objects.exclude(label="").order_by("-pk").first()
    changelist = "/admin/recognition/sample/"
    week_ago = (some_sample.created_at - timedelta(days=7)).date()
    urls = {
        "admin samples: review queue": changelist,
        "admin samples: status=unreviewed": f"{changelist}?status__exact=unreviewed",
        "admin samples: predicted=a": f"{changelist}?predicted=a",
        "admin samples: label=a": f"{changelist}?label__exact=a",
        "admin samples: disputed=yes": f"{changelist}?disputed=yes",
        "admin samples: confidence=low": f"{changelist}?confidence=low",
        f"admin samples: version=v{newest.number - 1}": f"{changelist}?version={newest.number - 1}",
        "admin samples: labelled by one person": f"{changelist}?labelled_by={labeller.pk}",
        "admin samples: created in the last 7 days": (f"{changelist}?created_at__gte={week_ago}"),
        "admin samples: search 'a'": f"{changelist}?q=a",
        "admin samples: page 200": f"{changelist}?p=199",
        "admin sample page": f"{changelist}{some_sample.pk}/change/",
        "admin dashboard": f"{changelist}dashboard/",
        "admin model versions": "/admin/training/modelversion/",
        "admin model version page": f"/admin/training/modelversion/{newest.pk}/change/",
        "admin predictions": "/admin/recognition/prediction/",
        "admin corrections": "/admin/recognition/correction/",
        "GET /api/samples/": "/api/samples/",
        "GET /api/samples/?label=a": "/api/samples/?label=a",
        "GET /api/samples/?predicted_label=a&max_confidence=0.5": (
            "/api/samples/?predicted_label=a&max_confidence=0.5"
        ),
        "GET /api/samples/?status=confirmed": "/api/samples/?status=confirmed",
        "GET /api/samples/?page=200": "/api/samples/?page=200",
    }
    for name, url in urls.items():
        figures[name] = timed_runs(page(url), repeat=repeat, budget=budget)
        print(f"{name}: {figures[name]}", file=sys.stderr, flush=True)
    figures["GET /metrics"] = timed_runs(
        page(
            "/metrics",
            Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {settings.METRICS_TOKEN}"),
        ),
        repeat=repeat,
        budget=budget,
    )

    def download_zip():
        response = admin.post(
            f"{changelist}?status__exact=confirmed",
            {"action": "download_zip", "select_across": "1", "index": "0",
             "_selected_action": [some_sample.pk]},
        )  # fmt: skip
        assert response.status_code == 200, response.status_code
        return b"".join(response) if response.streaming else response.content

    figures["admin zip download (status=confirmed)"] = timed_runs(
        download_zip, repeat=min(repeat, 5), budget=budget
    )

    every = settings.FINE_TUNE["HELDOUT_EVERY"]
    new_ids = tuple(
        Sample.objects.exclude(label="").order_by("-pk").values_list("pk", flat=True)[:20]
    )
    selections = {
        "fine-tune replay selection": lambda: replay.replay_set(
            exclude_ids=new_ids, per_class=replay.REPLAY_PER_CLASS, every=every, seed=0
        ),
        "fine-tune held-out selection": lambda: replay.heldout_user_set(
            exclude_ids=new_ids, every=every, limit=replay.HELDOUT_LIMIT
        ),
        # The same selections asked for as many glyphs as 10,000 rows hold, so the two sizes
        # do the same work and only the table differs.
        f"fine-tune replay selection, {REPLAY_COMPARED} a class": lambda: replay.replay_set(
            exclude_ids=new_ids, per_class=REPLAY_COMPARED, every=every, seed=0
        ),
        f"fine-tune held-out selection, first {HELDOUT_COMPARED}": lambda: replay.heldout_user_set(
            exclude_ids=new_ids, every=every, limit=HELDOUT_COMPARED
        ),
    }
    for name, select in selections.items():
        figures[name] = {
            **timed_runs(select, repeat=repeat, budget=budget),
            "note": f"{len(select())} glyphs",  # at 10,000 rows, fewer than asked for exist
        }
    connection.close()
    with tempfile.TemporaryDirectory(prefix="scale-export-") as folder:
        export = export_run(dict(os.environ), Path(folder) / "out")
    figures["export_samples (imagefolder)"] = {
        "p50": export["ms"],
        "p95": export["ms"],
        "n": 1,
        "note": f"{export['files']} samples, peak RSS {export['peak_mb']:.0f} MB",
    }
    out.write_text(
        json.dumps(
            {
                "database": connection.vendor,
                "rows": rows,
                "filled": filled,
                "rows_measured": figures,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--budget", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument(
        "--keep",
        type=Path,
        help="a folder for databases and media that outlive the run: filled by the first run "
        "of a size, measured again (after any new migrations) by the next ones",
    )
    parser.add_argument(
        "--compare-empty",
        type=int,
        default=10,
        metavar="ROUNDS",
        help="with --keep, after each size: ROUNDS of 40 predictions on the filled database and "
        "40 on a copy of it emptied of samples, in one process (0: none)",
    )
    parser.add_argument(
        "--compare-only", action="store_true", help="with --keep: only the --compare-empty rounds"
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-predict", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.keep:
        args.keep = args.keep.resolve()
        args.keep.mkdir(parents=True, exist_ok=True)
    if args.child_predict:
        child_predict(args.out, args.compare_empty)
        return
    if args.child:
        child(args.child, args.out, args.repeat, args.budget, args.keep)
        return
    for rows in args.rows:
        if not args.compare_only:
            print_table(run_size(rows, args))
        if args.compare_empty and args.keep:  # the filled database must outlive its run
            compare_empty(rows, args)


if __name__ == "__main__":
    main()
