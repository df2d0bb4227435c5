"""System checks run at startup (`manage.py check`), with stable IDs."""

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


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


def register_all() -> None:
    register(Tags.security)(check_gateway_settings)
