"""Personal models on real writers never trained on: UNIPEN strokes drawn as the page draws them.

Writers with at least ten classes written twice (digits and lowercase letters).
Test writers are the ones ``training.strokes`` holds out of pretraining (whole
writers); the others choose the personal model's threshold and gain, then the
floor from which a label the writer corrected an answer to is offered beside it
(``--tune``, in process). Test writers go through the real API as one token client with one
``writer`` per person, drawn by ``training.strokes.draw`` as the page's canvas
draws (a 280 px canvas at 2x). Each draws every such class once (the first
instance, at a random size, place and pen width), corrects each misread and
confirms each right answer (the page's one tap either way); then draws each
class again from the second recording at another size, place and pen width.
Reported: the first pass with the memory growing as it goes, and on the second
instances the shared model ("before"), the writer's own answers ("after"; when
wrong, whether the look-alike buttons offer the label) and an unused writer id
(must be identical to the shared model); the share of
corrections right on the very next prediction; request latency with and
without a personal model. No Celery worker runs: the shared model stays put.

``--misses PNG`` writes, in process, a sheet of the test writers' corrected classes
that their second drawing still misreads (both drawings side by side), to be read
by eye.

    .venv/bin/python bench/personal.py [--writers 60] [--tune | --ceiling | --misses PNG]
"""

import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import sheets
from bench.server import Deployment
from training import strokes as strokes_module

STROKES = (
    Path(__file__).resolve().parent.parent.parent / "shared/data/strokes/unipen_r01v07.jsonl.gz"
)
CANVAS = 280  # CSS pixels, as on the page
RATIO = 2  # the page's backing store on a 2x screen
MIN_CLASSES = 10


def load_writers() -> dict[str, dict[str, list]]:
    """Writer -> label -> their first two recordings of it, for writers with enough classes."""
    recordings: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    with gzip.open(STROKES, "rt") as lines:
        for line in lines:
            row = json.loads(line)
            if row["case"] in ("lower", "digit"):
                recordings[row["writer"]][row["label"]].append(row["strokes"])
    writers = {}
    # In an order that mixes UNIPEN's sources (their names start with the source).
    for name, by_label in sorted(recordings.items(), key=lambda item: _hash(item[0], "order")):
        twice = {label: strokes[:2] for label, strokes in by_label.items() if len(strokes) >= 2}
        if len(twice) >= MIN_CLASSES:
            writers[name] = twice
    return writers


