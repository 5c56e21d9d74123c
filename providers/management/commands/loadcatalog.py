from django.core.management.base import BaseCommand, CommandError

from providers.catalog import DEFAULT_CATALOG, CatalogError, load_catalog


class Command(BaseCommand):
    help = "Upsert providers and models from a catalog JSON file."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "file",
            nargs="?",
            default=str(DEFAULT_CATALOG),
            help="Catalog file; the catalog shipped with LightSource when omitted.",
        )

    def handle(self, *args, file: str, **options) -> None:
        try:
            providers, models = load_catalog(file)
        except CatalogError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            f"Loaded {providers} providers and {models} models from {file}."
        )
