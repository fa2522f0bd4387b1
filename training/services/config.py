"""The fine-tune configuration a run uses: the product's, with the operator's settings."""

from django.conf import settings

from ..finetune import FineTuneConfig


def fine_tune_config(*, seed: int, **overrides) -> FineTuneConfig:
    """The product's configuration with the operator's settings (those that are set)."""
    operator = {
        "steps": settings.FINE_TUNE["STEPS"],
        "max_seconds": settings.FINE_TUNE["MAX_SECONDS"],
        "trainable": settings.FINE_TUNE["SCOPE"],
    }
    chosen = {name: value for name, value in operator.items() if value is not None}
    return FineTuneConfig(**{**chosen, **overrides}, seed=seed)
