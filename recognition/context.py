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


def context_restrict(probabilities: np.ndarray, context: str) -> np.ndarray:
    """36 probabilities with the labels outside the context at zero, renormalised over the rest."""
    if context == DEFAULT_CONTEXT:
        return probabilities
    allowed = np.zeros(len(CLASSES), bool)
    allowed[[CLASS_INDEX[label] for label in context_labels(context)]] = True
    restricted = np.where(allowed, probabilities, 0.0)
    total = restricted.sum()
    if total <= 0:  # every allowed label underflowed: equal odds among them
        return allowed / allowed.sum()
    return restricted / total
