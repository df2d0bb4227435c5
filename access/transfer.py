"""API key rows as JSON (the `api_keys` section of `manage.py export_config`), and their
import. A row carries the key's digest and prefix, never the key: a restored key authenticates
because its digest is the same.

A row is matched to a stored key by its digest; the name may change.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.dateparse import parse_datetime

from access.models import ApiKey
from agents.models import Agent
from agents.transfer import ImportRejected, RowWalk, validation_lines

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def api_keys_export() -> list[dict[str, Any]]:
    """Every API key as a JSON-ready object, ordered by name."""
    rows = []
    for key in ApiKey.objects.prefetch_related("allowed_agents").order_by("name"):
        rows.append({
            "name": key.name,
            "prefix": key.prefix,
            "digest": key.key_hash,
            "enabled": key.enabled,
            "agents": sorted(a.key for a in key.allowed_agents.all()),
            "empresas": sorted(key.empresas),
            "requests_per_minute": key.requests_per_minute,
            "expires_at": _iso(key.expires_at),
        })  # fmt: skip
    return rows


FIELDS = ("name", "prefix", "digest", "enabled", "agents", "empresas", "requests_per_minute",
          "expires_at")  # fmt: skip
_MODEL_FIELDS = {"name": "name", "prefix": "prefix", "digest": "key_hash", "enabled": "enabled",
                 "empresas": "empresas", "requests_per_minute": "requests_per_minute",
                 "expires_at": "expires_at"}  # fmt: skip


def _iso(moment: datetime | None) -> str | None:
    """An expiry as exported: ISO 8601 in UTC, so an export re-imports to the same text."""
    return None if moment is None else moment.astimezone(UTC).isoformat()


def _expiry(value: Any) -> datetime | None:
    if value is None:
        return None
    moment = parse_datetime(value) if isinstance(value, str) else None
    if moment is None or moment.tzinfo is None:
        raise ValueError("'expires_at' must be null or an ISO 8601 time with its UTC offset")
    return moment


@dataclass
class _KeyRow:
    api_key: ApiKey
    agents: list[str]


@dataclass
class ApiKeysPlan:
    rows: list[_KeyRow]
    deleted: list[str]  # digests of pruned keys


def api_keys_plan(rows: Any, *, agent_keys: set[str], prune: bool = False) -> ApiKeysPlan:
    """Validate API key rows; `agent_keys` are the agents that exist once the import is done.
    Raise ImportRejected listing every error."""
    if not isinstance(rows, list):
        raise ImportRejected(["the api_keys must be a JSON list of key objects"])
    existing = {k.key_hash: k for k in ApiKey.objects.prefetch_related("allowed_agents")}
    errors: list[str] = []
    plan: list[_KeyRow] = []
    seen: set[str] = set()
    names: dict[str, str] = {}
    hint = ", 64 lower-case hex digits (SHA-256)"
    walk = RowWalk("api key row", "digest", set(FIELDS), errors, hint=hint)
    for where, digest, row in walk.rows(rows, _is_digest, shown="name"):
        seen.add(digest)
        api_key = existing.get(digest) or ApiKey(key_hash=digest)
        before_agents = sorted(a.key for a in api_key.allowed_agents.all()) if api_key.pk else []
        try:
            expires_at = _expiry(row["expires_at"]) if "expires_at" in row else api_key.expires_at
        except ValueError as exc:
            errors.append(f"{where}: {exc}")
            continue
        for name, attr in _MODEL_FIELDS.items():
            if name in row and name not in ("digest", "expires_at"):
                setattr(api_key, attr, row[name])
        api_key.expires_at = expires_at
        agents = row.get("agents", before_agents)
        if not isinstance(agents, list) or not all(isinstance(a, str) for a in agents):
            errors.append(f"{where}: 'agents' must be a list of agent keys")
            continue
        missing = sorted(set(agents) - agent_keys)
        if missing:
            errors.append(f"{where}: agents: no agent {', '.join(map(repr, missing))}")
            continue
        try:
            api_key.full_clean(validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            errors += validation_lines(where, exc)
            continue
        if api_key.name in names:
            errors.append(f"{where}: the name {api_key.name!r} appears more than once")
            continue
        names[api_key.name] = digest
        plan.append(_KeyRow(api_key, sorted(set(agents))))
    deleted = sorted(set(existing) - seen) if prune else []
    for name, digest in names.items():
        other = next((k for d, k in existing.items() if k.name == name and d != digest), None)
        if other is not None and other.key_hash not in deleted and other.key_hash not in seen:
            errors.append(f"api key {name!r}: another stored key has that name")
    if errors:
        raise ImportRejected(errors)
    return ApiKeysPlan(plan, deleted)


def _is_digest(value: Any) -> bool:
    return isinstance(value, str) and bool(_DIGEST.match(value))


def api_keys_apply(plan: ApiKeysPlan) -> None:
    """Write a plan in one transaction, comparing with the rows as they are now (pruning an
    agent may have disabled a key). Names are unique: pruned and renamed keys give theirs up
    first, so two keys may swap names."""
    with transaction.atomic():
        for api_key in ApiKey.objects.filter(key_hash__in=plan.deleted):
            api_key.delete()
        stored = {k.pk: k for k in ApiKey.objects.prefetch_related("allowed_agents")}
        for row in plan.rows:
            old = stored.get(row.api_key.pk)
            if old is not None and old.name != row.api_key.name:
                ApiKey.objects.filter(pk=old.pk).update(name=f"\0{old.pk}")
        agents = {a.key: a for a in Agent.objects.all()}
        for row in plan.rows:
            api_key, old = row.api_key, stored.get(row.api_key.pk)
            if old is None or _values(old) != _values(api_key):
                api_key.save()
            current = sorted(a.key for a in old.allowed_agents.all()) if old else []
            if current != row.agents:
                api_key.allowed_agents.set([agents[key] for key in row.agents])


def _values(api_key: ApiKey) -> dict[str, Any]:
    return {name: getattr(api_key, attr) for name, attr in _MODEL_FIELDS.items()}
