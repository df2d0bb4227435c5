"""Writes to the API keys. A key change bumps the `api_keys` version (access/signals.py)."""

from collections.abc import Mapping
from datetime import UTC, datetime

from access.keys import PREFIX_LENGTH, KeyStore, key_digest, key_generate
from access.models import ApiKey
from agents.models import ConfigVersion
from agents.selectors import API_KEYS_SEEN


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
