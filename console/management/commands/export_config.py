"""`manage.py export_config`: the whole configuration as JSON, the format import_config reads."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from console.management.json_files import json_text, json_write
from versions.document import config_export


class Command(BaseCommand):
    help = (
        "Print the whole configuration (agents, tenants, API keys as digests) as JSON: a backup "
        "that import_config FILE --prune restores exactly."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", "-o", help="write to this file instead of stdout")

    def handle(self, *args: Any, output: str | None, **options: Any) -> None:
        json_write(json_text(config_export()), output, self.stdout)
