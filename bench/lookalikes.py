"""Choose the look-alike margin on validation handwriting, and show what each margin does.

Validation images are the handwriting folder's training side's validation share
(``datasets.split_validation``): no version trains on them and no report is made
on them. For each margin: how often an answer offers look-alikes, and how many of
the misreads inside a look-alike pair the offer holds the right label for. The
product uses the smallest margin that offers two thirds of those misreads.

    .venv/bin/python bench/lookalikes.py
"""

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recognizer_site.settings")

import django

django.setup()

from bench.handwriting import HANDWRITING  # noqa: E402
from recognition import lookalikes  # noqa: E402
from training import datasets, nn  # noqa: E402
from training.classes import CLASSES  # noqa: E402

MODEL = Path(__file__).resolve().parent.parent / "training" / "default_model" / "weights.pt"
MARGINS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)


def main():
    data = datasets.load_image_folder(HANDWRITING)
    data = datasets.drop_uppercase_digit_lookalikes(data)
    train, _ = datasets.split_heldout(data)
    _, validation = datasets.split_validation(train)
    model = nn.deserialize_state(MODEL.read_bytes())
    probabilities = nn.served_proba(model, validation.glyphs)
    metrics = __import__("json").loads((MODEL.parent / "version.json").read_text())["metrics"]
    pairs = lookalikes.pairs_from_metrics(metrics)
    predicted = probabilities.argmax(1)
    truth = validation.labels
    in_pair_misread = np.array(
        [
            p != t and frozenset((CLASSES[p], CLASSES[t])) in pairs
            for p, t in zip(predicted, truth, strict=True)
        ]
    )
    print(f"validation drawings {len(truth)}, exact {np.mean(predicted == truth):.2%}")
    print(f"misreads inside a look-alike pair: {in_pair_misread.sum()}")
    print("pairs:", " ".join(sorted("".join(sorted(pair)) for pair in pairs)))
    chosen = None
    print("margin  offered  pair-misreads offered  right-in-answer")
    saved = lookalikes.MARGIN
    for margin in MARGINS:
        lookalikes.MARGIN = margin
        offers = [lookalikes.lookalikes_of(row, pairs) for row in probabilities]
        offered = np.array([bool(offer) for offer in offers])
        right = np.array(
            [
                CLASSES[t] in offer if offer else p == t
                for offer, p, t in zip(offers, predicted, truth, strict=True)
            ]
        )
        covered = (offered & in_pair_misread).sum()
        print(
            f"{margin:6.2f}  {offered.mean():7.2%}  {covered:4d} of {in_pair_misread.sum():4d}"
            f"            {right.mean():7.2%}"
        )
        if chosen is None and covered * 3 >= 2 * in_pair_misread.sum():
            chosen = margin
    print(f"smallest margin that offers two thirds of the pair misreads: {chosen}")
    print(f"recognition.lookalikes.MARGIN is {saved}")
    lookalikes.MARGIN = saved


if __name__ == "__main__":
    main()
