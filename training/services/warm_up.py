"""Warming a training worker up, so that its first run is as quick as the rest."""

import numpy as np
import torch
from django.conf import settings

from .. import caches, registry, selectors
from ..finetune import fine_tune
from .config import fine_tune_config


def training_warm_up() -> int:
    """Compute what every run of the active chain needs, so a worker's first run is as quick
    as the rest: its trunk's features of the anchor and evaluation glyphs, the root's score,
    and a throwaway two-step fine-tune (a process's first one pays to set up autograd, the
    optimizer and the kernels).

    Returns how many glyphs' features this process now remembers.
    """
    version = selectors.version_active()
    if version is None:
        return 0
    torch.set_num_threads(settings.FINE_TUNE["THREADS"])
    anchors = registry.version_load_anchors(version)
    model = registry.version_load_model(version)
    trunk = caches.frozen_trunk(model)
    glyphs, labels = anchors["anchor_glyphs"], anchors["anchor_labels"]
    trunk.features(np.concatenate([glyphs, anchors["eval_glyphs"]]))
    caches.root_accuracy(version, anchors, trunk)
    fine_tune(
        model,
        new_glyphs=glyphs[:1],
        new_labels=labels[:1],
        replay_glyphs=glyphs,
        replay_labels=labels,
        config=fine_tune_config(seed=0, steps=2),
        trunk=trunk,
    )
    return len(trunk)
