"""Reads of the agent configuration and its versions (sync ORM; never on the async hot path)."""

from agents.models import ConfigVersion

AGENTS_VERSION = "agents"
API_KEYS_VERSION = "api_keys"
COMMANDS_VERSION = "commands"
# A row that exists once any API key row was ever saved or deleted: auth stays on after the
# last key is gone (GATEWAY_AUTH=auto), across restarts.
API_KEYS_SEEN = "api_keys_seen"


def config_version_get(*, name: str = AGENTS_VERSION) -> int:
    row = ConfigVersion.objects.filter(name=name).values_list("version", flat=True).first()
    return int(row or 0)


def config_versions_get() -> dict[str, int]:
    """Every configuration version in one query (the poller's only read per interval)."""
    return dict(ConfigVersion.objects.values_list("name", "version"))
