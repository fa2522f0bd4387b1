"""``manage.py install_default_model``: make sure a model version is active.

An empty registry gets the committed model as v1. A registry with versions but
none active (say, after ``pretrain --no-activate``) gets back the version it last
served, if its weights still verify, else the committed model as a new version.
With ``--upgrade`` the committed model becomes the active version unless the
active one is that model or a fine-tune of it: for a deployment whose code
brings a new default model (and, with it, new preprocessing). The versions
before it stay in the registry to roll back to.
"""

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from training import registry
from training.models import ModelVersion


class Command(BaseCommand):
    help = (
        "Make sure a version is active: install the committed default model into an empty "
        "registry, or re-activate the last served version (idempotent)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="source", default=str(settings.DEFAULT_MODEL_DIR))
        parser.add_argument(
            "--upgrade",
            action="store_true",
            help="Publish the committed model as the active version unless it already is.",
        )

    def handle(self, *args, **options):
        active = ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).first()
        if options["upgrade"]:
            self._install(Path(options["source"]), unless_active=active)
            return
        if active is not None:
            self.stdout.write(f"v{active.number} is active. Nothing to do.")
            return
        last_served = self._last_served_that_verifies()
        if last_served is not None:
            registry.version_activate(version=last_served)
            self.stdout.write(
                self.style.SUCCESS(f"No version was active; re-activated v{last_served.number}.")
            )
            return
        self._install(Path(options["source"]))

    def _install(self, folder: Path, *, unless_active: ModelVersion | None = None) -> None:
        try:
            description = json.loads((folder / "version.json").read_text())
            weights = (folder / "weights.pt").read_bytes()
            anchors = (folder / "anchors.npz").read_bytes()
        except (OSError, ValueError) as error:
            raise CommandError(f"Cannot read the default model in {folder}: {error}") from None
        if registry.weights_sha256(weights) != description["sha256"]:
            raise CommandError(f"{folder / 'weights.pt'} does not match its sha256; not installed.")
        if _descends_from(unless_active, description["sha256"]):
            self.stdout.write(
                f"v{unless_active.number} is the default model or a fine-tune of it. Nothing to do."
            )
            return
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

    def _last_served_that_verifies(self) -> ModelVersion | None:
        retired = ModelVersion.objects.filter(status=ModelVersion.Status.RETIRED)
        for version in retired.order_by("-activated_at", "-number"):
            try:
                registry.read_verified_weights(version)
            except registry.WeightsIntegrityError:
                continue
            return version
        return None


def _descends_from(version: ModelVersion | None, sha256: str) -> bool:
    """Whether ``version`` or one of its ancestors has these weights."""
    while version is not None:
        if version.sha256 == sha256:
            return True
        version = version.parent
    return False
