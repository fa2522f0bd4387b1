"""Online learning, measured: latency, adaptation and forgetting.

(a) correction-to-active latency over 20 corrections, through gunicorn, Redis and a
    Celery worker: from POST of the correction until the run is published and until
    the web process serves the new version;
(b) adaptation: for the classes the default model reads worst in one writing style
    (held-out photos of pen strokes, ``ink_photos``), accuracy on other samples of
    those classes before and after k = 1, 3, 5 corrections per class;
(c) forgetting: the drop on the fixed evaluation set after 200 corrections.

Corrections are real held-out handwriting from ../shared/data that the model
misreads, labelled with the truth (what a user would do); none of them is in the
fixed evaluation set.

    .venv/bin/python bench/online_learning.py
"""

import http.client
import json
import logging
import os
import re
import statistics
import sys
import time
import uuid
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.handwriting import HANDWRITING, heldout_handwriting  # noqa: E402
from bench.server import Deployment  # noqa: E402

STYLE = "ink_photos"
ADAPT_CLASSES = 6
LATENCY_CORRECTIONS = 20
FORGETTING_CORRECTIONS = 200
CORRECTIONS_PER_RUN = 10


def http_json(url: str, method: str, path: str, body=None, headers=None) -> dict:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.request(method, path, body, headers or {})
    response = connection.getresponse()
    data = json.loads(response.read() or b"{}")
    connection.close()
    if response.status >= 400:
        raise RuntimeError(f"{method} {path}: {response.status} {data}")
    return data


def predict_http(url: str, png: bytes) -> dict:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="d.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + png
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    return http_json(url, "POST", "/api/predictions/", body, headers)


def candidates(model, eval_glyphs):
    """Held-out handwriting outside the fixed set: (path, label, glyph, misread)."""
    from training import nn

    rows = heldout_handwriting(eval_glyphs)
    predicted = nn.predict_proba(model, np.stack([g for _, _, g in rows])).argmax(1)
    return [
        (p, label, g, pred != label) for (p, label, g), pred in zip(rows, predicted, strict=True)
    ]


def wait_for_warm_up(deployment: Deployment, timeout: float = 120):
    """Wait until the worker has warmed up, as in a deployment that has been up a while."""
    log = deployment.dir / "worker.log"
    deadline = time.monotonic() + timeout
    while not re.search(r"training\.warm_up\[[^]]*\] succeeded", log.read_text(errors="replace")):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not warm up:\n{log.read_text()}")
        time.sleep(0.2)


def measure_latency(deployment: Deployment, pool) -> dict:
    deployment.start_redis()
    deployment.start_worker()
    url = deployment.start_web(workers=2)
    wait_for_warm_up(deployment)
    published, served, outcomes, phases = [], [], defaultdict(int), defaultdict(list)
    from training.classes import CLASSES

    # A moderator: their labels train the shared model, and they see runs' figures.
    authorization = {"Authorization": f"Token {deployment.trusted_token(moderator=True)}"}
    used, runs = [], []
    for path, label, _, _ in pool:
        if sum(outcomes.values()) == LATENCY_CORRECTIONS:
            break
        answer = predict_http(url, path.read_bytes())
        if answer["label"] == CLASSES[label]:
            continue  # an earlier fine-tune already taught it
        used.append(path)
        sample = answer["sample"]
        started = time.monotonic()
        correction = http_json(
            url, "POST", f"/api/samples/{sample}/corrections/",
            json.dumps({"label": CLASSES[label]}),
            {"Content-Type": "application/json", **authorization},
        )  # fmt: skip
        if correction["training_run"] is None:
            # The other web worker still served the version before the one that took
            # the correction, which reads the drawing right: nothing to learn.
            continue
        run_id = correction["training_run"]["id"]
        run_path = f"/api/training-runs/{run_id}/"
        # Polled every 50 ms: often enough to time it, rarely enough not to slow the worker.
        while (run := http_json(url, "GET", run_path, headers=authorization))["status"] in (
            "queued",
            "running",
        ):
            time.sleep(0.05)
        outcomes[run["status"]] += 1
        if run["status"] != "succeeded":
            continue
        published.append(time.monotonic() - started)
        phases["waiting for the worker"].append(seconds_between(run, "created_at", "started_at"))
        phases["the run"].append(seconds_between(run, "started_at", "finished_at"))
        phases["of which training + gate"].append(run["metrics"]["seconds"])
        runs.append(run["metrics"])
        while predict_http(url, path.read_bytes())["model_version"] != run["result_version"]:
            time.sleep(0.02)
        served.append(time.monotonic() - started)
    deployment.close_processes()
    return {
        "published": published,
        "served": served,
        "outcomes": dict(outcomes),
        "phases": dict(phases),
        "used": used,
        "runs": runs,
    }


def seconds_between(run: dict, start: str, end: str) -> float:
    return (datetime.fromisoformat(run[end]) - datetime.fromisoformat(run[start])).total_seconds()


def correct_in_process(rows) -> None:
    """Send each (path, label) through the same services the API uses, then run the fine-tune."""
    from django.contrib.auth.models import Group, User

    from recognition.services import correct_sample, predict_drawing
    from training.classes import CLASSES
    from training.models import TrainingRun
    from training.services import training_run_execute

    # No broker in this process: the bench runs each fine-tune itself, so say nothing of queueing.
    for name in ("training.services", "training.runs"):
        logging.getLogger(name).setLevel(logging.ERROR)
    writer, _ = User.objects.get_or_create(username="bench-writer")
    writer.groups.add(Group.objects.get(name="Trusted writers"))
    for path, label, *_ in rows:
        outcome = predict_drawing(image_data=path.read_bytes(), source="api")
        correct_sample(sample=outcome.sample, label=CLASSES[label], source="api", author=writer)
    run = TrainingRun.objects.filter(status=TrainingRun.Status.QUEUED).first()
    if run is not None:
        training_run_execute(run_id=run.pk)


