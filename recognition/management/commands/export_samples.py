"""``manage.py export_samples``: labelled samples as an image folder or an npz, with a manifest."""

from django.core.management.base import BaseCommand, CommandError

from recognition import exports, selectors
from recognition.models import Sample


class Command(BaseCommand):
    help = (
        "Export labelled samples: --format imagefolder writes <label>/<sample-id>.png "
        "(what `pretrain --data-dir` reads), --format npz one samples.npz of 28x28 glyphs; "
        "both with manifest.json. Excluded samples are left out unless asked for by --status."
    )

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=exports.FORMATS, default="imagefolder")
        parser.add_argument(
            "--status",
            action="append",
            choices=Sample.Status.values,
            help="Only samples with this status (repeatable). Default: all but excluded.",
        )
        parser.add_argument("--out", required=True, help="A folder that is absent or empty.")

    def handle(self, *args, **options):
        statuses = options["status"] or [
            status for status in Sample.Status.values if status != Sample.Status.EXCLUDED
        ]
        samples = selectors.samples_for_export(statuses=statuses)
        files = exports.FORMATS[options["format"]](samples, statuses=statuses)
        try:
            exports.export_to_folder(files, options["out"])
        except FileExistsError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(self.style.SUCCESS(f"Exported to {options['out']}"))
