"""``manage.py install_default_model``: the committed model becomes v1 of an empty registry."""

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from training import registry
from training.models import ModelVersion


class Command(BaseCommand):
    help = "Install the committed default model as version 1 if no version exists (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="source", default=str(settings.DEFAULT_MODEL_DIR))

    def handle(self, *args, **options):
        active = ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).first()
        if ModelVersion.objects.exists():
            self.stdout.write(f"Model versions exist; active: {active or 'none'}. Nothing to do.")
            return
        folder = Path(options["source"])
        try:
            description = json.loads((folder / "version.json").read_text())
            weights = (folder / "weights.pt").read_bytes()
            anchors = (folder / "anchors.npz").read_bytes()
        except (OSError, ValueError) as error:
            raise CommandError(f"Cannot read the default model in {folder}: {error}") from None
        if registry.weights_sha256(weights) != description["sha256"]:
            raise CommandError(f"{folder / 'weights.pt'} does not match its sha256; not installed.")
        version = registry.version_create(
            weights=weights,
            architecture=description["architecture"],
            metrics=description["metrics"],
            training_info={
                **description["training_info"],
                "installed_from": str(folder),
            },
            anchors=anchors,
            activate=True,
        )
        self.stdout.write(self.style.SUCCESS(f"Installed the default model as v{version.number}."))
