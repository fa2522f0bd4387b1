"""Which classes a drawing's answer may be: the context it was drawn under."""

import numpy as np

from training.classes import CLASS_INDEX, CLASSES, DIGITS, LETTERS

NAMED_CONTEXTS = {"all": CLASSES, "digits": DIGITS, "letters": LETTERS}
DEFAULT_CONTEXT = "all"


class UnknownContext(ValueError):
    pass


def context_parse(value: str) -> str:
    """A context as stored: ``all``, ``digits``, ``letters``, or the allowed labels in order."""
    value = value.strip()
    if value in NAMED_CONTEXTS:
        return value
    unknown = sorted(set(value) - set(CLASS_INDEX))
    if not value or unknown:
        raise UnknownContext(
            f"{value!r} is not a context: use all, digits, letters, or a string of labels "
            f"from {''.join(CLASSES)}" + (f" (not {''.join(unknown)!r})" if value else "")
        )
    return "".join(label for label in CLASSES if label in value)


def context_labels(context: str) -> tuple[str, ...]:
    return NAMED_CONTEXTS.get(context) or tuple(context)


def context_proba(logits: np.ndarray, context: str) -> np.ndarray:
    """Probabilities over the context's labels from the 36 logits, zero outside it.

    Restricted before the softmax: a writer's own model can lift a label so far that
    every other label's probability underflows to zero, and the context may exclude it.
    """
    allowed = np.zeros(len(CLASSES), bool)
    allowed[[CLASS_INDEX[label] for label in context_labels(context)]] = True
    masked = np.where(allowed, logits, -np.inf)
    weights = np.exp(masked - masked.max())
    return (weights / weights.sum()).astype(np.float32)
