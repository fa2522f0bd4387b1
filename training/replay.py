"""Choosing what a fine-tune trains and is judged on.

Three sources: the run's new corrections; a class-balanced replay of earlier
labelled user samples; and the anchor glyphs stored with the pretrained model.
One user sample in ``HELDOUT_EVERY`` (by id) is never trained on and joins the
pretraining hold-out in the fixed evaluation set.
"""

from dataclasses import dataclass

import numpy as np
from django.db.models.functions import Mod

from recognition import selectors
from recognition.models import Correction

from .classes import CLASS_INDEX


@dataclass(frozen=True)
class GlyphSet:
    glyphs: np.ndarray
    labels: np.ndarray
    sample_ids: tuple[int, ...] = ()

    @classmethod
    def empty(cls) -> "GlyphSet":
        return cls(np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64))

    def __len__(self):
        return len(self.labels)

    def __add__(self, other: "GlyphSet") -> "GlyphSet":
        return GlyphSet(
            np.concatenate([self.glyphs, other.glyphs]),
            np.concatenate([self.labels, other.labels]),
            self.sample_ids + other.sample_ids,
        )


def _glyph_set(rows) -> GlyphSet:
    rows = list(rows)
    if not rows:
        return GlyphSet.empty()
    ids, labels, glyphs = zip(*rows, strict=True)
    return GlyphSet(
        np.stack([np.frombuffer(bytes(g), np.uint8).reshape(28, 28) for g in glyphs]),
        np.array([CLASS_INDEX[label] for label in labels], np.int64),
        tuple(ids),
    )


def new_corrections_set(corrections) -> GlyphSet:
    """The corrected samples, each once, with their current label."""
    sample_ids = {c.sample_id for c in corrections}
    samples = selectors.samples_trainable().filter(pk__in=sample_ids).order_by("pk")
    return _glyph_set(samples.values_list("pk", "label", "glyph"))


def _with_bucket(every: int):
    return selectors.samples_trainable().annotate(bucket=Mod("id", every))


def replay_set(*, exclude_ids, per_class: int, every: int, seed: int) -> GlyphSet:
    """Up to ``per_class`` earlier labelled samples of each class, drawn at random."""
    candidates = (
        _with_bucket(every).exclude(bucket=0).exclude(pk__in=exclude_ids).values_list("pk", "label")
    )
    by_class: dict[str, list[int]] = {}
    for pk, label in candidates:
        by_class.setdefault(label, []).append(pk)
    rng = np.random.default_rng(seed)
    chosen = [
        int(pk)
        for pks in by_class.values()
        for pk in rng.choice(pks, size=min(per_class, len(pks)), replace=False)
    ]
    rows = selectors.samples_trainable().filter(pk__in=chosen).order_by("pk")
    return _glyph_set(rows.values_list("pk", "label", "glyph"))


def heldout_user_set(*, exclude_ids, every: int, limit: int) -> GlyphSet:
    """The newest held-out labelled user samples (never replayed)."""
    rows = (
        _with_bucket(every)
        .filter(bucket=0)
        .exclude(pk__in=exclude_ids)
        .order_by("-pk")
        .values_list("pk", "label", "glyph")[:limit]
    )
    return _glyph_set(rows)


def pending_corrections() -> list[Correction]:
    return list(selectors.corrections_pending().order_by("pk"))