def active_accuracy(glyphs, labels) -> float:
    from training.serving import active_model

    active_model.clear()
    probabilities = active_model.get().predict_proba(glyphs)
    return float((probabilities.argmax(1) == labels).mean()) if len(labels) else float("nan")


def measure_adaptation(pool) -> list[tuple[int, float, int]]:
    from training.classes import CLASSES

    style = [row for row in pool if row[0].relative_to(HANDWRITING).parts[0] == STYLE]
    by_class = defaultdict(list)
    for row in style:
        by_class[row[1]].append(row)
    # The classes the model reads worst in this style, with enough images to test on.
    accuracy = {
        label: 1 - np.mean([misread for *_, misread in rows])
        for label, rows in by_class.items()
        if len(rows) >= 12
    }
    worst = sorted(accuracy, key=accuracy.get)[:ADAPT_CLASSES]
    rng = np.random.default_rng(0)
    teach, test = {}, []
    for label in worst:
        rows = by_class[label]
        order = rng.permutation(len(rows))
        misread_first = sorted(order[:], key=lambda i: not rows[i][3])
        teach[label] = [rows[i] for i in misread_first[:5]]
        test += [rows[i] for i in order if i not in misread_first[:5]]
    test_glyphs = np.stack([g for _, _, g, _ in test])
    test_labels = np.array([label for _, label, _, _ in test])
    results = [(0, active_accuracy(test_glyphs, test_labels), len(test))]
    taught = 0
    for k in (1, 3, 5):
        correct_in_process([row for label in worst for row in teach[label][taught:k]])
        taught = k
        results.append((k, active_accuracy(test_glyphs, test_labels), len(test)))
    print("classes taught:", " ".join(CLASSES[label] for label in worst))
    return results


def measure_forgetting(pool, already_used) -> dict:
    from training import nn
    from training.models import ModelVersion
    from training.registry import version_load_anchors, version_load_model

    first = ModelVersion.objects.get(number=1)
    anchors = version_load_anchors(first)
    fixed_glyphs, fixed_labels = anchors["eval_glyphs"], anchors["eval_labels"]
    before = nn.evaluate(version_load_model(first), fixed_glyphs, fixed_labels)["overall"]
    # Misread images first (real corrections), then images the model reads right, labelled
    # right (confirmations by moderators would look the same) to make up the count.
    rows = [r for r in pool if r[0] not in already_used]
    rows = sorted(rows, key=lambda row: not row[3])[:FORGETTING_CORRECTIONS]
    misread = sum(row[3] for row in rows)
    for start in range(0, len(rows), CORRECTIONS_PER_RUN):
        correct_in_process(rows[start : start + CORRECTIONS_PER_RUN])
    after = active_accuracy(fixed_glyphs, fixed_labels)
    versions = ModelVersion.objects.filter(status__in=["active", "retired"]).count()
    rejected = ModelVersion.objects.filter(status="rejected").count()
    return {
        "corrections": len(rows),
        "misread": misread,
        "before": before,
        "after": after,
        "published": versions,
        "rejected": rejected,
    }


def main():
    with Deployment(FINE_TUNE_THREADS=os.environ.get("FINE_TUNE_THREADS", 2)) as deployment:
        os.environ.update(deployment.env)
        import django

        django.setup()
        from training.models import ModelVersion
        from training.registry import version_load_anchors, version_load_model

        first = ModelVersion.objects.get(number=1)
        model = version_load_model(first)
        pool = candidates(model, version_load_anchors(first)["eval_glyphs"])
        misread = [row for row in pool if row[3]]
        print(f"held-out handwriting outside the fixed set: {len(pool)}, misread: {len(misread)}")

        latency = measure_latency(deployment, misread)
        adaptation = measure_adaptation(pool)
        forgetting = measure_forgetting(pool, set(latency["used"]))

    def quantiles(values):
        if len(values) < 2:
            return "n/a"
        cuts = statistics.quantiles(values, n=20)
        return f"p50 {statistics.median(values):.2f} s, p95 {cuts[18]:.2f} s"

    print(f"\n(a) correction -> active, {LATENCY_CORRECTIONS} corrections: {latency['outcomes']}")
    print(f"    published (run succeeded): {quantiles(latency['published'])}")
    print(f"    served by the web process: {quantiles(latency['served'])}")
    for phase, values in latency["phases"].items():
        print(f"    {phase + ':':<27} {quantiles(values)}")
    slowest = max(latency["runs"], key=lambda metrics: metrics["seconds"], default=None)
    if slowest is not None:
        print(
            f"    slowest run: {slowest['seconds']:.2f} s, {slowest['candidates_tried']} "
            f"candidate(s), {slowest['trunk_features_computed']} glyphs through the trunk"
        )
    print(f"\n(b) adaptation on {STYLE} (held-out), {ADAPT_CLASSES} worst classes")
    print(f"    {'k per class':>11} {'accuracy':>9} {'test images':>11}")
    for k, accuracy, count in adaptation:
        print(f"    {k:>11} {100 * accuracy:>8.1f}% {count:>11}")
    f = forgetting
    drop = 100 * (f["before"] - f["after"])
    print(f"\n(c) forgetting after {f['corrections']} more corrections ({f['misread']} misread), "
          f"{f['published']} versions published, {f['rejected']} rejected")  # fmt: skip
    print(f"    fixed evaluation set, v1 -> now: {100 * f['before']:.2f}% -> "
          f"{100 * f['after']:.2f}% "
          f"(drop {drop:.2f} points)")  # fmt: skip


if __name__ == "__main__":
    main()