def _hash(name: str, purpose: str) -> float:
    digest = hashlib.sha1(f"personal-{purpose}:{name}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def is_validation_writer(name: str) -> bool:
    """Test writers are the ones pretraining holds out; the others may tune."""
    return not strokes_module.is_heldout_writer(name)


def draw_instance(strokes, rng: np.random.Generator) -> bytes:
    """A recording at a random size, place and pen width, as one person draws on the page."""
    box = rng.uniform(110, 220)
    pen = rng.uniform(8, 24)
    margin = pen / 2 + 4
    arrays = [np.asarray(stroke, np.float32).reshape(-1, 2) for stroke in strokes if stroke]
    extent = np.concatenate(arrays).max(axis=0) / 1000 * box
    left = rng.uniform(margin, max(margin, CANVAS - extent[0] - margin))
    top = rng.uniform(margin, max(margin, CANVAS - extent[1] - margin))
    page = strokes_module.Pen(
        canvas=CANVAS * RATIO, width=pen * RATIO, left=left * RATIO, top=top * RATIO,
        size=box * RATIO,
    )  # fmt: skip
    buffer = io.BytesIO()
    strokes_module.draw(arrays, page).save(buffer, format="PNG")
    return buffer.getvalue()


def writer_drawings(writers: dict, seed: int) -> dict[str, dict[str, tuple[bytes, bytes]]]:
    """Writer -> label -> (first instance PNG, second instance PNG)."""
    drawings = {}
    for name, by_label in writers.items():
        rng = np.random.default_rng([seed, int(_hash(name, "drawing") * 2**32)])
        drawings[name] = {
            label: (draw_instance(first, rng), draw_instance(second, rng))
            for label, (first, second) in sorted(by_label.items())
        }
    return drawings


# --- Choosing the threshold and gain on validation writers (no Django) -------------


def _weights() -> Path:
    return Path(__file__).resolve().parent.parent / "training/default_model/weights.pt"


def _served():
    from training import nn

    return nn.for_inference(nn.deserialize_state(_weights().read_bytes()))


def writer_features(served, drawings: dict) -> list[list[tuple]]:
    """Per writer, per class: (class, first rows, first hidden, first logits, second
    hidden, second logits), as ``writers.prototypes.drawn`` sees the page's PNGs."""
    from training.classes import CLASS_INDEX
    from training.preprocessing import preprocess_image
    from writers import prototypes as personal

    def features(png: bytes):
        seen = personal.drawn(served, preprocess_image(Image.open(io.BytesIO(png))))
        return seen.rows[0], seen.hidden[0], seen.logits[0]

    writers = []
    for by_label in drawings.values():
        rows = []
        for label, (first, second) in by_label.items():
            (r1, h1, l1), (_, h2, l2) = features(first), features(second)
            rows.append((CLASS_INDEX[label], r1, h1, l1, h2, l2))
        writers.append(rows)
    print(f"writers {len(writers)}, classes drawn {sum(map(len, writers))}")
    return writers


def ceiling(writers: list[list[tuple]]) -> None:
    """What one example of each class can do for the classes the shared model misread:
    how often the writer's own first drawing is the nearest of all their first drawings
    to the second one, and how often the shared model ranks the class in its top three."""
    from training.canvas_eval import SAME_SHAPE
    from writers.prototypes import unit

    misread = nearest_own = top3 = inside_same_shape = 0
    for rows in writers:
        labels = np.array([row[0] for row in rows])
        firsts = unit(np.stack([row[2] for row in rows]))
        seconds = unit(np.stack([row[4] for row in rows]))
        nearest = labels[(seconds @ firsts.T).argmax(axis=1)]
        for index, (label, _, _, first_logits, _, logits) in enumerate(rows):
            said = int(first_logits.argmax())
            if said == label:
                continue
            misread += 1
            nearest_own += nearest[index] == label
            top3 += label in np.argsort(logits)[::-1][:3]
            inside_same_shape += SAME_SHAPE[label, said]
    print(
        f"classes misread on their first drawing: {misread}; on the second drawing, "
        f"the writer's own first drawing is the nearest of theirs {nearest_own / misread:.1%}, "
        f"the shared model's top three hold the class {top3 / misread:.1%}; "
        f"misreads inside a same-shape set {inside_same_shape / misread:.1%}"
    )


def _memory_of(rows: list[tuple]):
    """The writer's personal model once they have labelled every first drawing."""
    from training.classes import CLASSES
    from writers.prototypes import Prototypes

    memory = Prototypes.empty()
    for label, row, *_ in rows:
        memory = memory.with_row(row, CLASSES[label])
    return memory


def tune(writers: list[list[tuple]], bias: np.ndarray) -> dict[str, float]:
    """The chosen threshold and gain, as keyword arguments of ``Prototypes.bonus``."""
    from training.classes import CLASSES
    from writers import prototypes as personal

    print("threshold  gain  first pass: before -> after   second: corrected      others      all")
    results = []
    for threshold in (0.6, 0.65, 0.7, 0.75, 0.8):
        for gain in (8.0, 16.0, 32.0, 48.0):
            setting = {"threshold": threshold, "gain": gain}
            # Drawn, right before, right after: first pass, corrected classes, the others.
            counts = np.zeros((3, 3))
            for rows in writers:
                # The writer confirms each right answer and corrects each misread, so
                # the first pass meets a memory of the classes drawn so far.
                memory = personal.Prototypes.empty()
                for label, row, hidden, logits, _, _ in rows:
                    after = (logits + memory.bonus(hidden, bias, **setting)).argmax()
                    counts[0] += (1, logits.argmax() == label, after == label)
                    memory = memory.with_row(row, CLASSES[label])
                for label, _, _, first_logits, hidden, logits in rows:
                    group = 1 if first_logits.argmax() != label else 2
                    after = (logits + memory.bonus(hidden, bias, **setting)).argmax()
                    counts[group] += (1, logits.argmax() == label, after == label)
            first, corrected, others = (counts[:, 1:].T / counts[:, 0]).T
            second = counts[1:, 2].sum() / counts[1:, 0].sum()
            # The measure first (corrected classes on their next drawing), then
            # every second drawing, then the gentler gain.
            safe = first[0] - first[1] <= 0.01 and others[1] >= others[0]
            results.append(((safe, corrected[1], second, -gain), threshold, gain))
            print(
                f"{threshold:9.2f} {gain:5.0f}  {first[0]:10.1%} -> {first[1]:6.1%}"
                f"     {corrected[0]:5.1%} -> {corrected[1]:5.1%}"
                f"  {others[0]:5.1%} -> {others[1]:5.1%}  {second:6.1%}"
            )
    _, threshold, gain = max(results)
    print(
        "chosen (most right corrected classes on their second drawing, the first pass down "
        "at most 1 point and the other classes not down; then most right second drawings): "
        f"threshold {threshold}, gain {gain:.0f}"
    )
    return {"threshold": threshold, "gain": gain}


def tune_taught_floor(writers: list[list[tuple]], served, setting: dict[str, float]) -> None:
    """How much probability a label the writer corrected an answer to needs to be offered
    beside that answer: the most corrected classes right or one tap away, with answers
    that were right anyway asking "x or y?" at most a point more often."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recognizer_site.settings")
    django.setup()  # recognition.lookalikes reads versions' pairs through the ORM
    from recognition import lookalikes
    from training.classes import CLASSES
    from writers import prototypes as personal

    metrics = json.loads((_weights().parent / "version.json").read_text())["metrics"]
    pairs = lookalikes.pairs_from_metrics(metrics)
    bias = personal.hidden_bias(served)
    print("taught floor   corrected: right or offered   asked on right answers")
    results = []
    for floor in (None, 0.005, 0.01, 0.02, 0.03, 0.05):
        taught_floor = floor if floor is not None else 2.0  # None: never
        counts = np.zeros(4)  # corrected drawn, corrected right or offered, asked right, all
        for rows in writers:
            memory = _memory_of(rows)
            taught = personal.taught(served, memory, bias)
            for label, _, _, first_logits, hidden, logits in rows:
                probabilities = personal.softmax(logits + memory.bonus(hidden, bias, **setting))
                offered = lookalikes.lookalikes_of(
                    probabilities, pairs, taught, taught_floor=taught_floor
                )
                right = probabilities.argmax() == label
                if first_logits.argmax() != label:
                    counts[:2] += (1, right or CLASSES[label] in offered)
                counts[2:] += (right and bool(offered), 1)
        reached, asked = counts[1] / counts[0], counts[2] / counts[3]
        results.append((floor, reached, asked))
        print(f"{floor!s:>12}   {reached:29.1%}   {asked:22.1%}")
    never = results[0][2]
    floor = max(results[1:], key=lambda r: (r[2] <= never + 0.01, r[1], -r[2]))[0]
    print(f"chosen taught floor: {floor}")


def misses(writers: list[list[tuple]], drawings: dict, bias: np.ndarray, path: Path) -> None:
    """The corrected classes whose second drawing the writer's memory still misreads."""
    from training.classes import CLASSES

    entries, corrected = [], 0
    for by_label, rows in zip(drawings.values(), writers, strict=True):
        memory = _memory_of(rows)
        for (first, second), (label, _, _, first_logits, hidden, logits) in zip(
            by_label.values(), rows, strict=True
        ):
            if first_logits.argmax() == label:
                continue
            corrected += 1
            after = (logits + memory.bonus(hidden, bias)).argmax()
            if after != label:
                pictures = [sheets.on_white(Image.open(io.BytesIO(png))) for png in (first, second)]
                said = CLASSES[first_logits.argmax()]
                entries.append((pictures, f"{CLASSES[label]} 1st>{said} 2nd>{CLASSES[after]}"))
    sheets.sheet(entries, columns=4).save(path)
    print(f"corrected classes {corrected}, still misread on the second drawing {len(entries)}")


# --- The test writers through the real API -------------------------------------------


def run(drawings: dict) -> dict:
    import django

    django.setup()
    from django.contrib.auth.models import User
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    from writers.models import PersonalModel
    from writers.prototypes import GAIN, THRESHOLD

    app = APIClient(HTTP_HOST="127.0.0.1")
    app.credentials(
        HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=User.objects.create_user('app')).key}"
    )
    anonymous = APIClient(HTTP_HOST="127.0.0.1")

    def predict(client, png: bytes, **fields) -> tuple[dict, float]:
        body = {"image": base64.b64encode(png).decode(), **fields}
        started = time.perf_counter()
        response = client.post("/api/predictions/", body, format="json")
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 201, response.content
        return response.json(), elapsed

    for png, _ in list(next(iter(drawings.values())).values())[:8]:  # warm up
        predict(anonymous, png)

    tallies = defaultdict(int)
    with_personal, without, no_writer = [], [], []
    for name, by_label in drawings.items():
        writer = f"unipen:{name}"[:64]
        misread = set()
        for label, (first, _) in by_label.items():
            answer, _ = predict(app, first, writer=writer)
            tallies["first_drawn"] += 1
            tallies["first_before"] += predict(anonymous, first)[0]["label"] == label
            tallies["first_after"] += answer["label"] == label
            # One tap: "Right" confirms, a label corrects; both teach the writer's model.
            response = app.post(
                f"/api/samples/{answer['sample']}/corrections/", {"label": label}, format="json"
            )
            assert response.status_code == 201, response.content
            if answer["label"] != label:
                misread.add(label)
                again, _ = predict(app, first, writer=writer)
                tallies["next_right"] += again["label"] == label
        tallies["corrections"] += len(misread)
        for index, (label, (_, second)) in enumerate(by_label.items()):
            shared, shared_ms = predict(anonymous, second)
            # Alternate which goes first, so neither always meets warmer caches.
            order = [("mine", writer), ("unused", f"unused:{name}"[:64])]
            timed = {}
            for kind, key in order if index % 2 else order[::-1]:
                timed[kind] = predict(app, second, writer=key)
            (mine, mine_ms), (unused, unused_ms) = timed["mine"], timed["unused"]
            group = "corrected" if label in misread else "others"
            tallies[f"{group}_drawn"] += 1
            tallies[f"{group}_before"] += shared["label"] == label
            tallies[f"{group}_after"] += mine["label"] == label
            # Or the page's "1 or l?" buttons hold the label: one tap, no drawing again.
            tallies[f"{group}_offered"] += mine["label"] != label and label in mine["lookalikes"]
            tallies["asked_before"] += bool(shared["lookalikes"])
            tallies["asked_after"] += bool(mine["lookalikes"])
            tallies["unused_identical"] += (unused["top"], unused["label"]) == (
                shared["top"],
                shared["label"],
            ) and not unused["personal"]
            tallies["drawn"] += 1
            with_personal.append(mine_ms)
            without.append(unused_ms)
            no_writer.append(shared_ms)
    sizes = [m.size_bytes for m in PersonalModel.objects.filter(writer__startswith="token:")]
    return {
        "threshold": THRESHOLD,
        "gain": GAIN,
        "writers": len(drawings),
        **tallies,
        "p50_with_ms": statistics.median(with_personal),
        "p50_without_ms": statistics.median(without),
        "p50_no_writer_ms": statistics.median(no_writer),
        "size_median_kib": statistics.median(sizes) / 1024 if sizes else 0.0,
        "size_max_kib": max(sizes) / 1024 if sizes else 0.0,
    }


