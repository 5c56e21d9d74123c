from datetime import timedelta

from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError

from assets.services import unrecorded_files


class Command(BaseCommand):
    help = (
        "Delete stored files that no Blob row records, such as the results of a "
        "job whose worker lost it. Only files older than --min-age-hours are "
        "touched, so files of jobs finishing now are kept."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--min-age-hours",
            type=float,
            default=24.0,
            help="Keep files modified more recently than this (default 24).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="List the files, delete nothing."
        )

    def handle(self, *args, min_age_hours: float, dry_run: bool, **options) -> None:
        if min_age_hours < 1:
            raise CommandError(
                "--min-age-hours must be at least 1, so that results being "
                "recorded right now are not deleted."
            )
        count = total_bytes = 0
        for name, size in unrecorded_files(timedelta(hours=min_age_hours)):
            if not dry_run:
                default_storage.delete(name)
            self.stdout.write(name)
            count += 1
            total_bytes += size
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(f"{verb} {count} unrecorded files, {total_bytes} bytes")
