"""Characters that are the same shape, and when an answer should offer both.

The pairs come from data: every pair the active version confuses on held-out
handwriting at least ``MIN_CONFUSION`` of the time (both directions, over both
classes' drawings), added to the shapes that are one shape by definition. An
answer offers its leading guesses when they are look-alikes of the first within
``MARGIN`` of its probability. A writer's own corrections add pairs of their own:
when the answer is one the shared model gave to a drawing of theirs they labelled
otherwise, their label is offered beside it from ``TAUGHT_FLOOR`` up.
``docs/personal.md`` says how the figures were chosen on validation handwriting.
"""

import functools

import numpy as np

from training import selectors as training_selectors
from training.classes import CLASSES, SAME_SHAPE_PAIRS

MIN_CONFUSION = 0.05
MIN_COUNT = 3
MARGIN = 0.4
TAUGHT_FLOOR = 0.03
HANDWRITING_SETS = "handwriting/"


def pairs_from_confusion(confusion) -> frozenset[frozenset[str]]:
    """Pairs confused at least ``MIN_CONFUSION`` of the time (and ``MIN_COUNT`` times)."""
    matrix = np.asarray(confusion, dtype=np.int64)
    both = matrix + matrix.T
    totals = matrix.sum(axis=1)
    pairs = set()
    for a in range(len(CLASSES)):
        for b in range(a + 1, len(CLASSES)):
            drawn = totals[a] + totals[b]
            if both[a, b] >= MIN_COUNT and both[a, b] >= MIN_CONFUSION * drawn:
                pairs.add(frozenset((CLASSES[a], CLASSES[b])))
    return frozenset(pairs)


def pairs_from_metrics(metrics: dict) -> frozenset[frozenset[str]] | None:
    """The pairs a version's evaluation shows (its held-out handwriting sets, else its one
    confusion matrix); None when it recorded no confusion."""
    sets = [
        result["confusion"]
        for name, result in metrics.get("sets", {}).items()
        if name.startswith(HANDWRITING_SETS) and "confusion" in result
    ]
    confusion = np.sum(np.asarray(sets), axis=0) if sets else metrics.get("confusion")
    if confusion is None:
        return None
    return SAME_SHAPE_PAIRS | pairs_from_confusion(confusion)


@functools.lru_cache(maxsize=8)
def lookalike_pairs(version_id: int) -> frozenset[frozenset[str]]:
    """A version's look-alike pairs: from its own held-out evaluation, else its nearest ancestor's.

    Versions are immutable, so each process derives a version's pairs once.
    """
    version = training_selectors.version_metrics_of(version_id=version_id)
    while version is not None:
        pairs = pairs_from_metrics(version.metrics)
        if pairs is not None:
            return pairs
        version = version.parent
    return SAME_SHAPE_PAIRS


def lookalikes_of(
    probabilities: np.ndarray,
    pairs: frozenset[frozenset[str]],
    taught: frozenset[tuple[str, str]] = frozenset(),
    *,
    taught_floor: float = TAUGHT_FLOOR,
) -> list[str]:
    """The leading guess and the guesses to offer beside it, most probable first; else empty.

    ``taught`` holds a writer's (shared model's answer, their label) pairs.
    """
    best_first = np.argsort(probabilities)[::-1]
    leader = CLASSES[best_first[0]]
    floor = probabilities[best_first[0]] - MARGIN
    offered = []
    for rank, index in enumerate(best_first[1:], start=1):
        label, probability = CLASSES[index], probabilities[index]
        if rank > 3 and probability < taught_floor:
            break  # best first: nothing further down can be offered
        close_lookalike = (
            rank <= 3
            and probability > 0
            and probability >= floor
            and frozenset((leader, label)) in pairs
        )
        if close_lookalike or (probability >= taught_floor and (leader, label) in taught):
            offered.append(label)
    return [leader, *offered] if offered else []
