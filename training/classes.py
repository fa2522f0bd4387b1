"""The 36 classes the recognizer knows: digits first, then lowercase letters."""

CLASSES: tuple[str, ...] = tuple("0123456789abcdefghijklmnopqrstuvwxyz")
NUM_CLASSES = len(CLASSES)
DIGITS = CLASSES[:10]
LETTERS = CLASSES[10:]
CLASS_INDEX = {label: index for index, label in enumerate(CLASSES)}
# Shapes that are one character in both alphabets: no single-character
# model can tell them apart without context (the look-alike answer, the tolerant score).
SAME_SHAPES: tuple[str, ...] = ("0o", "1il", "2z", "5s", "6b", "9gq")
# Every two characters of one same-shape set, unordered.
SAME_SHAPE_PAIRS: frozenset[frozenset[str]] = frozenset(
    frozenset((a, b)) for group in SAME_SHAPES for a in group for b in group if a != b
)
