"""`manage.py import_config FILE [--prune] [--dry-run]`: restore the configuration from an
export_config document, printing what changes; one transaction, one version."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents.transfer import ImportRejected
from console.management.json_files import json_read
from versions.diff import diff_lines
from versions.models import Source
from versions.restore import config_import


class Command(BaseCommand):
    help = (
        "Create or update agents, tenants and API keys from a JSON document written by "
        "export_config. With --prune, delete what the document leaves out, so it restores the "
        "document exactly. Every row is validated before anything is written."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="JSON document ('-' = stdin)")
        parser.add_argument(
            "--prune", action="store_true", help="delete rows the document leaves out"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="print the changes, write nothing"
        )

    def handle(self, *args: Any, file: str, prune: bool, dry_run: bool, **options: Any) -> None:
        document = json_read(file)
        try:
            changes = config_import(
                document, prune=prune, dry_run=dry_run,
                author="manage.py import_config", source=Source.IMPORT,
            )  # fmt: skip
        except ImportRejected as exc:
            for line in exc.errors:
                self.stderr.write(line)
            raise CommandError(str(exc)) from exc
        for line in diff_lines(changes):
            self.stdout.write(line)
        counts = {op: sum(c["op"] == op for c in changes) for op in ("created", "changed",
                                                                      "deleted")}  # fmt: skip
        summary = ", ".join(f"{n} {op}" for op, n in counts.items())
        self.stdout.write(f"{summary} (dry run: nothing written)" if dry_run else summary)
