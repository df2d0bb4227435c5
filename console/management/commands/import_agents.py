"""`manage.py import_agents`: create or update agents from a JSON file (or the Go gateway's env
variables), validated as the admin validates them; one transaction, one configuration change."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from agents.transfer import ImportRejected, agents_from_go_env, agents_import
from console.management.json_files import json_read
from versions.models import Source
from versions.recording import recording

AUTHOR = "manage.py import_agents"


class Command(BaseCommand):
    help = (
        "Create or update agents from a JSON file (as written by export_agents) or from the Go "
        "gateway's AGENT_<KEY>_URL / AGENT_<KEY>_ENABLED / AGENT_TIMEOUT variables. Every row is "
        "validated before anything is written; importing the same input twice changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("file", nargs="?", help="JSON file with a list of agents ('-' = stdin)")
        source.add_argument(
            "--from-env", action="store_true", help="read the Go gateway's AGENT_* variables"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="validate and report, write nothing"
        )

    def handle(self, *args: Any, file: str | None, from_env: bool, dry_run: bool, **options: Any):
        try:
            rows = self._rows_from_env() if from_env else json_read(file or "-")
            with transaction.atomic(), recording(author=AUTHOR, source=Source.IMPORT):
                report = agents_import(rows, dry_run=dry_run)
        except ImportRejected as exc:
            for line in exc.errors:
                self.stderr.write(line)
            raise CommandError(str(exc)) from exc
        for line in report.lines():
            self.stdout.write(line)
        summary = (
            f"{len(report.created)} created, {len(report.changed)} changed, "
            f"{len(report.unchanged)} unchanged"
        )
        self.stdout.write(f"{summary} (dry run: nothing written)" if dry_run else summary)

    def _rows_from_env(self) -> list[dict[str, Any]]:
        rows = agents_from_go_env(settings.GO_GATEWAY_AGENT_ENV, timeout_s=settings.AGENT_TIMEOUT)
        if not rows:
            raise CommandError("no AGENT_<KEY>_URL or AGENT_<KEY>_ENABLED variable is set")
        return rows
