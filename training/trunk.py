"""A frozen convolutional trunk and the features it remembers (no Django).

A head-only fine-tune never changes the trunk: what it makes of each glyph is
computed once and serves every run and gate of the chain.
"""

from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import nn


class FrozenTrunk:
    """A GlyphNet's convolutional trunk, with what it makes of each glyph remembered.

    A head-only fine-tune never changes the trunk, so a chain of such versions
    computes each glyph's features once; other trunks are scored the full way.
    """

    def __init__(self, model: nn.GlyphNet, *, capacity: int = 8192):
        self.digest = nn.trunk_digest(model)
        self.capacity = capacity
        # The serving copy without its classifier: the same features the web computes.
        self._trunk = nn.for_inference(model)[:-1]
        self._rows: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        # Called after each batch of features computed: a long pass can show it is alive.
        self.on_batch: Callable[[], None] | None = None
        # Glyphs run through the trunk to be remembered, over this object's life.
        self.computed = 0
        self.dimension = self.compute(torch.zeros(1, 1, 28, 28)).shape[1]

    def __len__(self) -> int:
        """How many glyphs' features are remembered."""
        return len(self._rows)

    def shares(self, model: torch.nn.Module) -> bool:
        return isinstance(model, nn.GlyphNet) and nn.trunk_digest(model) == self.digest

    def compute(self, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Flattened features (N, D) of glyph tensors (N, 1, 28, 28), not remembered."""
        # no_grad, not inference_mode: a head trains on these tensors.
        rows = []
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                rows.append(self._trunk(x[i : i + batch_size]).flatten(1))
                if self.on_batch is not None:
                    self.on_batch()
        return torch.cat(rows)

    def features(self, glyphs: np.ndarray) -> torch.Tensor:
        """Flattened features (N, D) of uint8 glyphs; only glyphs not seen before are computed."""
        glyphs = np.asarray(glyphs, dtype=np.uint8).reshape(-1, 28, 28)
        keys = [glyph.tobytes() for glyph in glyphs]
        missing = list(
            {key: index for index, key in enumerate(keys) if key not in self._rows}.values()
        )
        if missing:
            computed = self.compute(nn.glyphs_to_tensor(glyphs[missing]))
            self.computed += len(missing)
            for index, row in zip(missing, computed, strict=True):
                self._rows[keys[index]] = row.clone()
        if not keys:
            return torch.zeros((0, self.dimension))
        for key in keys:
            self._rows.move_to_end(key)
        rows = torch.stack([self._rows[key] for key in keys])
        while len(self._rows) > self.capacity:
            self._rows.popitem(last=False)
        return rows

    def predict_proba(self, model: torch.nn.Module, glyphs: np.ndarray) -> np.ndarray:
        """Class probabilities (N, 36), as the web would serve them."""
        if not self.shares(model):
            return nn.served_proba(model, glyphs)
        if len(glyphs) == 0:
            return np.zeros((0, nn.NUM_CLASSES), np.float32)
        return self.head_proba(model, self.features(glyphs)).numpy()

    def head_proba(self, model: torch.nn.Module, features: torch.Tensor) -> torch.Tensor:
        """The model's head on features from this trunk: class probabilities (N, 36).

        no_grad, not inference_mode: a fine-tune distils towards these tensors.
        """
        with torch.no_grad():
            return F.softmax(model.classifier.eval()(features), dim=1)

    def evaluate(self, model: torch.nn.Module, glyphs: np.ndarray, labels: np.ndarray) -> dict:
        """``nn.evaluate``'s figures, from the remembered features where the trunk is shared."""
        return nn.score(self.predict_proba(model, glyphs).argmax(axis=1), labels)
