"""Agent definitions as JSON documents: export, import (from a file or the Go gateway's
environment), shared by the management commands and the admin.

A document is a list of objects with the model's field names plus `modalidades` (the routing
names) and, for an agent pool, `endpoints` (a list of `{"url", "weight", "enabled"}`; a row with
only `url` is one endpoint). Import validates every row against the model and against the state the whole import
would leave behind (routing names unique across agents, at most one fallback route) before it
writes anything, then writes in one transaction. Importing the same document twice changes
nothing the second time.
"""

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from agents.models import Agent, AgentEndpoint, RoutingName, normalize_routing_name

ROUTING_NAMES_FIELD = "modalidades"
ENDPOINTS_FIELD = "endpoints"
EXPORTED_FIELDS = (
    "key",
    "name",
    "url",
    "health_url",
    "enabled",
    "payload_format",
    "timeout_s",
    "connect_timeout_s",
    "max_concurrency",
    "max_connections",
    "breaker_fail_max",
    "breaker_reset_s",
    "retries",
    "retry_on",
    "stream_idle_timeout_s",
    "stream_max_s",
    "fallback_reply",
    "is_fallback_route",
    "balance",
    "affinity",
)
# The Go gateway routed these keys by these names; a key imported from its environment for the
# first time gets them (any other new key is routed by its own name).
GO_GATEWAY_ROUTING_NAMES = {
    "venta": ["venta", "ventas"],
    "cita": ["cita", "citas"],
    "reserva": ["reserva", "reservas"],
    "citas_ventas": ["citas_ventas", "citas y ventas"],
}
_GO_VARIABLE = re.compile(r"^AGENT_(?P<key>[A-Z0-9_]+?)_(?P<kind>URL|ENABLED)$")
_GO_TRUE = {"1", "t", "true"}
_GO_FALSE = {"0", "f", "false"}


class ImportRejected(Exception):
    """The document has errors; nothing was written. `errors` lists them, one line each."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"{len(errors)} error(s); nothing was imported")
        self.errors = errors


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)  # key -> changed field names
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        lines = [f"created {key}" for key in self.created]
        lines += [f"changed {key}: {', '.join(fields)}" for key, fields in self.changed.items()]
        lines += [f"deleted {key}" for key in self.deleted]
        lines += [f"unchanged {key}" for key in self.unchanged]
        return lines


def _exported(agent: Agent, name: str) -> Any:
    """A field as exported: the connect timeout is the effective one (at most the timeout), so
    an export always re-imports."""
    if name == "connect_timeout_s":
        return agent.effective_connect_timeout_s
    return getattr(agent, name)


def agents_export() -> list[dict[str, Any]]:
    """Every agent as a JSON-ready object, ordered by key."""
    agents = Agent.objects.prefetch_related("routing_names", "endpoints").order_by("key")
    return [
        {
            **{name: _exported(agent, name) for name in EXPORTED_FIELDS},
            ROUTING_NAMES_FIELD: sorted(r.name for r in agent.routing_names.all()),
            **_endpoints_export(agent),
        }
        for agent in agents
    ]


# -- endpoints (agent pools) ---------------------------------------------------------------------

EndpointRows = list[tuple[str, int, bool]]  # (url, weight, enabled), in order


def _endpoints_export(agent: Agent) -> dict[str, Any]:
    """`endpoints` for an agent with endpoint rows; nothing for one with only its `url`."""
    rows = [{"url": e.url, "weight": e.weight, "enabled": e.enabled} for e in agent.endpoints.all()]
    return {ENDPOINTS_FIELD: rows} if rows else {}


def _endpoints_row(where: str, row: dict[str, Any]) -> tuple[EndpointRows | None, list[str]]:
    """A row's `endpoints` (None when it has none) and its errors, every one of them."""
    if ENDPOINTS_FIELD not in row:
        return None, []
    raw = row[ENDPOINTS_FIELD]
    if not isinstance(raw, list):
        return None, [f"{where}: '{ENDPOINTS_FIELD}' must be a list of endpoint objects"]
    errors: list[str] = []
    endpoints: EndpointRows = []
    seen: set[str] = set()
    for index, item in enumerate(raw, start=1):
        at = f"{where}: endpoint {index}"
        if not isinstance(item, dict):
            errors.append(f"{at}: must be an object")
            continue
        unknown = sorted(set(item) - {"url", "weight", "enabled"})
        if unknown:
            errors.append(f"{at}: unknown field(s) {', '.join(unknown)}")
            continue
        url, weight, enabled = item.get("url"), item.get("weight", 1), item.get("enabled", True)
        if not isinstance(url, str) or not url:
            errors.append(f"{at}: url: is required")
            continue
        if not isinstance(enabled, bool):
            errors.append(f"{at}: enabled: must be true or false")
            continue
        if isinstance(weight, bool) or not isinstance(weight, int):
            errors.append(f"{at}: weight: must be an integer from 1 to 100")
            continue
        try:
            AgentEndpoint(url=url, weight=weight, enabled=enabled).clean_fields(exclude=["agent"])
        except ValidationError as exc:
            errors.extend(validation_lines(at, exc))
            continue
        if url in seen:
            errors.append(f"{at}: url: {url} appears more than once")
            continue
        seen.add(url)
        endpoints.append((url, weight, enabled))
    return endpoints, errors