def report(r: dict) -> None:
    def share(key: str, total: str) -> str:
        return f"{r[key] / max(r[total], 1):6.1%} ({r[key]}/{r[total]})"

    print(
        f"test writers {r['writers']}, second instances {r['drawn']}, "
        f"threshold {r['threshold']}, gain {r['gain']:.0f}"
    )
    print(
        f"first pass, memory growing: shared {share('first_before', 'first_drawn')}, "
        f"the writer's {share('first_after', 'first_drawn')}"
    )
    print(f"corrections (misreads of the first instances): {r['corrections']}")
    print(f"right on the very next prediction:  {share('next_right', 'corrections')}")
    print(f"corrected classes, new instance: before {share('corrected_before', 'corrected_drawn')}")
    print(f"                                 after  {share('corrected_after', 'corrected_drawn')}")
    print(
        f"          or else among its look-alikes {share('corrected_offered', 'corrected_drawn')}"
    )
    print(f"the writer's other classes:      before {share('others_before', 'others_drawn')}")
    print(f"                                 after  {share('others_after', 'others_drawn')}")
    total_before = r["corrected_before"] + r["others_before"]
    total_after = r["corrected_after"] + r["others_after"]
    print(
        f"all new instances: before {total_before / r['drawn']:.1%}, "
        f"after {total_after / r['drawn']:.1%}"
    )
    print(
        f"answers asking 'x or y?': before {share('asked_before', 'drawn')}, "
        f"after {share('asked_after', 'drawn')}"
    )
    print(f"unused writer id identical to the shared model: {share('unused_identical', 'drawn')}")
    print(
        f"request p50 with a personal model {r['p50_with_ms']:.2f} ms, with an unused id "
        f"{r['p50_without_ms']:.2f} ms: +{r['p50_with_ms'] - r['p50_without_ms']:.2f} ms; "
        f"without any writer (no token) {r['p50_no_writer_ms']:.2f} ms"
    )
    print(
        f"personal model size: median {r['size_median_kib']:.1f} KiB, "
        f"max {r['size_max_kib']:.1f} KiB"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--writers", type=int, default=60, help="test writers (or validation, with --tune)"
    )
    parser.add_argument(
        "--tune", action="store_true", help="choose threshold and gain on validation writers"
    )
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="on validation writers: what one example of each misread class can do",
    )
    parser.add_argument("--misses", help="write a sheet of the test writers' missed corrections")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    on_validation = args.tune or args.ceiling
    writers = load_writers()
    chosen = {
        name: by_label
        for name, by_label in writers.items()
        if is_validation_writer(name) == on_validation
    }
    chosen = dict(list(chosen.items())[: args.writers])
    drawings = writer_drawings(chosen, args.seed)
    if on_validation or args.misses:
        from writers.prototypes import hidden_bias

        served = _served()
        writers = writer_features(served, drawings)
        if args.misses:
            misses(writers, drawings, hidden_bias(served), Path(args.misses))
        elif args.ceiling:
            ceiling(writers)
        else:
            tune_taught_floor(writers, served, tune(writers, hidden_bias(served)))
        return
    deployment = Deployment()
    try:
        os.environ.update(deployment.env)
        report(run(drawings))
    finally:
        deployment.close()


if __name__ == "__main__":
    main()
