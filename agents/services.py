"""Writes to the agent configuration. Every write path ends in `config_version_bump`."""

from dataclasses import dataclass

from django.db import transaction
from django.db.models import F
from django.dispatch import Signal

from agents.models import Agent, BreakerReset, ConfigVersion
from agents.selectors import AGENTS_VERSION, COMMANDS_VERSION

# Sent after the commit of a change, with `name` = the version bumped. Change propagation
# (fleet/sync.py) listens: the configuration domain never imports the rooms that follow it.
config_changed = Signal()
# Sent inside the writing transaction, with `name` = the version bumped: versions/recording.py
# records the change in that same transaction.
config_written = Signal()


@dataclass(frozen=True, slots=True)
class _ConfigChanged:
    """The after-commit call for one version name (equal ones are one: see below)."""

    name: str

    def __call__(self) -> None:
        config_changed.send(sender=config_version_bump, name=self.name)


def config_version_bump(*, name: str = AGENTS_VERSION) -> None:
    """Mark the configuration changed; after commit, tell `config_changed`'s receivers (which
    refresh this process and notify the others) once per transaction and name: an admin save
    with ten inline rows bumps ten times, and this process then reloads once, not ten times.
    (Django keeps a transaction's pending after-commit calls in `connection.run_on_commit`,
    each with the savepoints it belongs to: one already pending outside a savepoint that rolls
    back still runs; one inside it goes with it, and the next bump registers its own.)"""
    updated = ConfigVersion.objects.filter(name=name).update(version=F("version") + 1)
    if not updated:
        ConfigVersion.objects.get_or_create(name=name, defaults={"version": 1})
    config_written.send(sender=config_version_bump, name=name)
    changed = _ConfigChanged(name)
    pending = transaction.get_connection().run_on_commit
    if not any(call == changed for _savepoints, call, _robust in pending):
        transaction.on_commit(changed)


def agent_set_enabled(*, keys: list[str], enabled: bool) -> int:
    with transaction.atomic():
        count = Agent.objects.filter(key__in=keys).update(enabled=enabled)
        if count:
            config_version_bump()
    return count


def breaker_reset_request(*, keys: list[str]) -> None:
    """Ask every serving process to close these agents' breakers (within a poll interval)."""
    with transaction.atomic():
        BreakerReset.objects.bulk_create([BreakerReset(agent_key=key) for key in keys])
        config_version_bump(name=COMMANDS_VERSION)
