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

from training import registry, selectors
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
        active = selectors.version_active()
        folder = Path(options["source"])
        if options["upgrade"]:
            description, weights, anchors = _read_default_model(folder)
            # Fine-tunes share the anchors of the version they grew from: its chain's root.
            if (
                active
                and selectors.version_chain_root(version=active).sha256 == description["sha256"]
            ):
                self.stdout.write(
                    f"v{active.number} is the default model or a fine-tune of it. Nothing to do."
                )
                return
            self._install(folder, description, weights, anchors)
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
        self._install(folder, *_read_default_model(folder))

    def _install(self, folder: Path, description: dict, weights: bytes, anchors: bytes) -> None:
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


def _read_default_model(folder: Path) -> tuple[dict, bytes, bytes]:
    """``version.json``, the weights and the anchors, the weights checked against their sha256."""
    try:
        description = json.loads((folder / "version.json").read_text())
        weights = (folder / "weights.pt").read_bytes()
        anchors = (folder / "anchors.npz").read_bytes()
    except (OSError, ValueError) as error:
        raise CommandError(f"Cannot read the default model in {folder}: {error}") from None
    if registry.weights_sha256(weights) != description["sha256"]:
        raise CommandError(f"{folder / 'weights.pt'} does not match its sha256; not installed.")
    return description, weights, anchors
