"""Reads from the database (sync ORM; never called on the async hot path)."""

from agents.models import Agent, ConfigVersion
from agents.specs import AgentSpec

AGENTS_VERSION = "agents"


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
