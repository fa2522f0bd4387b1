"""An anonymous client tries to steer the shared model, against a real deployment.

gunicorn (2 workers), a Celery worker with beat, and Redis, as `make run` starts
them. Under LEARN_FROM=trusted (the default) the client draws 60 MNIST test 7s as
canvas PNGs, labels each "1", and repeats one correction 20 times; the shared
model's reading of 200 other 7s, the versions and the bytes of weights are
compared before and after. Under LEARN_FROM=everyone (a private install) a misread
drawing is corrected 20 times: the repeats must add no version. The size of that
fine-tune's stored file (the tensors it trained) is set beside what the whole head
(stored until deltas) and a full set of weights (stored before head-only versions)
cost. Last, a client that sends a
new X-Forwarded-For with every request meets the same anonymous throttle.

    .venv/bin/python bench/abuse.py
"""

import base64
import io
import json
import random
import sys
import time
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.handwriting import HANDWRITING
from bench.server import Deployment, call
from training import datasets
from training.classes import CLASSES

MNIST = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist"
HOSTILE = 60
REPEATS = 20
MEASURED = 200
SETTLE_SECONDS = 25  # two beat sweeps and a fine-tune, had anything been queued


def canvas_png(digit: np.ndarray) -> bytes:
    """An MNIST digit as the page would send it: dark ink on white, 280x280."""
    image = Image.fromarray(255 - digit, mode="L").resize((280, 280), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


class ScriptCookies(DefaultCookiePolicy):
    """A script sends its cookies back over plain HTTP too, "Secure" or not."""

    def return_ok_secure(self, cookie, request):
        return True


# The hostile client draws as the page does and keeps its session cookie, as any script
# can: it may then label the drawings it made, and only those.
HOSTILE_COOKIES = CookieJar(policy=ScriptCookies())


def predict(url: str, png: bytes, headers: dict | None = None) -> tuple[int, dict]:
    body = {"image": base64.b64encode(png).decode(), "source": "page"}
    return call(url, "/api/predictions/", body, headers=headers, cookies=HOSTILE_COOKIES)


def correct(url: str, sample: int, label: str) -> tuple[int, dict]:
    return call(
        url, f"/api/samples/{sample}/corrections/", {"label": label}, cookies=HOSTILE_COOKIES
    )


def shared_reading(url: str, png: bytes) -> str:
    return call(url, "/api/predictions/", {"image": base64.b64encode(png).decode()})[1]["label"]


def sevens() -> list[bytes]:
    from torchvision.datasets import MNIST as TorchMNIST

    test = TorchMNIST(str(MNIST), train=False)
    images = test.data.numpy()[test.targets.numpy() == 7]
    return [canvas_png(image) for image in images[: HOSTILE + MEASURED]]


def reads_seven(url: str, measured: list[bytes]) -> float:
    # Another person's reading: the shared model's, not the hostile client's own model.
    labels = [shared_reading(url, png) for png in measured]
    return sum(label == "7" for label in labels) / len(labels)


def store(deployment: Deployment) -> dict:
    rows = deployment.manage(
        "shell",
        "-c",
        "from training.models import ModelVersion\n"
        "import json\n"
        "print(json.dumps([[v.number, v.status, v.weights.name, v.base_id is not None] "
        "for v in ModelVersion.objects.order_by('number')]))",
    )
    versions = json.loads(rows.strip().splitlines()[-1])
    media = Path(deployment.env["MEDIA_ROOT"])
    return {
        "versions": versions,
        "bytes": sum((media / name).stat().st_size for _, _, name, _ in versions),
    }


def start(deployment: Deployment) -> str:
    deployment.start_redis()
    deployment.start_worker(beat=True)
    return deployment.start_web(workers=2)


def trusted_run(images: list[bytes]) -> None:
    hostile, measured = images[:HOSTILE], images[HOSTILE:]
    with Deployment(LEARN_FROM="trusted") as deployment:
        url = start(deployment)
        before = store(deployment)
        accuracy_before = reads_seven(url, measured)
        states: dict[str, int] = {}
        runs = set()
        for png in hostile:
            sample = predict(url, png)[1]["sample"]
            status, answer = correct(url, sample, "1")
            assert status == 201, answer
            states[answer["training_state"]] = states.get(answer["training_state"], 0) + 1
            if answer["training_run"]:
                runs.add(answer["training_run"]["id"])
        for _ in range(REPEATS):
            status, answer = correct(url, sample, "1")
            assert status == 201, answer
            states[answer["training_state"]] = states.get(answer["training_state"], 0) + 1
        time.sleep(SETTLE_SECONDS)
        after = store(deployment)
        accuracy_after = reads_seven(url, measured)
    print(f"LEARN_FROM=trusted: an anonymous client labels {HOSTILE} MNIST 7s '1', "
          f"then repeats one correction {REPEATS} times")  # fmt: skip
    print(f"  corrections by state: {states}; training runs queued: {len(runs)}")
    print(f"  the shared model reads {MEASURED} other 7s: {accuracy_before:.1%} before, "
          f"{accuracy_after:.1%} after")  # fmt: skip
    print(f"  versions {len(before['versions'])} -> {len(after['versions'])} "
          f"({len(after['versions']) - len(before['versions'])} new), "
          f"new weights {after['bytes'] - before['bytes']} bytes")  # fmt: skip


def misread_drawings(url: str):
    """Held-out real handwriting the default model misreads: corrections that teach."""
    for path, label in datasets.heldout_files(HANDWRITING):
        png = path.read_bytes()
        if CLASSES[label] in "IOSZ":
            continue
        if predict(url, png)[1]["label"] != CLASSES[label]:
            yield png, CLASSES[label]


def wait_for_run(url: str, run_id: int, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while (status := call(url, f"/api/training-runs/{run_id}/")[1]["status"]) in (
        "queued",
        "running",
    ):
        if time.monotonic() > deadline:
            raise RuntimeError(f"training run {run_id} did not finish")
        time.sleep(0.5)
    return status


def everyone_run() -> None:
    with Deployment(LEARN_FROM="everyone") as deployment:
        url = start(deployment)
        before = store(deployment)
        # The first drawing whose correction a fine-tune learns (the gate may refuse one).
        tried = 0
        for png, label in misread_drawings(url):
            tried += 1
            sample = predict(url, png)[1]["sample"]
            answer = correct(url, sample, label)[1]
            if wait_for_run(url, answer["training_run"]["id"]) == "succeeded":
                break
        first = store(deployment)
        states, runs = {}, set()
        for _ in range(REPEATS - 1):
            status, answer = correct(url, sample, label)
            assert status == 201, answer
            states[answer["training_state"]] = states.get(answer["training_state"], 0) + 1
            if answer["training_run"]:
                runs.add(answer["training_run"]["id"])
        time.sleep(SETTLE_SECONDS)
        after = store(deployment)
        known = {number for number, *_ in before["versions"]}
        new = [v for v in first["versions"] if v[0] not in known]
        media = Path(deployment.env["MEDIA_ROOT"])
        sizes = []
        for number, status, name, delta in new:
            earlier = deployment.manage(
                "shell",
                "-c",
                "from training import nn, registry\n"
                "from training.models import ModelVersion\n"
                f"v = ModelVersion.objects.get(number={number})\n"
                "model = registry.version_load_model(v)\n"
                "head = nn.serialize_delta(model, names=nn.STORED['head'], base_sha256=v.sha256)\n"
                "print(len(head), len(nn.serialize_state(model)))",
            )
            head, full = map(int, earlier.strip().splitlines()[-1].split())
            sizes.append((number, status, delta, (media / name).stat().st_size, head, full))
    print(f"\nLEARN_FROM=everyone: a misread drawing (the {tried}. tried) corrected to {label!r}, "
          f"then the same correction {REPEATS - 1} more times")  # fmt: skip
    print(f"  the first: versions {len(before['versions'])} -> {len(first['versions'])}")
    print(f"  the repeats: {states}, training runs queued {len(runs)}, versions "
          f"{len(first['versions'])} -> {len(after['versions'])} "
          f"({len(after['versions']) - len(first['versions'])} added)")  # fmt: skip
    for number, status, delta, stored, head, full in sizes:
        kind = "the tensors it trained" if delta else "full weights"
        print(f"  v{number} ({status}) stores {stored:,} bytes ({kind}); the whole head at "
              f"half precision, as head-only fine-tunes stored until deltas: {head:,} bytes "
              f"({head / stored:.0f}x); a full fp32 set, as every fine-tune stored before: "
              f"{full:,} bytes ({full / stored:.0f}x)")  # fmt: skip


def throttle_run() -> None:
    rate = 10
    with Deployment(THROTTLE_ANON=f"{rate}/min") as deployment:
        deployment.start_redis()
        url = deployment.start_web(workers=2)
        png = canvas_png(np.zeros((28, 28), np.uint8) + np.eye(28, dtype=np.uint8) * 255)
        rng = random.Random(0)
        codes = []
        for _ in range(3 * rate):
            spoofed = ".".join(str(rng.randrange(1, 255)) for _ in range(4))
            codes.append(predict(url, png, {"X-Forwarded-For": spoofed})[0])
    print(f"\nThrottle {rate}/min, NUM_PROXIES=0, a new X-Forwarded-For on each of "
          f"{len(codes)} requests: {codes.count(201)} answered, "
          f"{codes.count(429)} refused (429)")  # fmt: skip


def main():
    images = sevens()
    trusted_run(images)
    everyone_run()
    throttle_run()


if __name__ == "__main__":
    main()
