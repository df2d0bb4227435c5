"""Reads of the API keys (sync ORM; never on the async hot path)."""

import math

from access.keys import KeyEntry
from access.models import ApiKey
from agents.models import ConfigVersion
from agents.selectors import API_KEYS_SEEN, API_KEYS_VERSION, config_version_get


def api_keys_load() -> tuple[int, bool, list[tuple[str, KeyEntry]]]:
    """Every API key as (digest, KeyEntry), with the version it was read at (read first), and
    whether a key row ever existed."""
    version = config_version_get(name=API_KEYS_VERSION)
    seen = ConfigVersion.objects.filter(name=API_KEYS_SEEN).exists()
    keys = ApiKey.objects.prefetch_related("allowed_agents")
    return (
        version,
        seen,
        [
            (
                key.key_hash,
                KeyEntry(
                    id=key.pk,
                    name=key.name,
                    enabled=key.enabled,
                    allowed_agents=frozenset(a.key for a in key.allowed_agents.all()) or None,
                    requests_per_minute=key.requests_per_minute,
                    allowed_empresas=frozenset(key.empresas) or None,
                    expires_at=key.expires_at.timestamp() if key.expires_at else math.inf,
                ),
            )
            for key in keys
        ],
    )
