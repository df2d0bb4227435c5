"""Keep every process's in-memory configuration in step with the database.

Any save or delete of an Agent (its endpoints, headers, failover steps), a RoutingName, or a
tenant row (and its routes and limits) bumps the `agents` ConfigVersion in the same transaction
(API keys: access/signals.py); after commit, the saving process refreshes at once, and every
other worker sees the new version on its next poll (fleet/sync.py).
"""

from typing import Any

from django.db.models.signals import post_delete, post_save

from agents.models import (
    Agent,
    AgentEndpoint,
    AgentHeader,
    FailoverStep,
    RoutingName,
    Tenant,
    TenantAgentLimit,
    TenantRoute,
)
from agents.selectors import AGENTS_VERSION
from agents.services import config_version_bump


def _agents_changed(**_: Any) -> None:
    config_version_bump(name=AGENTS_VERSION)


def connect() -> None:
    models = (
        Agent,
        AgentEndpoint,
        AgentHeader,
        FailoverStep,
        RoutingName,
        Tenant,
        TenantRoute,
        TenantAgentLimit,
    )
    for model in models:
        post_save.connect(
            _agents_changed, sender=model, dispatch_uid=f"agents-save-{model.__name__}"
        )
        post_delete.connect(
            _agents_changed, sender=model, dispatch_uid=f"agents-delete-{model.__name__}"
        )
