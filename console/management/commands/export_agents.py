"""`manage.py export_agents`: every agent as JSON, the format import_agents reads."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from agents.transfer import agents_export
from console.management.json_files import json_text, json_write


class Command(BaseCommand):
    help = "Print every agent as a JSON list (the format import_agents reads)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", "-o", help="write to this file instead of stdout")

    def handle(self, *args: Any, output: str | None, **options: Any) -> None:
        json_write(json_text(agents_export()), output, self.stdout)
