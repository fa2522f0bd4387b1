"""The 36 classes the recognizer knows: digits first, then lowercase letters."""

CLASSES: tuple[str, ...] = tuple("0123456789abcdefghijklmnopqrstuvwxyz")
NUM_CLASSES = len(CLASSES)
DIGITS = CLASSES[:10]
LETTERS = CLASSES[10:]
CLASS_INDEX = {label: index for index, label in enumerate(CLASSES)}
