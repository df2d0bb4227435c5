"""`manage.py rotate_secrets`: re-encrypt every stored secret (agents' header values and TLS
client keys) with the first key of GATEWAY_SECRETS_KEYS; one transaction, one version."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from agents.secret_store import secrets_rotate
from agents.secrets import SecretUnreadable, secrets_key_derived, secrets_key_fingerprints
from versions.models import Source
from versions.recording import recording


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret with the first key of GATEWAY_SECRETS_KEYS. Rotation: "
        "put the new key first (GATEWAY_SECRETS_KEYS=new,old), restart, run this, then drop "
        "the old key. Nothing is written when a secret cannot be read by any configured key."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if secrets_key_derived():
            self.stderr.write(
                "warning: GATEWAY_SECRETS_KEYS is not set; the key is derived from SECRET_KEY"
            )
        try:
            with transaction.atomic(), recording(
                author="manage.py rotate_secrets", source=Source.COMMAND,
                note="secrets re-encrypted with the first key",
            ):  # fmt: skip
                report = secrets_rotate()
        except SecretUnreadable as exc:
            raise CommandError(f"nothing was re-encrypted: {exc}") from exc
        first = secrets_key_fingerprints()[0]
        self.stdout.write(
            f"re-encrypted {report.rotated} secret(s) with key {first}; "
            f"{report.current} already used it"
        )
        if report.agents:
            self.stdout.write(f"agents: {', '.join(report.agents)}")
