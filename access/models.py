"""API keys: who may call the chat endpoint, which agents and empresas it may reach, at what
rate."""

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from agents.models.configuration import bounds_validators


def empresa_ids_validator(value: Any) -> None:
    if not isinstance(value, list) or not all(
        isinstance(item, int) and not isinstance(item, bool) and item > 0 for item in value
    ):
        raise ValidationError("Enter a list of id_empresa numbers above 0, e.g. [1, 2].")


class ApiKey(models.Model):
    """A caller's key for the chat endpoint. Only its SHA-256 digest is stored; the key itself is
    shown once, when it is created."""

    name = models.CharField(max_length=100, unique=True, help_text="Who uses this key (n8n prod…).")
    prefix = models.CharField(
        max_length=16, editable=False, help_text="The key's first characters, to recognise it."
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    enabled = models.BooleanField(
        default=True, help_text="Untick to revoke: every worker refuses the key within 2 s."
    )
    allowed_agents = models.ManyToManyField(
        "agents.Agent",
        blank=True,
        related_name="api_keys",
        help_text="Agents this key may reach. None selected: every agent. Others get a 403.",
    )
    empresas = models.JSONField(
        default=list,
        blank=True,
        validators=[empresa_ids_validator],
        help_text="The id_empresa values this key may act for, as a list: [1, 2]. Empty: every "
        "empresa. Others, and requests without an id_empresa, get a 403.",
    )
    requests_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=bounds_validators(1, 1_000_000),
        help_text="Rate limit for this key; more requests get a 429 with Retry-After. "
        "Blank: the RATE_LIMIT_PER_MINUTE setting.",
    )
    expires_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="From this moment every worker refuses the key (401), without a reload. "
        "Blank: never. Rotating a key sets it on the old key.",
    )
    last_used_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Updated about once a minute."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "agents_apikey"  # the table it had in the agents app
        ordering = ["name"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())
