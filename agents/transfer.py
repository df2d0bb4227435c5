"""Agent definitions as JSON documents: export, import (from a file or the Go gateway's
environment), shared by the management commands and the admin.

A document is a list of objects with the model's field names plus `modalidades` (the routing
names), `headers` (name -> value) and the TLS and egress fields (TRANSPORT_FIELDS), the last
two only when they differ from the defaults, `failover` (its failover agents' keys, in order)
when the agent has any, and, for an agent pool, `endpoints` (a list of `{"url", "weight",
"enabled"}`; a row with only `url` is one endpoint). Secrets (header values, the TLS client
key) are exported as their encrypted stored form, `encrypted:<key fingerprint>:<token>`, never
plain; an import takes either that form (readable by a configured key) or a plain value,
encrypted on import. Import validates every row against the model and against the state the
whole import
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

from agents.models import (
    Agent,
    AgentEndpoint,
    AgentHeader,
    FailoverStep,
    RoutingName,
    header_value_validate,
    normalize_routing_name,
)
from agents.secrets import EXPORT_PREFIX, SecretUnreadable, secret_decrypt, secret_encrypt

ROUTING_NAMES_FIELD = "modalidades"
FAILOVER_FIELD = "failover"
ENDPOINTS_FIELD = "endpoints"
HEADERS_FIELD = "headers"
# Exported only when not the default, so rows without them (the contract's) round-trip.
TRANSPORT_FIELDS = ("tls_verify", "tls_ca_bundle", "tls_client_cert", "tls_client_key", "proxy_url")
SECRET_FIELDS = frozenset({"tls_client_key"})
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
    agents = Agent.objects.prefetch_related("routing_names", "headers", "endpoints").order_by("key")
    failover = _failover_lists()
    return [
        {
            **{
                name: _exported(agent, name)
                for name in EXPORTED_FIELDS
                if name != "url" or agent.url  # a pool gives `endpoints` instead
            },
            **_credentials_export(agent),
            ROUTING_NAMES_FIELD: sorted(r.name for r in agent.routing_names.all()),
            **_failover_export(failover.get(agent.key, [])),
            **_endpoints_export(agent),
        }
        for agent in agents
    ]


def _credentials_export(agent: Agent) -> dict[str, Any]:
    """The agent's non-default TLS and egress fields and its headers, secrets encrypted."""
    row: dict[str, Any] = {}
    for name in TRANSPORT_FIELDS:
        value = getattr(agent, name)
        if value != Agent._meta.get_field(name).get_default():
            row[name] = EXPORT_PREFIX + value if name in SECRET_FIELDS else value
    headers = {h.name: EXPORT_PREFIX + h.value for h in agent.headers.all()}
    if headers:
        row[HEADERS_FIELD] = dict(sorted(headers.items()))
    return row


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


def _url_or_endpoints(
    agent: Agent, row: dict[str, Any], endpoints: EndpointRows | None
) -> EndpointRows | None:
    """Contract §5: a row with only `url` means one endpoint (the agent's endpoint rows go), and
    a pooled row gives `endpoints` instead of `url` (the agent's URL goes)."""
    if endpoints is None and row.get("url"):
        return []
    if endpoints and "url" not in row:
        agent.url = ""
    return endpoints


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
    failover: dict[str, list[str]] = field(default_factory=dict)  # key -> new list, if changed
    headers: "_HeadersPlan" = field(default_factory=list)  # agents whose headers are replaced
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
    plan, existing, errors, headers, endpoints = _plan(rows, prune=prune)
    deleted = sorted(set(existing) - {agent.key for agent, _, _ in plan}) if prune else []
    if not errors:
        kept = {key: agent for key, agent in existing.items() if key not in deleted}
        errors.extend(_whole_state_errors(plan, kept))
    keys_after = {agent.key for agent, _, _ in plan} | (set(existing) - set(deleted))
    failover = _failover_plan(rows, plan, keys_after, errors, prune=prune)
    if errors:
        raise ImportRejected(errors)
    return AgentsPlan(
        plan, deleted, keys_after, failover=failover, headers=headers, endpoints=endpoints
    )


