"""Choosing what a fine-tune trains and is judged on.

Three sources: the run's new corrections, learned whatever the sample; a
class-balanced replay of earlier user samples whose label the gate did not
refuse; and the anchor glyphs stored with the pretrained model. Replay never
draws from the held-out share (a secret bucket of ``HELDOUT_EVERY``); that
share's samples no fine-tune has trained on join the pretraining hold-out in
the fixed evaluation set.
"""

from dataclasses import dataclass

import numpy as np

from recognition import selectors

from .classes import CLASS_INDEX, CLASSES

# Earlier samples replayed per class: enough to hold each class, few enough to stay quick.
REPLAY_PER_CLASS = 20
# Newest held-out user samples on the gate's fixed set: a steady figure, a quick gate.
HELDOUT_LIMIT = 1000


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
    samples = selectors.samples_with_trusted_label().filter(pk__in=sample_ids).order_by("pk")
    return _glyph_set(samples.values_list("pk", "label", "glyph"))


def replay_set(*, exclude_ids, per_class: int, every: int, seed: int) -> GlyphSet:
    """Up to ``per_class`` earlier samples of each class, drawn at random, moderated ones first.

    A moderator's label is the one the product trusts most (it outranks users'
    labels), so a class's quota takes moderator-reviewed samples before others.
    Samples lie in a fixed random order (``Sample.replay_key``); a run takes the
    next ones of each class from a random point of it, so its cost does not grow
    with the number of labelled samples.
    """
    candidates = (
        selectors.samples_annotate_heldout(selectors.samples_replayable(), every=every)
        .exclude(in_heldout_share=True)
        .exclude(pk__in=exclude_ids)
    )
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for label in CLASSES:
        start = float(rng.random())
        of_class = candidates.filter(label=label)
        picked = _next_in_replay_order(of_class.filter(moderated=True), start, per_class)
        chosen += picked
        chosen += _next_in_replay_order(
            of_class.filter(moderated=False), start, per_class - len(picked)
        )
    rows = selectors.samples_trainable().filter(pk__in=chosen).order_by("pk")
    return _glyph_set(rows.values_list("pk", "label", "glyph"))


def _next_in_replay_order(samples, start: float, limit: int) -> list[int]:
    """Up to ``limit`` ids in ``replay_key`` order from ``start``, wrapping round once."""
    if limit <= 0:
        return []
    ordered = samples.order_by("replay_key").values_list("pk", flat=True)
    ids = list(ordered.filter(replay_key__gte=start)[:limit])
    if len(ids) < limit:
        ids += ordered.filter(replay_key__lt=start)[: limit - len(ids)]
    return ids


def heldout_user_set(*, exclude_ids, every: int, limit: int) -> GlyphSet:
    """The newest held-out samples, none of which any fine-tune has trained on."""
    rows = (
        selectors.samples_annotate_heldout(selectors.samples_with_trusted_label(), every=every)
        .filter(heldout=True)
        .exclude(pk__in=exclude_ids)
        .order_by("-pk")
        .values_list("pk", "label", "glyph")[:limit]
    )
    return _glyph_set(rows)


@dataclass(frozen=True)
class Material:
    """What a run trains on (``new`` and ``replay``) and is judged on (``fixed``)."""

    new: GlyphSet
    anchors: GlyphSet
    user_replay: GlyphSet
    fixed: GlyphSet
    anchor_eval_count: int
    heldout_count: int

    @property
    def replay(self) -> GlyphSet:
        return self.anchors + self.user_replay


def run_material(*, new: GlyphSet, anchors: dict, heldout_every: int, seed: int) -> Material:
    """A run's material: its corrections, replay drawn with ``seed``, and the fixed set."""
    heldout = heldout_user_set(exclude_ids=new.sample_ids, every=heldout_every, limit=HELDOUT_LIMIT)
    return Material(
        new=new,
        anchors=GlyphSet(anchors["anchor_glyphs"], anchors["anchor_labels"]),
        user_replay=replay_set(
            exclude_ids=new.sample_ids,
            per_class=REPLAY_PER_CLASS,
            every=heldout_every,
            seed=seed,
        ),
        fixed=GlyphSet(anchors["eval_glyphs"], anchors["eval_labels"]) + heldout,
        anchor_eval_count=len(anchors["eval_labels"]),
        heldout_count=len(heldout),
    )
