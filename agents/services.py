"""Writes to the agent configuration. Every write path ends in `config_version_bump`."""

from datetime import UTC, datetime

from django.db import transaction
from django.db.models import F

from agents.keys import PREFIX_LENGTH, key_digest, key_generate
from agents.models import Agent, ApiKey, BreakerReset, ConfigVersion
from agents.selectors import AGENTS_VERSION, API_KEYS_SEEN, COMMANDS_VERSION


def config_version_bump(*, name: str = AGENTS_VERSION) -> None:
    """Mark the configuration changed; after commit, refresh this process and notify the rest."""
    updated = ConfigVersion.objects.filter(name=name).update(version=F("version") + 1)
    if not updated:
        ConfigVersion.objects.get_or_create(name=name, defaults={"version": 1})
    from agents.sync import registry_sync

    transaction.on_commit(lambda: registry_sync.changed(name))


def api_keys_remember() -> None:
    """Record, once, that an API key row existed (auth stays on after the last one is gone)."""
    ConfigVersion.objects.get_or_create(name=API_KEYS_SEEN, defaults={"version": 1})


def agent_set_enabled(*, keys: list[str], enabled: bool) -> int:
    with transaction.atomic():
        count = Agent.objects.filter(key__in=keys).update(enabled=enabled)
        if count:
            config_version_bump()
    return count


def api_key_create(*, name: str, **fields: object) -> tuple[ApiKey, str]:
    """Create a key row; returns it with the plain key, which is not stored anywhere."""
    plain = key_generate()
    api_key = ApiKey(name=name, **fields)
    api_key_set_secret(api_key, plain)
    api_key.full_clean()
    api_key.save()
    return api_key, plain


def api_key_set_secret(api_key: ApiKey, plain: str) -> None:
    api_key.key_hash = key_digest(plain)
    api_key.prefix = plain[:PREFIX_LENGTH]


def api_keys_mark_used(used: dict[int, float]) -> None:
    """Write `last_used_at` for keys used since the last write (no version bump: not config)."""
    for key_id, used_at in used.items():
        ApiKey.objects.filter(pk=key_id).update(
            last_used_at=datetime.fromtimestamp(used_at, tz=UTC)
        )


def breaker_reset_request(*, keys: list[str]) -> None:
    """Ask every serving process to close these agents' breakers (within a poll interval)."""
    with transaction.atomic():
        BreakerReset.objects.bulk_create([BreakerReset(agent_key=key) for key in keys])
        config_version_bump(name=COMMANDS_VERSION)
