"""System checks run at startup (`manage.py check`), with stable IDs."""

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.db import DatabaseError

from agents.secret_store import unreadable_secrets


def check_gateway_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    problems: list[Any] = []
    if not 0.5 <= float(settings.AGENT_TIMEOUT) <= 120:
        problems.append(
            Error("AGENT_TIMEOUT must be between 0.5 and 120 seconds.", id="agents.E001")
        )
    if float(settings.REGISTRY_POLL_INTERVAL_S) > 2:
        problems.append(
            Warning(
                "REGISTRY_POLL_INTERVAL_S above 2 s: admin changes reach other workers later "
                "than the documented 2 s.",
                id="agents.W001",
            )
        )
    if settings.CORS_ALLOW_ALL_ORIGINS and settings.CORS_ALLOW_CREDENTIALS:
        problems.append(
            Error("CORS '*' must never be combined with credentials.", id="agents.E002")
        )
    return problems


def check_agent_secrets(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list:
    """Agents whose secrets no configured key reads (`manage.py check --database default`,
    migrate): each would reach its agent without them."""
    if not databases:
        return []
    try:
        unreadable = unreadable_secrets()
    except DatabaseError:
        return []  # not migrated yet, or unreachable: other checks and the start-up say so
    return [
        Error(
            f"agent {key}: {problem}",
            hint="Add the key that encrypted it to GATEWAY_SECRETS_KEYS, or enter the secret "
            "again in the admin.",
            id="agents.E003",
        )
        for key, problems in unreadable.items()
        for problem in problems
    ]


def register_all() -> None:
    register(Tags.security)(check_gateway_settings)
    register(Tags.database)(check_agent_secrets)
