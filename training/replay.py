"""Choosing what a fine-tune trains and is judged on.

Three sources: the run's new corrections, learned whatever the sample; a
class-balanced replay of earlier user samples whose label the gate did not
refuse; and the anchor glyphs stored with the pretrained model. Replay never
draws from the held-out share (a secret bucket of ``HELDOUT_EVERY``); that
share's samples no fine-tune has trained on join the pretraining hold-out in
the fixed evaluation set.
"""

import re
from dataclasses import dataclass

import numpy as np
from django.db import connections

from recognition import selectors

from .classes import CLASS_INDEX, CLASSES
from .preprocessing import glyph_from_bytes

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
        np.stack([glyph_from_bytes(g) for g in glyphs]),
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
    next ones of each class from a random point of it, wrapping round once, so its
    cost does not grow with the number of labelled samples.
    """
    if per_class <= 0:
        return GlyphSet.empty()
    candidates = (
        selectors.samples_annotate_heldout(selectors.samples_replayable(), every=every)
        .exclude(in_heldout_share=True)
        .exclude(pk__in=exclude_ids)
        .order_by("replay_key")
        .values_list("pk", "label", "moderated", "replay_key")
    )
    rng = np.random.default_rng(seed)
    starts = {label: float(rng.random()) for label in CLASSES}
    chosen = [pk for pks in _windows(candidates, starts, per_class).values() for pk in pks]
    rows = selectors.samples_trainable().filter(pk__in=chosen).order_by("pk")
    return _glyph_set(rows.values_list("pk", "label", "glyph"))


# Stand-ins for a class and its start in the window queries compiled once per kind.
_LABEL, _START = "replay-window-label", -1234.5
_PLACEHOLDER = re.compile(r"(?<!%)%s")


def _windows(candidates, starts: dict[str, float], per_class: int) -> dict[str, list[int]]:
    """Each class's next ``per_class`` candidates from its start: moderated ones from the
    start, then wrapping round to the beginning, then the others likewise.

    The four kinds of window are compiled once (compiling, and on PostgreSQL planning,
    one per class cost more than running them) and each is read only for the classes
    the ones before it left short: on a large table the first one serves them all.
    PostgreSQL reads a kind for all those classes at once (a LATERAL join on their
    labels and starts); SQLite, which has no LATERAL, class by class.
    """
    chosen: dict[str, list[int]] = {label: [] for label in starts}
    connection = connections[candidates.db]
    with connection.cursor() as cursor:
        for moderated in (True, False):
            of_kind = candidates.filter(label=_LABEL, moderated=moderated)
            for window in (
                of_kind.filter(replay_key__gte=_START),
                of_kind.filter(replay_key__lt=_START),
            ):
                short = {
                    label: starts[label] for label, pks in chosen.items() if len(pks) < per_class
                }
                if not short:
                    return chosen
                sql, params = window[:per_class].query.sql_with_params()
                for pk, label, _, _ in sorted(
                    _read(cursor, sql, params, short), key=lambda row: row[3]
                ):
                    if len(chosen[label]) < per_class:
                        chosen[label].append(pk)
    return chosen


def _read(cursor, sql: str, params, starts: dict[str, float]) -> list[tuple]:
    """The window ``sql`` for each class of ``starts``, from its start."""
    if cursor.db.vendor == "postgresql":
        cursor.execute(*_lateral(sql, params, starts))
        return cursor.fetchall()
    rows = []
    for label, start in starts.items():
        cursor.execute(sql, _bind(params, label=label, start=start))
        rows += cursor.fetchall()
    return rows


def _bind(params, *, label, start) -> list:
    """The window query's parameters with its class stand-ins replaced."""
    return [label if p == _LABEL else start if p == _START else p for p in params]


class _Column(str):
    """A column of the LATERAL join's row per class, written in a stand-in's place."""


def _lateral(sql: str, params, starts: dict[str, float]) -> tuple[str, list]:
    """``sql`` run once per class: its stand-ins become the columns of a row per class."""
    pieces = _PLACEHOLDER.split(sql)
    bound = _bind(params, label=_Column("class_window.label"), start=_Column("class_window.start"))
    inner, kept = [pieces[0]], []
    for value, piece in zip(bound, pieces[1:], strict=True):
        if isinstance(value, _Column):
            inner.append(value)
        else:
            inner.append("%s")
            kept.append(value)
        inner.append(piece)
    return (
        "SELECT chosen.* FROM unnest(%s::text[], %s::float8[]) AS class_window(label, start) "
        f"CROSS JOIN LATERAL ({''.join(inner)}) AS chosen",
        [list(starts), list(starts.values()), *kept],
    )


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
