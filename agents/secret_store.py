"""The agents' stored secrets (header values, TLS client keys) as a whole: which ones no
configured key reads, and re-encrypting every one with the first key (`manage.py
rotate_secrets`)."""

from dataclasses import dataclass, field

from django.db import transaction

from agents.models import Agent, AgentHeader
from agents.secrets import SecretUnreadable, secret_decrypt, secret_rotated


@dataclass
class RotationReport:
    rotated: int = 0  # re-encrypted with the first key
    current: int = 0  # already encrypted with it
    agents: list[str] = field(default_factory=list)  # agents with at least one re-encrypted


def unreadable_secrets() -> dict[str, list[str]]:
    """Agent key -> its secrets no configured key decrypts (e.g. "header X-Api-Key: encrypted
    with key 1a2b3c4d, which GATEWAY_SECRETS_KEYS does not hold")."""
    found: dict[str, list[str]] = {}
    for key, what, stored in _stored_secrets():
        try:
            secret_decrypt(stored)
        except SecretUnreadable as exc:
            found.setdefault(key, []).append(f"{what}: {exc}")
    return found


def secrets_rotate() -> RotationReport:
    """Re-encrypt every stored secret with the first key, in one transaction; raise
    SecretUnreadable (writing nothing) when one cannot be read."""
    unreadable = unreadable_secrets()
    if unreadable:
        lines = [f"{key} {line}" for key, problems in unreadable.items() for line in problems]
        raise SecretUnreadable("; ".join(lines))
    report = RotationReport()
    changed: set[str] = set()
    with transaction.atomic():
        for header in AgentHeader.objects.select_related("agent").select_for_update():
            if _rotate(header, "value", report):
                changed.add(header.agent.key)
        for agent in Agent.objects.exclude(tls_client_key="").select_for_update():
            if _rotate(agent, "tls_client_key", report):
                changed.add(agent.key)
    report.agents = sorted(changed)
    return report


def _stored_secrets() -> list[tuple[str, str, str]]:
    """(agent key, what, stored form) of every stored secret."""
    secrets = [
        (agent_key, f"header {name}", value)
        for agent_key, name, value in AgentHeader.objects.values_list("agent__key", "name", "value")
    ]
    secrets += [
        (key, "TLS client key", stored)
        for key, stored in Agent.objects.exclude(tls_client_key="").values_list(
            "key", "tls_client_key"
        )
    ]
    return sorted(secrets)


def _rotate(row: Agent | AgentHeader, field: str, report: RotationReport) -> bool:
    """Re-encrypt one stored secret with the first key; True when it changed."""
    stored = getattr(row, field)
    rotated = secret_rotated(stored)
    if rotated == stored:
        report.current += 1
        return False
    setattr(row, field, rotated)
    row.save(update_fields=[field])
    report.rotated += 1
    return True
