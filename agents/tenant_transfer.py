"""Tenant rows as JSON (the `tenants` section of `manage.py export_config`), and their import.

A row is the Tenant's fields plus `routes` (modalidad -> agent key) and, when it has any,
`agent_limits` (agent key -> calls in flight). Like agents, every row is validated before
anything is written, and importing the same rows twice changes nothing the second time.
"""

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from agents.models import Agent, Tenant, TenantAgentLimit, TenantRoute, normalize_routing_name
from agents.transfer import ImportRejected, RowWalk, validation_lines

TENANT_FIELDS = ("id_empresa", "name", "enabled", "max_concurrency", "requests_per_minute")
ROUTES_FIELD = "routes"
AGENT_LIMITS_FIELD = "agent_limits"


def tenants_export() -> list[dict[str, Any]]:
    """Every tenant as a JSON-ready object, ordered by id_empresa."""
    tenants = Tenant.objects.prefetch_related("routes__agent", "agent_limits__agent")
    rows = []
    for tenant in tenants.order_by("id_empresa"):
        row: dict[str, Any] = {name: getattr(tenant, name) for name in TENANT_FIELDS}
        row[ROUTES_FIELD] = {r.name: r.agent.key for r in sorted(tenant.routes.all(),
                                                                 key=lambda r: r.name)}  # fmt: skip
        limits = {lim.agent.key: lim.max_concurrency for lim in tenant.agent_limits.all()}
        if limits:
            row[AGENT_LIMITS_FIELD] = dict(sorted(limits.items()))
        rows.append(row)
    return rows


@dataclass
class _TenantRow:
    tenant: Tenant
    routes: dict[str, str]
    limits: dict[str, int]
    changed: bool


@dataclass
class TenantsPlan:
    rows: list[_TenantRow]
    deleted: list[int]  # id_empresa of pruned tenants


def tenants_plan(rows: Any, *, agent_keys: set[str], prune: bool = False) -> TenantsPlan:
    """Validate tenant rows; `agent_keys` are the agents that exist once the import is done.
    Raise ImportRejected listing every error."""
    if not isinstance(rows, list):
        raise ImportRejected(["the tenants must be a JSON list of tenant objects"])
    existing = {t.id_empresa: t for t in Tenant.objects.all()}
    allowed = {*TENANT_FIELDS, ROUTES_FIELD, AGENT_LIMITS_FIELD}
    errors: list[str] = []
    plan: list[_TenantRow] = []
    walk = RowWalk("tenant row", "id_empresa", allowed, errors, hint=", a number above 0")
    seen: set[int] = set()
    for where, id_empresa, row in walk.rows(rows, _is_id_empresa):
        seen.add(id_empresa)
        tenant = existing.get(id_empresa) or Tenant(id_empresa=id_empresa)
        before = {name: getattr(tenant, name) for name in TENANT_FIELDS}
        for name in TENANT_FIELDS:
            if name in row:
                setattr(tenant, name, row[name])
        try:
            tenant.full_clean(validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            errors += validation_lines(where, exc)
            continue
        routes, route_errors = _routes(row.get(ROUTES_FIELD, {}), agent_keys)
        limits, limit_errors = _limits(row.get(AGENT_LIMITS_FIELD, {}), agent_keys)
        if route_errors or limit_errors:
            errors += [f"{where}: {error}" for error in route_errors + limit_errors]
            continue
        changed = {name: getattr(tenant, name) for name in TENANT_FIELDS} != before
        plan.append(_TenantRow(tenant, routes, limits, changed))
    if errors:
        raise ImportRejected(errors)
    deleted = sorted(set(existing) - seen) if prune else []
    return TenantsPlan(plan, deleted)


def tenants_apply(plan: TenantsPlan) -> None:
    """Write a plan in one transaction; a row's routes and agent limits become exactly its own."""
    with transaction.atomic():
        for tenant in Tenant.objects.filter(id_empresa__in=plan.deleted):
            tenant.delete()
        agents = {a.key: a for a in Agent.objects.all()}
        for row in plan.rows:
            tenant = row.tenant
            if tenant.pk is None or row.changed:
                tenant.save()
            _sync_routes(tenant, row.routes, agents)
            _sync_limits(tenant, row.limits, agents)


def _sync_routes(tenant: Tenant, routes: dict[str, str], agents: dict[str, Agent]) -> None:
    current = {r.name: r for r in tenant.routes.select_related("agent")}
    for name, route in current.items():
        if routes.get(name) != route.agent.key:
            route.delete()
    for name, key in routes.items():
        if name not in current or current[name].agent.key != key:
            TenantRoute.objects.create(tenant=tenant, name=name, agent=agents[key])


def _sync_limits(tenant: Tenant, limits: dict[str, int], agents: dict[str, Agent]) -> None:
    current = {lim.agent.key: lim for lim in tenant.agent_limits.select_related("agent")}
    for key, limit in current.items():
        if key not in limits:
            limit.delete()
        elif limit.max_concurrency != limits[key]:
            limit.max_concurrency = limits[key]
            limit.save()
    for key, cap in limits.items():
        if key not in current:
            TenantAgentLimit.objects.create(tenant=tenant, agent=agents[key], max_concurrency=cap)


def _is_id_empresa(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _routes(raw: Any, agent_keys: set[str]) -> tuple[dict[str, str], list[str]]:
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        return {}, [f"'{ROUTES_FIELD}' must be an object: modalidad -> agent key"]
    routes: dict[str, str] = {}
    errors: list[str] = []
    for name, key in raw.items():
        normal = normalize_routing_name(name)
        if not normal or len(normal) > TenantRoute._meta.get_field("name").max_length:
            errors.append(f"route {name!r}: not a valid modalidad")
        elif normal in routes:
            errors.append(f"route {name!r}: appears more than once")
        elif key not in agent_keys:
            errors.append(f"route {name!r}: no agent {key!r}")
        else:
            routes[normal] = key
    return dict(sorted(routes.items())), errors


def _limits(raw: Any, agent_keys: set[str]) -> tuple[dict[str, int], list[str]]:
    if not isinstance(raw, dict):
        return {}, [f"'{AGENT_LIMITS_FIELD}' must be an object: agent key -> number"]
    field = TenantAgentLimit._meta.get_field("max_concurrency")
    errors: list[str] = []
    limits: dict[str, int] = {}
    for key, cap in raw.items():
        if key not in agent_keys:
            errors.append(f"agent limit {key!r}: no such agent")
            continue
        try:
            if not isinstance(cap, int) or isinstance(cap, bool):
                raise ValidationError("must be a whole number")
            field.run_validators(cap)
        except ValidationError as exc:
            errors.append(f"agent limit {key!r}: {' '.join(exc.messages)}")
            continue
        limits[key] = cap
    return limits, errors
