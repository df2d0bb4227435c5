"""Writes to the agent configuration. Every write path ends in `config_version_bump`."""

from django.db import transaction
from django.db.models import F

from agents.models import Agent, ConfigVersion
from agents.selectors import AGENTS_VERSION


def config_version_bump(*, name: str = AGENTS_VERSION) -> None:
    """Mark the configuration changed and, after commit, refresh this process's registry."""
    updated = ConfigVersion.objects.filter(name=name).update(version=F("version") + 1)
    if not updated:
        ConfigVersion.objects.get_or_create(name=name, defaults={"version": 1})
    if name == AGENTS_VERSION:
        from agents.sync import registry_sync

        transaction.on_commit(registry_sync.refresh_now)


def agent_set_enabled(*, keys: list[str], enabled: bool) -> int:
    with transaction.atomic():
        count = Agent.objects.filter(key__in=keys).update(enabled=enabled)
        if count:
            config_version_bump()
    return count
