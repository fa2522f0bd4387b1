"""A writer's personal model: their own labelled drawings as prototypes (no Django).

Each of the writer's labels keeps what the served network's hidden layer makes
of that drawing before its bias: the trunk's features times the layer's weights.
A fine-tune of the last layer and that bias (the default scope) leaves these rows
as they are, so they serve every such version exactly: the hidden features are the
rows plus the served bias, through the ReLU. A new drawing lifts the logit of a
class by ``GAIN`` times how far its nearest prototype of that class lies above
``THRESHOLD`` in cosine similarity, so a drawing unlike all of them gets exactly
the shared model's answer. ``bench/personal.py`` chose both figures on validation
writers.
"""

from dataclasses import dataclass

import numpy as np
import torch

from training.classes import CLASS_INDEX, CLASSES, NUM_CLASSES
from training.nn import glyphs_to_tensor

THRESHOLD = 0.75
GAIN = 16.0
# The newest labels a writer keeps: 128 rows of 256 float16 features is 64 KiB.
MAX_PROTOTYPES = 128
# A drawing this close to one the writer labelled is that drawing again (sent anew):
# the writer's label for it wins whatever the shared model or their other drawings say.
SAME_DRAWING = 0.9999
SAME_DRAWING_GAIN = 1000.0


@dataclass(frozen=True)
class Drawn:
    """What ``nn.for_inference``'s network makes of glyphs (N of them)."""

    rows: np.ndarray  # (N, D) the hidden layer's input times its weights, without its bias
    hidden: np.ndarray  # (N, D) the hidden features: rows + bias, through the ReLU
    logits: np.ndarray  # (N, 36)


def drawn(served: torch.nn.Module, glyphs: np.ndarray) -> Drawn:
    """The same layers, in the same order, as the served network's forward pass."""
    body, head = served[:-1], served[-1]
    linear = head[1]
    with torch.inference_mode():
        before_relu = head[:2](body(glyphs_to_tensor(glyphs)))  # flatten, hidden linear
        rows = (before_relu - linear.bias).numpy()
        hidden = head[2:-1](before_relu)  # the in-place ReLU, dropout (off)
        logits = head[-1](hidden)
    return Drawn(rows, hidden.numpy(), logits.numpy())


def hidden_bias(served: torch.nn.Module) -> np.ndarray:
    return served[-1][1].bias.detach().numpy()


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-6)


@dataclass(frozen=True)
class Prototypes:
    """The writer's rows (``Drawn.rows``) and the label of each, oldest first."""

    rows: np.ndarray  # (N, D) float32
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

    def to_bytes(self) -> bytes:
        return self.rows.astype(np.float16).tobytes()

    def __len__(self) -> int:
        return len(self.labels)

    def bonus(
        self,
        hidden: np.ndarray,
        bias: np.ndarray,
        *,
        threshold: float = THRESHOLD,
        gain: float = GAIN,
    ) -> np.ndarray:
        """What each class's logit gains for one drawing's hidden features (D,), under a
        model whose hidden bias is ``bias``: zero far from all."""
        if not len(self):
            return np.zeros(NUM_CLASSES, np.float32)
        features = unit(np.maximum(self.rows + bias, 0.0))
        similarity = features @ unit(hidden)
        nearest = np.full(NUM_CLASSES, -1.0, np.float32)
        np.maximum.at(nearest, [CLASS_INDEX[label] for label in self.labels], similarity)
        gains = gain * np.clip((nearest - threshold) / (1.0 - threshold), 0.0, None)
        same = np.flatnonzero(similarity >= SAME_DRAWING)
        if len(same):  # the newest label of that drawing
            gains[CLASS_INDEX[self.labels[same[-1]]]] += SAME_DRAWING_GAIN
        return gains

    def with_row(self, row: np.ndarray, label: str, *, replaces: int | None = None):
        """These prototypes plus one row (in place of row ``replaces``), the newest kept."""
        rows, labels = self.rows, self.labels
        if replaces is not None:
            rows = np.delete(rows, replaces, axis=0)
            labels = labels[:replaces] + labels[replaces + 1 :]
        row = np.asarray(row, np.float32).reshape(1, -1)
        rows = np.concatenate([rows, row]) if len(labels) else row
        labels += label
        return Prototypes(rows[-MAX_PROTOTYPES:], labels[-MAX_PROTOTYPES:])


@dataclass(frozen=True)
class PersonalAnswer:
    """One glyph's answer through a writer's personal model."""

    logits: np.ndarray  # (36,)
    shaped: bool  # the prototypes changed the probabilities
    # (the shared model's answer, the writer's label) for each of their drawings it misreads
    taught: frozenset[tuple[str, str]]


def personal_proba(
    served: torch.nn.Module, glyph: np.ndarray, prototypes: Prototypes
) -> PersonalAnswer:
    seen = drawn(served, glyph)
    bias = hidden_bias(served)
    bonus = prototypes.bonus(seen.hidden[0], bias)
    return PersonalAnswer(
        seen.logits[0] + bonus, bool(bonus.any()), taught(served, prototypes, bias)
    )


def taught(
    served: torch.nn.Module, prototypes: Prototypes, bias: np.ndarray
) -> frozenset[tuple[str, str]]:
    """What the shared model still reads each of the writer's drawings as, where that is
    not their label: read afresh, so a version that learns their hand drops the pair."""
    if not len(prototypes):
        return frozenset()
    hidden = torch.from_numpy(np.maximum(prototypes.rows + bias, 0.0))
    with torch.inference_mode():
        answers = served[-1][-1](hidden).argmax(1).tolist()
    return frozenset(
        (CLASSES[answer], label)
        for answer, label in zip(answers, prototypes.labels, strict=True)
        if CLASSES[answer] != label
    )
