"""Reads from the database (sync ORM; never called on the async hot path)."""

from agents.keys import KeyEntry
from agents.models import Agent, ApiKey, ConfigVersion
from agents.specs import AgentSpec

AGENTS_VERSION = "agents"
API_KEYS_VERSION = "api_keys"
COMMANDS_VERSION = "commands"
# A row that exists once any API key row was ever saved or deleted: auth stays on after the
# last key is gone (GATEWAY_AUTH=auto), across restarts.
API_KEYS_SEEN = "api_keys_seen"


def config_version_get(*, name: str = AGENTS_VERSION) -> int:
    row = ConfigVersion.objects.filter(name=name).values_list("version", flat=True).first()
    return int(row or 0)


def agent_specs_load() -> tuple[int, list[AgentSpec]]:
    """Every agent as an AgentSpec, with the version it was read at (read version first, so a
    concurrent change makes the next poll reload rather than being missed)."""
    version = config_version_get()
    agents = Agent.objects.prefetch_related("routing_names").order_by("key")
    specs = [
        AgentSpec.from_agent(agent, [r.name for r in agent.routing_names.all()]) for agent in agents
    ]
    return version, specs


def config_versions_get() -> dict[str, int]:
    """Every configuration version in one query (the poller's only read per interval)."""
    return dict(ConfigVersion.objects.values_list("name", "version"))


def api_keys_load() -> tuple[int, bool, list[tuple[str, KeyEntry]]]:
    """Every API key as (digest, KeyEntry), with the version it was read at (read first), and
    whether a key row ever existed."""
    version = config_version_get(name=API_KEYS_VERSION)
    seen = ConfigVersion.objects.filter(name=API_KEYS_SEEN).exists()
    keys = ApiKey.objects.prefetch_related("allowed_agents")
    return version, seen, [
        (
            key.key_hash,
            KeyEntry(
                id=key.pk,
                name=key.name,
                enabled=key.enabled,
                allowed_agents=frozenset(a.key for a in key.allowed_agents.all()) or None,
                requests_per_minute=key.requests_per_minute,
            ),
        )
        for key in keys
    ]
