"""The model this process serves, and its hot reload.

Every process keeps its own loaded model and looks up the active version at most
once per ``MODEL_RELOAD_INTERVAL``; a new version is fully loaded before one
reference assignment swaps it in, so a prediction never sees half a model.
"""

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch
from django.conf import settings

from . import nn
from .models import ModelVersion
from .registry import NoActiveModel, WeightsIntegrityError, version_load_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    version_id: int
    number: int
    model: torch.nn.Module
    # ``nn.hidden_weights_digest``: personal models made under another need rebuilding.
    hidden_weights: str

    def predict_proba(self, glyphs: np.ndarray) -> np.ndarray:
        return nn.predict_proba(self.model, glyphs)

    def predict_logits(self, glyphs: np.ndarray) -> np.ndarray:
        return nn.predict_logits(self.model, glyphs)


class ActiveModelCache:
    """The active model of this process, re-checked at most once per interval."""

    def __init__(self):
        self._lock = threading.Lock()
        self._current: LoadedModel | None = None
        self._checked_at = float("-inf")
        self._refused: set[tuple[int, str]] = set()

    def get(self) -> LoadedModel:
        current = self._current
        if (
            current is not None
            and time.monotonic() - self._checked_at < settings.MODEL_RELOAD_INTERVAL
        ):
            return current
        # One thread refreshes; the others keep predicting with what they have.
        if not self._lock.acquire(blocking=current is None):
            return current
        try:
            self._refresh()
        finally:
            self._lock.release()
        if self._current is None:
            raise NoActiveModel("no model version is active; run `manage.py install_default_model`")
        return self._current

    def _refresh(self):
        # Only what loading needs: metrics hold a confusion matrix per evaluation set.
        active = (
            ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE)
            .select_related("base")
            .only(
                "number",
                "sha256",
                "weights",
                "architecture",
                "base__number",
                "base__sha256",
                "base__weights",
                "base__architecture",
                "base__base",
            )
            .first()
        )
        self._checked_at = time.monotonic()
        if active is None or (self._current and self._current.version_id == active.pk):
            return
        if (active.pk, active.sha256) in self._refused:
            return
        try:
            model = version_load_model(active)
        except WeightsIntegrityError as error:
            self._refused.add((active.pk, active.sha256))
            logger.error("Refusing model %s, still serving %s", error, self._current)
            return
        torch.set_num_threads(settings.TORCH_THREADS)
        self._current = LoadedModel(
            version_id=active.pk,
            number=active.number,
            model=nn.for_inference(model),
            hidden_weights=nn.hidden_weights_digest(model),
        )
        logger.info("Serving model v%s", active.number)

    def clear(self):
        with self._lock:
            self._current = None
            self._checked_at = float("-inf")
            self._refused.clear()


active_model = ActiveModelCache()
