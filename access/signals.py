"""Any change to an ApiKey (its allowed agents included) bumps the `api_keys` version in the same
transaction; an agent's deletion never widens a key."""

import logging
from typing import Any

from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete

from access.models import ApiKey
from access.services import api_keys_remember
from agents.models import Agent
from agents.selectors import API_KEYS_VERSION
from agents.services import config_version_bump

logger = logging.getLogger("gateway.registry")


def _api_keys_changed(*, action: str = "", **_: Any) -> None:
    if action and not action.startswith("post_"):
        return  # m2m_changed fires pre_ and post_; one bump is enough
    api_keys_remember()
    config_version_bump(name=API_KEYS_VERSION)


def _keys_lose_agent(*, instance: Agent, **_: Any) -> None:
    """An agent is being deleted: a key allowed only that agent would be left with none
    selected, which means every agent; disable such keys instead, so a deletion never widens a
    key. Keys that also allow other agents just lose this one."""
    keys = list(ApiKey.objects.filter(allowed_agents=instance).prefetch_related("allowed_agents"))
    if not keys:
        return
    orphaned = [
        k for k in keys if k.enabled and {a.pk for a in k.allowed_agents.all()} == {instance.pk}
    ]
    if orphaned:
        ApiKey.objects.filter(pk__in=[k.pk for k in orphaned]).update(enabled=False)
        logger.warning(
            "disabled API keys whose only allowed agent was deleted",
            extra={"event": "api_keys_disabled", "agent": instance.key,
                   "api_keys": [k.name for k in orphaned]},
        )  # fmt: skip
    config_version_bump(name=API_KEYS_VERSION)


def connect() -> None:
    pre_delete.connect(_keys_lose_agent, sender=Agent, dispatch_uid="api-keys-lose-agent")
    post_save.connect(_api_keys_changed, sender=ApiKey, dispatch_uid="api-keys-save")
    post_delete.connect(_api_keys_changed, sender=ApiKey, dispatch_uid="api-keys-delete")
    m2m_changed.connect(
        _api_keys_changed, sender=ApiKey.allowed_agents.through, dispatch_uid="api-keys-agents"
    )
