"""Fine-tune settings compared on real corrections, without Django, Redis or Celery.

Replays what the worker does for a stream of single corrections: each one is a
held-out handwriting image that the committed default model misreads (uppercase
I/O/S/Z left out, the product reads lowercase), fine-tuned from the current
version with the anchors and earlier corrections as replay, judged by the
worker's gate (1 point against the parent; in total 0.5 point, stricter than the
worker's 1), one candidate each, and published only if it passes. Prints, per
setting: corrections that passed the gate, the median run time, accuracy on the
fixed evaluation set, on the other held-out handwriting, and how many of the
taught images the final model reads right.

    .venv/bin/python bench/finetune_configs.py [--corrections 10] [--threads 1] [--scopes]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.handwriting import heldout_handwriting  # noqa: E402
from training import nn  # noqa: E402
from training.finetune import FineTuneConfig, RootBound, fine_tune, gate  # noqa: E402
from training.trunk import FrozenTrunk  # noqa: E402

DEFAULT_MODEL = ROOT / "training" / "default_model"
SETTINGS = [
    {"trainable": "all", "learning_rate": 3e-4, "steps": 30},
    {"trainable": "head", "learning_rate": 3e-4, "steps": 30},
    {
        "trainable": "head",
        "learning_rate": 3e-4,
        "steps": 30,
        "batch_size": 64,
        "new_fraction": 0.125,
    },
    {"trainable": "head", "learning_rate": 3e-4, "steps": 30, "distill": 10.0},
    {"trainable": "head", "learning_rate": 6e-4, "steps": 30},
    {"trainable": "head", "learning_rate": 1e-3, "steps": 30},
    {"trainable": "head", "learning_rate": 3e-4, "steps": 60},
    {"trainable": "head", "learning_rate": 1e-4, "steps": 60},
]
# What a version stores: the scopes of the classifier that a fine-tune may train.
SCOPES = [
    {"trainable": "head", "learning_rate": 3e-4, "steps": 60},
    {"trainable": "last", "learning_rate": 3e-4, "steps": 60},
    {"trainable": "last", "learning_rate": 1e-3, "steps": 60},
    {"trainable": "last", "learning_rate": 3e-3, "steps": 60},
]
MAX_FORGETTING = 0.01
MAX_TOTAL_FORGETTING = 0.005


def accuracy(model, glyphs, labels) -> float:
    return float((nn.predict_proba(model, glyphs).argmax(1) == labels).mean())


def stream(base, config: dict, taught: np.ndarray, pool, anchors) -> dict:
    glyphs, labels = pool
    model, model_fixed, passed, seconds = base, None, 0, []
    root = RootBound(
        accuracy=accuracy(base, anchors["eval_glyphs"], anchors["eval_labels"]),
        count=len(anchors["eval_labels"]),
        max_drop=MAX_TOTAL_FORGETTING,
    )
    trunk = FrozenTrunk(base)
    for position, index in enumerate(taught):
        earlier = taught[:position]
        started = time.perf_counter()
        if not trunk.shares(model):
            trunk = FrozenTrunk(model)
        candidate = fine_tune(
            model,
            new_glyphs=glyphs[[index]],
            new_labels=labels[[index]],
            replay_glyphs=np.concatenate([anchors["anchor_glyphs"], glyphs[earlier]]),
            replay_labels=np.concatenate([anchors["anchor_labels"], labels[earlier]]),
            config=FineTuneConfig(seed=position, **config),
            trunk=trunk,
        )
        if config.get("trainable", "head") != "all":
            nn.as_stored(candidate, config.get("trainable", "head"))  # judged as stored
        decision = gate(
            parent=model,
            candidate=candidate,
            fixed_glyphs=anchors["eval_glyphs"],
            fixed_labels=anchors["eval_labels"],
            new_glyphs=glyphs[[index]],
            new_labels=labels[[index]],
            max_forgetting=MAX_FORGETTING,
            parent_fixed=model_fixed,
            root=root,
            trunk=trunk,
        )
        seconds.append(time.perf_counter() - started)
        if decision.passed:
            passed, model, model_fixed = passed + 1, candidate, decision.candidate_fixed
    others = np.setdiff1d(np.arange(len(labels)), taught)
    return {
        "passed": passed,
        "seconds": float(np.median(seconds)),
        "fixed": accuracy(model, anchors["eval_glyphs"], anchors["eval_labels"]),
        "others": accuracy(model, glyphs[others], labels[others]),
        "taught": accuracy(model, glyphs[taught], labels[taught]),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corrections", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--scopes", action="store_true", help="compare what a fine-tune trains (and stores)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = nn.deserialize_state((DEFAULT_MODEL / "weights.pt").read_bytes())
    with np.load(DEFAULT_MODEL / "anchors.npz") as archive:
        anchors = {key: archive[key] for key in archive.files}
    rows = heldout_handwriting(anchors["eval_glyphs"])
    pool = np.stack([glyph for *_, glyph in rows]), np.array([label for _, label, _ in rows])
    misread = np.flatnonzero(nn.predict_proba(base, pool[0]).argmax(1) != pool[1])
    taught = np.random.default_rng(0).permutation(misread)[: args.corrections]
    others = np.setdiff1d(np.arange(len(pool[1])), taught)
    print(f"{len(pool[1])} held-out images, {len(misread)} misread, teaching {len(taught)}")
    fixed_before = accuracy(base, anchors["eval_glyphs"], anchors["eval_labels"])
    others_before = accuracy(base, pool[0][others], pool[1][others])
    print(f"before: fixed set {100 * fixed_before:.2f}%, others {100 * others_before:.2f}%")
    print(f"{'setting':<58} {'passed':>6} {'s/run':>6} {'fixed':>7} {'others':>7} {'taught':>7}")
    for config in SCOPES if args.scopes else SETTINGS:
        result = stream(base, config, taught, pool, anchors)
        print(
            f"{json.dumps(config):<58} {result['passed']:>3}/{len(taught):<2} "
            f"{result['seconds']:>6.2f} {100 * result['fixed']:>6.2f}% "
            f"{100 * result['others']:>6.2f}% {100 * result['taught']:>6.1f}%"
        )


if __name__ == "__main__":
    main()