_Plan = list[tuple[Agent, list[str] | None, list[str]]]
_HeadersPlan = list[tuple[Agent, dict[str, str]]]  # agent, header name -> stored value


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
    rows: Any, *, prune: bool = False
) -> tuple[_Plan, dict[str, Agent], list[str], _HeadersPlan, dict[str, EndpointRows | None]]:
    existing = {
        a.key: a for a in Agent.objects.prefetch_related("routing_names", "headers", "endpoints")
    }
    headers_plan: _HeadersPlan = []
    endpoints_by_key: dict[str, EndpointRows | None] = {}
    if not isinstance(rows, list):
        return [], existing, ["the agents must be a JSON list of agent objects"], [], {}
    errors: list[str] = []
    plan: _Plan = []
    allowed = {
        *EXPORTED_FIELDS,
        *TRANSPORT_FIELDS,
        HEADERS_FIELD,
        ROUTING_NAMES_FIELD,
        FAILOVER_FIELD,
        ENDPOINTS_FIELD,
    }
    walk = RowWalk("row", "key", allowed, errors)
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
        endpoints = _url_or_endpoints(agent, row, endpoints)
        credentials = _credentials_plan(agent, row, exact=prune)
        if credentials.errors:
            errors.extend(f"{where}: {line}" for line in credentials.errors)
            continue
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
        changed += credentials.changed
        if credentials.headers is not None:
            headers_plan.append((agent, credentials.headers))
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
    return plan, existing, errors, headers_plan, endpoints_by_key


@dataclass
class _Credentials:
    changed: list[str] = field(default_factory=list)
    headers: dict[str, str] | None = None  # name -> stored value; None: left as they are
    errors: list[str] = field(default_factory=list)


def _credentials_plan(agent: Agent, row: dict[str, Any], *, exact: bool) -> _Credentials:
    """Set a row's TLS and egress fields on `agent` and read its headers, secrets encrypted; a
    secret equal (decrypted) to the stored one keeps its stored form, so it is no change. With
    `exact` (a prune: the document is the whole configuration) a field or `headers` the row
    leaves out goes back to its default; otherwise it is left as it is."""
    result = _Credentials()
    for name in TRANSPORT_FIELDS:
        if name not in row and not exact:
            continue
        default = Agent._meta.get_field(name).get_default()
        value = row.get(name, default)
        stored = getattr(agent, name)
        if name in SECRET_FIELDS:
            if not isinstance(value, str):
                result.errors.append(f"{name}: must be text (PEM)")
                continue
            value, error = _secret_stored(value, stored)
            if error:
                result.errors.append(f"{name}: {error}")
                continue
        setattr(agent, name, value)
        if value != stored:
            result.changed.append(name)
    if HEADERS_FIELD in row or exact:
        result.headers = _headers_plan(agent, row.get(HEADERS_FIELD, {}), result)
    return result


def _headers_plan(agent: Agent, raw: Any, result: _Credentials) -> dict[str, str] | None:
    if not isinstance(raw, dict):
        result.errors.append(f"{HEADERS_FIELD}: must be an object (header name -> value)")
        return None
    current = {h.name: h.value for h in agent.headers.all()} if agent.pk else {}
    headers: dict[str, str] = {}
    lowered = [str(name).lower() for name in raw]
    for name, value in raw.items():
        if lowered.count(str(name).lower()) > 1:
            result.errors.append(
                f"{HEADERS_FIELD}: {name}: the same header twice (names ignore case)"
            )
            continue
        if not isinstance(value, str) or not value:
            result.errors.append(f"{HEADERS_FIELD}: {name}: the value must be non-empty text")
            continue
        try:
            for validator in AgentHeader._meta.get_field("name").validators:
                validator(name)
        except ValidationError as exc:
            result.errors.append(f"{HEADERS_FIELD}: {name}: {' '.join(exc.messages)}")
            continue
        if not value.startswith(EXPORT_PREFIX):
            try:
                header_value_validate(value)
            except ValidationError as exc:
                result.errors.append(f"{HEADERS_FIELD}: {name}: {' '.join(exc.messages)}")
                continue
        stored, error = _secret_stored(value, current.get(name, ""))
        if error:
            result.errors.append(f"{HEADERS_FIELD}: {name}: {error}")
            continue
        headers[name] = stored
    if headers != current:
        result.changed.append(HEADERS_FIELD)
    return headers