def _endpoints_changed(agent: Agent, endpoints: EndpointRows | None) -> bool:
    if endpoints is None or agent.pk is None:
        return False
    return [(e.url, e.weight, e.enabled) for e in agent.endpoints.all()] != endpoints


def _pool_error(where: str, agent: Agent, endpoints: EndpointRows | None) -> list[str]:
    """An agent needs its `url` or at least one endpoint."""
    has_rows = (
        bool(endpoints)
        if endpoints is not None
        else (agent.pk is not None and bool(agent.endpoints.all()))
    )
    if agent.url or has_rows:
        return []
    return [f"{where}: give 'url' or at least one entry in '{ENDPOINTS_FIELD}'"]


def _endpoints_apply(agent: Agent, endpoints: EndpointRows | None) -> None:
    """Replace the agent's endpoint rows with `endpoints`, when they differ."""
    if endpoints is None or (agent.pk is not None and not _endpoints_changed(agent, endpoints)):
        return
    agent.endpoints.all().delete()
    for position, (url, weight, enabled) in enumerate(endpoints):  # one by one: signals fire
        AgentEndpoint.objects.create(
            agent=agent, url=url, weight=weight, enabled=enabled, position=position
        )


def agents_from_go_env(variables: Mapping[str, str], *, timeout_s: float) -> list[dict[str, Any]]:
    """Rows for `agents_import` from `AGENT_<KEY>_URL` / `AGENT_<KEY>_ENABLED` variables.

    An agent with a URL and no ENABLED variable is enabled, as in the Go gateway. New agents get
    the Go gateway's routing names; existing ones keep theirs.
    """
    rows: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    for name, value in sorted(variables.items()):
        match = _GO_VARIABLE.match(name)
        if match is None:
            continue
        key = match["key"].lower()
        row = rows.setdefault(key, {"key": key})
        if match["kind"] == "URL":
            row["url"] = value.strip()
            row["timeout_s"] = timeout_s
        elif value.strip().lower() in _GO_TRUE | _GO_FALSE:
            row["enabled"] = value.strip().lower() in _GO_TRUE
        else:
            errors.append(f"{name}={value!r}: not a boolean (use true/false or 1/0)")
    if errors:
        raise ImportRejected(errors)
    existing = set(Agent.objects.filter(key__in=rows).values_list("key", flat=True))
    for key, row in rows.items():
        if key not in existing:
            row.setdefault("name", key.replace("_", " ").title())
            row.setdefault(ROUTING_NAMES_FIELD, GO_GATEWAY_ROUTING_NAMES.get(key, [key]))
    return list(rows.values())


def agents_import(rows: Any, *, dry_run: bool = False, prune: bool = False) -> ImportReport:
    """Create or update agents from `rows` (with `prune`, delete the agents they leave out);
    raise ImportRejected (writing nothing) on any error."""
    plan = agents_plan(rows, prune=prune)
    report = plan.report  # before writing: it tells created rows by their missing pk
    if not dry_run:
        agents_apply(plan)
    return report


