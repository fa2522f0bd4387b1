"""Delete the weights files of old retired and rejected model versions."""

from django.conf import settings
from django.core.management.base import BaseCommand

from training import registry


class Command(BaseCommand):
    help = (
        "Delete the weights files of retired and rejected versions older than the newest "
        "--keep; never the active version, a pinned one, or a trunk a kept version needs."
    )

    def add_arguments(self, parser):
        parser.add_argument("--keep", type=int, default=settings.PRUNE_KEEP_VERSIONS)

    def handle(self, *args, keep, **options):
        if keep < 1:
            self.stderr.write("--keep must be at least 1.")
            raise SystemExit(2)
        pruned = registry.versions_prune(keep=keep)
        numbers = ", ".join(f"v{version.number}" for version in pruned) or "none"
        self.stdout.write(f"Pruned {len(pruned)} version(s): {numbers}.")
