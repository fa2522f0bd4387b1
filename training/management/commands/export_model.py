"""``manage.py export_model``: a model version as TorchScript or ONNX, to serve outside Django."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from training import export, registry, selectors
from training.models import ModelVersion


class Command(BaseCommand):
    help = (
        "Export a model version (default: the active one) as TorchScript or ONNX, with "
        "model.json: its classes and the preprocessing its 28x28 input needs."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        # --version names a model version here, not this program's own version.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument(
            "--version", type=int, help="Model version number (default: the active one)."
        )
        parser.add_argument("--format", required=True, choices=list(export.FORMATS))
        parser.add_argument("--out", required=True, help="Folder for the model and model.json.")

    def handle(self, *args, **options):
        version = self._version(options["version"])
        try:
            model = registry.version_load_model(version)
        except registry.WeightsIntegrityError as error:
            raise CommandError(f"Cannot export v{version.number}: {error}") from None
        out = Path(options["out"])
        try:
            written = export.export_model(
                model, format=options["format"], folder=out, version=_describe(version)
            )
        except OSError as error:
            raise CommandError(f"Cannot write the export to {out}: {error}") from None
        except ImportError as error:
            raise CommandError(
                f"{options['format']} export needs the packages of requirements.txt: {error}"
            ) from None
        names = ", ".join(path.name for path in written)
        self.stdout.write(
            self.style.SUCCESS(
                f"Exported v{version.number} as {options['format']}: {names} in {out}"
            )
        )

    def _version(self, number: int | None) -> ModelVersion:
        if number is None:
            version = selectors.version_active()
            if version is None:
                raise CommandError("No model version is active; name one with --version.")
            return version
        version = ModelVersion.objects.filter(number=number).select_related("base").first()
        if version is None:
            raise CommandError(f"There is no model version {number}.")
        if version.pruned_at is not None:
            raise CommandError(f"v{number} was pruned: its weights are deleted.")
        return version


def _describe(version: ModelVersion) -> dict:
    base = version.base
    return {
        "number": version.number,
        "sha256": version.sha256,
        "architecture": version.architecture,
        "kind": version.training_info.get("kind", ""),
        # A delta's stored file holds only what its fine-tune changed; the export holds all.
        "base": None if base is None else {"number": base.number, "sha256": base.sha256},
        "status": version.status,
    }
