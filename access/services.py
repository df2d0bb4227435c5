"""Writes to the API keys. A key change bumps the `api_keys` version (access/signals.py)."""

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from access.keys import PREFIX_LENGTH, KeyStore, key_digest, key_generate
from access.models import ApiKey
from agents.models import ConfigVersion
from agents.selectors import API_KEYS_SEEN

ROTATE_REVOKED = "A revoked key cannot be rotated; add a new key instead."
_ROTATION_SUFFIX = re.compile(r"-r\d+$")


def api_keys_remember() -> None:
    """Record, once, that an API key row existed (auth stays on after the last one is gone)."""
    ConfigVersion.objects.get_or_create(name=API_KEYS_SEEN, defaults={"version": 1})


def api_key_create(*, name: str, **fields: object) -> tuple[ApiKey, str]:
    """Create a key row; returns it with the plain key, which is not stored anywhere."""
    plain = key_generate()
    api_key = ApiKey(name=name, **fields)
    api_key_set_secret(api_key, plain)
    api_key.full_clean()
    api_key.save()
    return api_key, plain


def api_key_rotate(
    *, api_key: ApiKey, grace: timedelta, name: str | None = None, now: datetime | None = None
) -> tuple[ApiKey, str]:
    """Replace `api_key` with a new key (named `name`, else derived from the old name) that has
    the same agents, empresas and rate limit, and no expiry. The old key expires at now + `grace`
    unless it already expires earlier. One transaction; returns the new row and its plain key.
    A revoked key is not rotated: its replacement would be enabled, and might reach every agent
    (a key is disabled when its only allowed agent is deleted)."""
    now = now or timezone.now()
    with transaction.atomic():
        old = ApiKey.objects.select_for_update().get(pk=api_key.pk)
        if not old.enabled:
            raise ValidationError(ROTATE_REVOKED)
        ends = now + grace
        if old.expires_at is None or old.expires_at > ends:
            old.expires_at = ends
            old.save(update_fields=["expires_at"])
        new, plain = api_key_create(
            name=name or api_key_rotated_name(old.name),
            empresas=list(old.empresas),
            requests_per_minute=old.requests_per_minute,
        )
        new.allowed_agents.set(old.allowed_agents.all())
    api_key.expires_at = old.expires_at
    return new, plain


def api_key_rotated_name(name: str) -> str:
    """The first free name of the form '<name>-r2', '<name>-r3'… ('n8n-r2' is followed by
    'n8n-r3', not 'n8n-r2-r2'), within the field's 100 characters."""
    base = _ROTATION_SUFFIX.sub("", name)
    taken = set(ApiKey.objects.filter(name__startswith=base[:90]).values_list("name", flat=True))
    number = 2
    while (candidate := f"{base[:90]}-r{number}") in taken:
        number += 1
    return candidate


def api_key_set_secret(api_key: ApiKey, plain: str) -> None:
    api_key.key_hash = key_digest(plain)
    api_key.prefix = plain[:PREFIX_LENGTH]


def api_keys_mark_used(used: dict[int, float]) -> None:
    """Write `last_used_at` for keys used since the last write (no version bump: not config)."""
    for key_id, used_at in used.items():
        ApiKey.objects.filter(pk=key_id).update(
            last_used_at=datetime.fromtimestamp(used_at, tz=UTC)
        )


class KeyUseWriter:
    """Writes the keys' `last_used_at` in batches from the poll thread (a poll duty:
    fleet/sync.py); the hot path only notes a use in memory (KeyStore.mark_used)."""

    def __init__(self, store: KeyStore) -> None:
        self._store = store

    def start(self) -> None:
        return None

    def run(self, versions: Mapping[str, int] | None) -> None:
        if versions is not None:
            api_keys_mark_used(self._store.take_due_uses())

    def stop(self) -> None:
        return None