@dataclass
class AgentsPlan:
    """What an import of agent rows will write: validated, nothing written yet."""

    rows: "_Plan"
    deleted: list[str]  # keys of agents the import prunes
    keys_after: set[str]  # every agent's key once the import is written
    endpoints: dict[str, EndpointRows | None] = field(default_factory=dict)  # by agent key

    @property
    def report(self) -> ImportReport:
        report = ImportReport(deleted=list(self.deleted))
        for agent, _names, changed in self.rows:
            if agent.pk is None:
                report.created.append(agent.key)
            elif changed:
                report.changed[agent.key] = changed
            else:
                report.unchanged.append(agent.key)
        return report


def agents_plan(rows: Any, *, prune: bool = False) -> AgentsPlan:
    """Validate `rows` against the model and the state the import leaves behind; raise
    ImportRejected listing every error."""
    plan, existing, errors, endpoints = _plan(rows)
    deleted = sorted(set(existing) - {agent.key for agent, _, _ in plan}) if prune else []
    if not errors:
        kept = {key: agent for key, agent in existing.items() if key not in deleted}
        errors.extend(_whole_state_errors(plan, kept))
    if errors:
        raise ImportRejected(errors)
    keys_after = {agent.key for agent, _, _ in plan} | (set(existing) - set(deleted))
    return AgentsPlan(plan, deleted, keys_after, endpoints)


_Plan = list[tuple[Agent, list[str] | None, list[str]]]


@dataclass
class RowWalk:
    """The checks every imported row gets before its fields: it is an object, its identity
    (`field`) is valid and appears once, and it names only `allowed` fields. A row that fails
    adds one line to `errors` and is skipped."""

    label: str  # "row", "tenant row", ...
    field: str
    allowed: set[str]
    errors: list[str]
    hint: str = ""  # what a valid identity looks like

    def rows(
        self, rows: list[Any], valid: Callable[[Any], bool], shown: str | None = None
    ) -> Iterator[tuple[str, Any, dict[str, Any]]]:
        """(where, identity, row) per good row; `where` names the row by `shown` (a field) or
        by its identity."""
        seen: set[Any] = set()
        for index, row in enumerate(rows, start=1):
            where = f"{self.label} {index}"
            if not isinstance(row, dict):
                self.errors.append(f"{where}: must be an object")
                continue
            ident = row.get(self.field)
            if not valid(ident):
                self.errors.append(f"{where}: '{self.field}' is required{self.hint}")
                continue
            where = f"{where} ({row.get(shown, ident) if shown else ident})"
            if ident in seen:
                self.errors.append(f"{where}: the {self.field} appears more than once")
                continue
            seen.add(ident)
            unknown = sorted(set(row) - self.allowed)
            if unknown:
                self.errors.append(f"{where}: unknown field(s) {', '.join(unknown)}")
                continue
            yield where, ident, row


def _plan(
    rows: Any,
) -> tuple[_Plan, dict[str, Agent], list[str], dict[str, EndpointRows | None]]:
    existing = {a.key: a for a in Agent.objects.prefetch_related("routing_names", "endpoints")}
    if not isinstance(rows, list):
        return [], existing, ["the agents must be a JSON list of agent objects"], {}
    errors: list[str] = []
    plan: _Plan = []
    endpoints_by_key: dict[str, EndpointRows | None] = {}
    walk = RowWalk("row", "key", {*EXPORTED_FIELDS, ROUTING_NAMES_FIELD, ENDPOINTS_FIELD}, errors)
    for where, key, row in walk.rows(rows, lambda key: isinstance(key, str) and bool(key)):
        routing_names, names_error = _routing_names(row)
        if names_error:
            errors.append(f"{where}: {names_error}")
            continue
        endpoints, endpoint_errors = _endpoints_row(where, row)
        errors.extend(endpoint_errors)
        agent = existing.get(key) or Agent(key=key)
        before = {name: _exported(agent, name) for name in EXPORTED_FIELDS}
        for name in EXPORTED_FIELDS:
            if name in row:
                setattr(agent, name, row[name])
        try:
            # A connect timeout the row leaves alone is capped at the row's timeout (contract
            # §5); one the row sets must not exceed it.
            agent.full_clean(validate_unique=False, validate_constraints=False)
            _check_explicit_connect_timeout(agent, row)
        except ValidationError as exc:
            errors.extend(validation_lines(where, exc))
            continue
        pool_errors = _pool_error(where, agent, endpoints)
        errors.extend(pool_errors)
        if endpoint_errors or pool_errors:
            continue
        changed = [name for name in EXPORTED_FIELDS if _exported(agent, name) != before[name]]
        if _endpoints_changed(agent, endpoints):
            changed.append(ENDPOINTS_FIELD)
        endpoints_by_key[key] = endpoints
        if (
            agent.pk is not None
            and routing_names is not None
            and sorted(r.name for r in agent.routing_names.all()) != routing_names
        ):
            changed.append(ROUTING_NAMES_FIELD)
        plan.append((agent, routing_names, changed))
    return plan, existing, errors, endpoints_by_key


