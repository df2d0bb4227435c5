"""`manage.py export_agents`: every agent as JSON, the format import_agents reads."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from agents.transfer import agents_export


class Command(BaseCommand):
    help = "Print every agent as a JSON list (the format import_agents reads)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", "-o", help="write to this file instead of stdout")

    def handle(self, *args: Any, output: str | None, **options: Any) -> None:
        text = json.dumps(agents_export(), indent=2, ensure_ascii=False) + "\n"
        if output:
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(text)
        else:
            self.stdout.write(text, ending="")
