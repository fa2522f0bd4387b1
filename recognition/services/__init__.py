"""The only writers of samples, predictions and corrections.

Each use case is one function with keyword arguments that validates, writes in
one transaction, and leaves nothing half-written when it fails. One module per
kind of use case: predictions, corrections (and training's use of them), moderation.
"""

from .corrections import (
    CorrectionOutcome,
    correct_sample,
    corrections_already_known,
    corrections_settle,
    corrections_take_pending,
)
from .moderation import (
    moderator_create,
    sample_confirm,
    sample_relabel,
    samples_confirm,
    samples_exclude,
    samples_include,
    samples_relabel,
)
from .predictions import PredictionOutcome, predict_drawing

__all__ = [
    "CorrectionOutcome",
    "PredictionOutcome",
    "correct_sample",
    "corrections_already_known",
    "corrections_settle",
    "corrections_take_pending",
    "moderator_create",
    "predict_drawing",
    "sample_confirm",
    "sample_relabel",
    "samples_confirm",
    "samples_exclude",
    "samples_include",
    "samples_relabel",
]
