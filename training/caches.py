"""What a training worker process remembers from one run to the next.

A chain of head-only fine-tunes keeps one trunk and one pretrained root, and each
published candidate is the next run's parent: remembering the trunk's features,
the root's score and each version's score on a fixed set makes a warm worker's
runs quick. Everything here is per process and safe to forget.
"""

import hashlib
from collections.abc import Callable

from . import nn, registry, selectors
from .models import ModelVersion
from .replay import GlyphSet
from .trunk import FrozenTrunk

# Fixed-set scores kept: the versions a few runs in a row compare against.
FIXED_SCORES_KEPT = 8


class Remembered:
    """Up to ``keep`` values by key, the oldest forgotten first."""

    def __init__(self, *, keep: int):
        self.keep = keep
        self._values: dict = {}

    def get(self, key, compute: Callable):
        if key not in self._values:
            self.put(key, compute())
        return self._values[key]

    def put(self, key, value):
        self._values[key] = value
        while len(self._values) > self.keep:
            del self._values[next(iter(self._values))]

    def clear(self):
        self._values.clear()


_fixed_scores = Remembered(keep=FIXED_SCORES_KEPT)
_root_scores = Remembered(keep=1)
_trunks = Remembered(keep=1)


def frozen_trunk(model: nn.GlyphNet) -> FrozenTrunk:
    """The trunk of ``model`` with the features this process already computed through it."""
    return _trunks.get(nn.trunk_digest(model), lambda: FrozenTrunk(model))


def fixed_set_digest(fixed: GlyphSet) -> str:
    return hashlib.sha256(fixed.glyphs.tobytes() + fixed.labels.tobytes()).hexdigest()


def fixed_score(*, weights_sha256: str, fixed_digest: str, compute: Callable) -> dict:
    """A version's evaluation on a fixed set, computed once per process."""
    return _fixed_scores.get((weights_sha256, fixed_digest), compute)


def remember_fixed_score(*, weights_sha256: str, fixed_digest: str, score: dict):
    """Keep a candidate's score: once published, it is the next run's parent."""
    _fixed_scores.put((weights_sha256, fixed_digest), score)


def root_accuracy(version: ModelVersion, anchors: dict, trunk: FrozenTrunk) -> float:
    """Accuracy of the chain's first version (which made these anchors) on their eval glyphs."""
    root = selectors.version_chain_root(version=version)

    def evaluate() -> float:
        model = registry.version_load_model(root)
        return trunk.evaluate(model, anchors["eval_glyphs"], anchors["eval_labels"])["overall"]

    return _root_scores.get(root.sha256, evaluate)


def forget_all():
    """Forget everything, as a new worker process would start."""
    for remembered in (_fixed_scores, _root_scores, _trunks):
        remembered.clear()
