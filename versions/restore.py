"""Bring the configuration to a document: `manage.py import_config` and rollback to a version.

An import validates every section before it writes anything, writes in one transaction, and
returns the diff between the configuration before and after it. With `prune`, rows the document
leaves out are deleted, so the import restores the document exactly; a dry run does the same
work and rolls it back, so the diff it prints is the one a real run would apply.
"""

from typing import Any

from django.db import transaction

from access.transfer import api_keys_apply, api_keys_plan
from agents.models import Agent
from agents.tenant_transfer import tenants_apply, tenants_plan
from agents.transfer import ImportRejected, agents_apply, agents_plan
from versions.diff import ObjectChange, config_diff
from versions.document import SECTIONS, config_export
from versions.recording import recording


def config_import(
    document: Any,
    *,
    prune: bool = False,
    dry_run: bool = False,
    author: str,
    source: str,
    note: str = "",
) -> list[ObjectChange]:
    """Bring the configuration to `document` (a missing section is left alone, even with
    `prune`); raise ImportRejected, writing nothing, on any error. Recorded as one version by
    `author`."""
    if not isinstance(document, dict):
        raise ImportRejected(["the document must be a JSON object with agents, tenants, api_keys"])
    unknown = sorted(set(document) - set(SECTIONS))
    if unknown:
        raise ImportRejected([f"unknown section(s) {', '.join(unknown)}"])
    with transaction.atomic():
        before = config_export()
        with recording(author=author, source=source, note=note):
            _import(document, prune=prune)
        changes = config_diff(before, config_export())
        if dry_run:
            transaction.set_rollback(True)
    return changes


def _import(document: dict[str, Any], *, prune: bool) -> None:
    errors: list[str] = []
    agents = tenants = api_keys = None
    agent_keys = set(Agent.objects.values_list("key", flat=True))
    if "agents" in document:
        try:
            agents = agents_plan(document["agents"], prune=prune)
            agent_keys = agents.keys_after
        except ImportRejected as exc:
            errors += exc.errors
    if "tenants" in document:
        try:
            tenants = tenants_plan(document["tenants"], agent_keys=agent_keys, prune=prune)
        except ImportRejected as exc:
            errors += exc.errors
    if "api_keys" in document:
        try:
            api_keys = api_keys_plan(document["api_keys"], agent_keys=agent_keys, prune=prune)
        except ImportRejected as exc:
            errors += exc.errors
    if errors:
        raise ImportRejected(errors)
    if agents is not None:
        agents_apply(agents)
    if tenants is not None:
        tenants_apply(tenants)
    if api_keys is not None:
        api_keys_apply(api_keys)
