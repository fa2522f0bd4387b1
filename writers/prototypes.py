"""A writer's personal model: their own labelled drawings as prototypes (no Django).

Each of the writer's labels keeps the served network's penultimate features (the
hidden layer before the last linear one) of that drawing. A new drawing lifts the
logit of a class by ``GAIN`` times how far its nearest prototype of that class
lies above ``THRESHOLD`` in cosine similarity, so a drawing unlike all of them
gets exactly the shared model's answer. ``bench/personal.py`` chose both figures
on validation writers.
"""

from dataclasses import dataclass

import numpy as np
import torch

from training.classes import CLASS_INDEX, NUM_CLASSES
from training.nn import glyphs_to_tensor

THRESHOLD = 0.8
GAIN = 32.0
# The newest labels a writer keeps: 128 rows of 256 float16 features is 64 KiB.
MAX_PROTOTYPES = 128


def hidden_and_logits(served: torch.nn.Module, glyphs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate features (N, D) and logits (N, 36) of ``nn.for_inference``'s network."""
    body, head = served[:-1], served[-1]
    with torch.inference_mode():
        hidden = head[:-1](body(glyphs_to_tensor(glyphs)))
        logits = head[-1](hidden)
    return hidden.numpy(), logits.numpy()


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-6)


@dataclass(frozen=True)
class Prototypes:
    """Unit-length feature rows and the label of each, oldest first."""

    features: np.ndarray  # (N, D) float32
    labels: str  # one class label per row

    @classmethod
    def empty(cls) -> "Prototypes":
        return cls(np.zeros((0, 0), np.float32), "")

    @classmethod
    def from_stored(cls, data: bytes, labels: str) -> "Prototypes":
        if not labels:
            return cls.empty()
        rows = np.frombuffer(bytes(data), dtype=np.float16).astype(np.float32)
        return cls(rows.reshape(len(labels), -1), labels)

    @classmethod
    def of(cls, features: np.ndarray, labels: str) -> "Prototypes":
        return cls(_unit(features).reshape(len(labels), -1), labels)

    def to_bytes(self) -> bytes:
        return self.features.astype(np.float16).tobytes()

    def __len__(self) -> int:
        return len(self.labels)

    def bonus(self, hidden: np.ndarray) -> np.ndarray:
        """What each class's logit gains for one drawing's features (D,): zero far from all."""
        gains = np.zeros(NUM_CLASSES, np.float32)
        if not len(self):
            return gains
        similarity = self.features @ _unit(hidden)
        nearest = np.full(NUM_CLASSES, -1.0, np.float32)
        np.maximum.at(nearest, [CLASS_INDEX[label] for label in self.labels], similarity)
        return GAIN * np.clip((nearest - THRESHOLD) / (1.0 - THRESHOLD), 0.0, None)

    def with_row(self, features: np.ndarray, label: str, *, replaces: int | None = None):
        """These prototypes plus one row (in place of row ``replaces``), the newest kept."""
        rows, labels = self.features, self.labels
        if replaces is not None:
            rows = np.delete(rows, replaces, axis=0)
            labels = labels[:replaces] + labels[replaces + 1 :]
        row = _unit(features).reshape(1, -1)
        rows = np.concatenate([rows, row]) if len(labels) else row
        labels += label
        return Prototypes(rows[-MAX_PROTOTYPES:], labels[-MAX_PROTOTYPES:])


def personal_proba(
    served: torch.nn.Module, glyph: np.ndarray, prototypes: Prototypes
) -> tuple[np.ndarray, bool]:
    """One glyph's 36 probabilities with the writer's prototypes, and whether they changed any."""
    hidden, logits = hidden_and_logits(served, glyph)
    bonus = prototypes.bonus(hidden[0])
    return softmax(logits[0] + bonus), bool(bonus.any())
