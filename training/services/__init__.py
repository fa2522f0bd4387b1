"""Training's writes: fine-tune a claimed run and publish its version, warm a worker up,
and activate or pin versions.

The run's life cycle (request, claim, heartbeat, finish, sweep) is in ``training.runs``;
what a worker process remembers between runs is in ``training.caches``.
"""

from ..registry import VersionPruned
from .fine_tuning import training_run_execute, training_run_fine_tune
from .versions import (
    ActivationNotPermitted,
    model_version_activate,
    model_versions_pin,
)
from .warm_up import training_warm_up

__all__ = [
    "ActivationNotPermitted",
    "VersionPruned",
    "model_version_activate",
    "model_versions_pin",
    "training_run_execute",
    "training_run_fine_tune",
    "training_warm_up",
]