def _secret_stored(value: str, stored: str) -> tuple[str, str]:
    """(what to store, error): `value` is plain or EXPORT_PREFIX + a stored form. The stored
    form is kept when `value` decrypts to the same text."""
    if not value:
        return "", ""
    try:
        current = secret_decrypt(stored) if stored else None
    except SecretUnreadable:
        current = None
    if value.startswith(EXPORT_PREFIX):
        given = value.removeprefix(EXPORT_PREFIX)
        try:
            plain = secret_decrypt(given)
        except SecretUnreadable as exc:
            return "", str(exc)
        return (stored if plain == current else given), ""
    return (stored if value == current else secret_encrypt(value)), ""


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
        _failover_apply(plan.failover)
        _headers_apply(plan.headers)


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


# -- failover agents: `failover`, the keys of an agent's FailoverSteps by position ------------


def _failover_lists() -> dict[str, list[str]]:
    """Every agent's failover agents, in order, by agent key (agents without are left out)."""
    lists: dict[str, list[str]] = {}
    steps = FailoverStep.objects.select_related("agent", "target").order_by("position", "id")
    for step in steps:
        lists.setdefault(step.agent.key, []).append(step.target.key)
    return lists


def _failover_export(keys: list[str]) -> dict[str, list[str]]:
    """The row's `failover` field: only when the list is not empty, so rows without failover
    agents keep the contract's shape."""
    return {FAILOVER_FIELD: keys} if keys else {}


def _failover_plan(
    rows: Any, plan: _Plan, keys_after: set[str], errors: list[str], *, prune: bool
) -> dict[str, list[str]]:
    """The failover lists the import changes, by agent key; errors (a key that is not an agent
    after the import, the agent itself, a key twice) go to `errors`. A row without `failover`
    leaves the agent's list alone, unless the import prunes: then it empties it, so a restore
    matches its document exactly."""
    if not isinstance(rows, list):
        return {}
    planned = {agent.key for agent, _, _ in plan}
    changed_fields = {agent.key: changed for agent, _, changed in plan}
    current = _failover_lists()
    changes: dict[str, list[str]] = {}
    for index, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or row.get("key") not in planned:
            continue
        key = row["key"]
        if FAILOVER_FIELD not in row:
            if not prune:
                continue
            wanted: Any = []
        else:
            wanted = row[FAILOVER_FIELD]
        problem = _failover_problem(key, wanted, keys_after)
        if problem:
            errors.append(f"row {index} ({key}): {FAILOVER_FIELD}: {problem}")
            continue
        if wanted != current.get(key, []):
            changes[key] = wanted
            changed_fields[key].append(FAILOVER_FIELD)
    return changes


def _failover_problem(key: str, wanted: Any, keys_after: set[str]) -> str | None:
    if not isinstance(wanted, list) or not all(isinstance(k, str) for k in wanted):
        return "must be a list of agent keys"
    if key in wanted:
        return "an agent cannot fail over to itself"
    twice = sorted({k for k in wanted if wanted.count(k) > 1})
    if twice:
        return f"names {', '.join(twice)} more than once"
    unknown = [k for k in wanted if k not in keys_after]
    if unknown:
        return f"unknown agent(s) {', '.join(unknown)}"
    return None


def _failover_apply(changes: dict[str, list[str]]) -> None:
    """Replace the failover lists that changed (after every agent row is written, so a list
    may name an agent the same import creates)."""
    if not changes:
        return
    agents = Agent.objects.in_bulk([*changes, *(k for keys in changes.values() for k in keys)],
                                   field_name="key")  # fmt: skip
    for key, targets in changes.items():
        FailoverStep.objects.filter(agent=agents[key]).delete()
        for position, target in enumerate(targets):
            FailoverStep.objects.create(agent=agents[key], target=agents[target], position=position)


def _headers_apply(plan: _HeadersPlan) -> None:
    """Each planned agent's headers become exactly its planned ones (agents already saved)."""
    for agent, headers in plan:
        current = {h.name: h for h in AgentHeader.objects.filter(agent=agent)}
        for name, header in current.items():
            if name not in headers:
                header.delete()
        for name, stored in headers.items():
            header = current.get(name) or AgentHeader(agent=agent, name=name)
            if header.pk is None or header.value != stored:
                header.value = stored
                header.save()