def _check_explicit_connect_timeout(agent: Agent, row: dict[str, Any]) -> None:
    """Agent.clean_fields caps a connect timeout equal to the stored one; a row that names it
    explicitly asks for that value, so capping it would be wrong."""
    if "connect_timeout_s" not in row:
        return
    field = Agent._meta.get_field("connect_timeout_s")
    if field.to_python(row["connect_timeout_s"]) > agent.timeout_s:
        raise ValidationError(
            {"connect_timeout_s": "Must not exceed the timeout; lower it or raise the timeout."}
        )


def _routing_names(row: dict[str, Any]) -> tuple[list[str] | None, str | None]:
    if ROUTING_NAMES_FIELD not in row:
        return None, None
    raw = row[ROUTING_NAMES_FIELD]
    if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
        return None, f"'{ROUTING_NAMES_FIELD}' must be a list of strings"
    names = sorted({normalize_routing_name(n) for n in raw})
    if "" in names:
        return None, f"'{ROUTING_NAMES_FIELD}' must not contain empty names"
    too_long = [n for n in names if len(n) > RoutingName._meta.get_field("name").max_length]
    if too_long:
        return None, f"routing name too long: {too_long[0]!r}"
    return names, None


def validation_lines(where: str, exc: ValidationError) -> list[str]:
    """A model's validation errors, one line each, prefixed with the row they belong to."""
    return [
        f"{where}: {name}: {message}"
        for name, messages in exc.message_dict.items()
        for message in messages
    ]


def _whole_state_errors(plan: _Plan, existing: dict[str, Agent]) -> list[str]:
    """Routing names unique and at most one fallback route, in the state after the import."""
    owners: dict[str, str] = {}
    fallback_routes: list[str] = []
    planned = {agent.key: (agent, names) for agent, names, _ in plan}
    for key in sorted({*existing, *planned}):
        agent, names = planned.get(key, (existing.get(key), None))
        assert agent is not None
        if names is None:
            names = [r.name for r in agent.routing_names.all()] if agent.pk else []
        for name in names:
            owners.setdefault(name, key)
            if owners[name] != key:
                return [f"routing name {name!r} would belong to both {owners[name]} and {key}"]
        if agent.is_fallback_route:
            fallback_routes.append(key)
    if len(fallback_routes) > 1:
        return [f"at most one agent can be the fallback route, not {', '.join(fallback_routes)}"]
    return []


def agents_apply(plan: AgentsPlan) -> None:
    """Write a plan in one transaction (pruned agents first: their routing names free up)."""
    with transaction.atomic():
        for agent in Agent.objects.filter(key__in=plan.deleted):
            agent.delete()
        _apply(plan.rows)
        for agent, _names, _changed in plan.rows:
            _endpoints_apply(agent, plan.endpoints.get(agent.key))


def _apply(plan: _Plan) -> None:
    with transaction.atomic():
        # Remove dropped routing names first, so a name can move between agents in one import.
        for agent, names, _ in plan:
            if agent.pk is not None and names is not None:
                agent.routing_names.exclude(name__in=names).delete()
        for agent, names, changed in plan:
            if agent.pk is None or changed:
                agent.save()
            if names is not None:
                current = set(agent.routing_names.values_list("name", flat=True))
                for name in names:
                    if name not in current:
                        RoutingName.objects.create(agent=agent, name=name)
