"""The configuration admins edit: agents and their routing names, tenants (empresas) and their
routes. No I/O here beyond the ORM."""

import re
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import (
    MaxValueValidator,
    MinValueValidator,
    RegexValidator,
    URLValidator,
)
from django.db import models
from django.utils.regex_helper import _lazy_re_compile

from agents.secrets import SecretUnreadable, secret_decrypt
from agents.tls import TlsConfigError, TlsSpec, ssl_context

DEFAULT_FALLBACK_REPLY = "No pude conectar con el agente. Intenta de nuevo en un momento."


class AgentURLValidator(URLValidator):
    """URLValidator that also accepts single-label host names: agents are often reached by a
    Docker Compose or Kubernetes service name (http://agent-cita:8000/chat), which has no TLD."""

    host_re = (
        "("
        + URLValidator.hostname_re
        + "(?:"
        + URLValidator.domain_re
        + URLValidator.tld_re
        + ")?|localhost)"
    )
    regex = _lazy_re_compile(
        r"^(?:[a-z0-9.+-]*)://"
        r"(?:[^\s:@/]+(?::[^\s:@/]*)?@)?"
        r"(?:" + URLValidator.ipv4_re + "|" + URLValidator.ipv6_re + "|" + host_re + ")"
        r"(?::[0-9]{1,5})?"
        r"(?:[/?#][^\s]*)?"
        r"\Z",
        re.IGNORECASE,
    )


http_url_validator = AgentURLValidator(
    schemes=["http", "https"],
    message="Enter an http:// or https:// URL, e.g. http://10.0.0.5:8001/chat.",
)


def default_timeout_s() -> float:
    """The Go gateway's AGENT_TIMEOUT keeps its meaning as the default for new agents."""
    return float(settings.AGENT_TIMEOUT)


def bounds_validators(low: float, high: float, unit: str = "") -> list:
    suffix = f" {unit}" if unit else ""
    return [
        MinValueValidator(
            low, message=f"Must be at least {low:g}{suffix}; raise it to {low:g} or more."
        ),
        MaxValueValidator(
            high, message=f"Must be at most {high:g}{suffix}; lower it to {high:g} or less."
        ),
    ]


def normalize_routing_name(value: str) -> str:
    """Routing names compare trimmed and case-insensitively, so they are stored that way."""
    return value.strip().lower()


class PayloadFormat(models.TextChoices):
    CONTEXT = "context", "context (original contract)"
    FLAT = "flat", "flat (newer agents)"


class Balance(models.TextChoices):
    LEAST_INFLIGHT = "least_inflight", "least in flight (of two weighted random picks)"
    ROUND_ROBIN = "round_robin", "round robin (weighted)"


class Affinity(models.TextChoices):
    NONE = "none", "none"
    SESSION = "session", "session (the same session_id goes to the same endpoint)"


class RetryOn(models.TextChoices):
    CONNECT_OR_RESET = "connect_or_reset", "connect_or_reset (refused, or reset before any reply)"
    CONNECT = "connect", "connect (only if the agent cannot have received the request)"


DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_STREAM_IDLE_TIMEOUT_S = 30.0
DEFAULT_STREAM_MAX_S = 300.0


class Agent(models.Model):
    key = models.SlugField(
        max_length=64,
        unique=True,
        help_text="Stable identifier used in logs, metrics and the 'agent_used' reply field.",
    )
    name = models.CharField(max_length=120)
    url = models.CharField(
        "URL",
        max_length=500,
        blank=True,
        validators=[http_url_validator],
        help_text="Where the gateway POSTs the chat payload. Leave blank when the agent has "
        "several endpoints (replicas), listed below.",
    )
    health_url = models.CharField(
        "health URL",
        max_length=500,
        blank=True,
        validators=[http_url_validator],
        help_text="GET target for health checks. Blank: the URL's scheme and host with /health.",
    )
    enabled = models.BooleanField(
        default=True, help_text="Disabled agents are never called; callers get the fallback reply."
    )
    payload_format = models.CharField(
        max_length=16, choices=PayloadFormat.choices, default=PayloadFormat.CONTEXT
    )
    timeout_s = models.FloatField(
        "timeout (s)",
        default=default_timeout_s,
        validators=bounds_validators(0.5, 120, "s"),
        help_text="The whole call (connect, send, wait, read, retry) ends within this; "
        "then the caller gets the fallback reply.",
    )
    connect_timeout_s = models.FloatField(
        "connect timeout (s)",
        default=DEFAULT_CONNECT_TIMEOUT_S,
        validators=bounds_validators(0.1, 60, "s"),
        help_text="How long to wait for a TCP/TLS connection before giving up on this attempt; "
        "never more than the timeout. Left unchanged while the timeout is lowered below it, it "
        "is lowered to the timeout; set above the timeout, it is an error.",
    )
    max_concurrency = models.PositiveIntegerField(
        default=25,
        validators=bounds_validators(1, 1000),
        help_text="Calls in flight at once per gateway process; one more gets an immediate 503 "
        "with Retry-After instead of queueing.",
    )
    max_connections = models.PositiveIntegerField(
        default=25,
        validators=bounds_validators(1, 1000),
        help_text="Open connections to the agent per gateway process; waiting for one counts "
        "against the timeout.",
    )
    breaker_fail_max = models.PositiveIntegerField(
        "breaker: failures to open",
        default=3,
        validators=bounds_validators(1, 100),
        help_text="Consecutive failures (timeout, connection error, 5xx, bad body) that open the "
        "circuit; while open, callers get the fallback at once and the agent is not called.",
    )
    breaker_reset_s = models.FloatField(
        "breaker: reset after (s)",
        default=30.0,
        validators=bounds_validators(1, 3600, "s"),
        help_text="How long the circuit stays open before a few probe calls are let through.",
    )
    retries = models.PositiveSmallIntegerField(
        default=1,
        validators=bounds_validators(0, 3),
        help_text="Extra attempts, only on the connection failures 'retry on' names; always "
        "inside the timeout.",
    )
    retry_on = models.CharField(
        "retry on",
        max_length=16,
        choices=RetryOn.choices,
        default=RetryOn.CONNECT_OR_RESET,
        help_text="connect_or_reset: retry when the connection was refused, or reset or closed "
        "before any response byte (the agent may have received the request). connect, for "
        "agents with side effects: retry only when the request cannot have reached the agent "
        "(refused, connect error, or a kept-alive connection found closed before the request "
        "was written). Every attempt carries Idempotency-Key and X-Gateway-Attempt.",
    )
    stream_idle_timeout_s = models.FloatField(
        "stream: idle timeout (s)",
        default=DEFAULT_STREAM_IDLE_TIMEOUT_S,
        validators=bounds_validators(0.5, 600, "s"),
        help_text="A streamed reply (the caller asked for text/event-stream and the agent "
        "streams) that goes this long without an event ends with an error event carrying the "
        "fallback reply.",
    )
    stream_max_s = models.FloatField(
        "stream: longest (s)",
        default=DEFAULT_STREAM_MAX_S,
        validators=bounds_validators(1, 3600, "s"),
        help_text="A streamed reply still running this long after the call began ends with an "
        "error event carrying the fallback reply. The first event must come within the timeout.",
    )
    balance = models.CharField(
        max_length=16,
        choices=Balance.choices,
        default=Balance.LEAST_INFLIGHT,
        help_text="How calls spread over the endpoints (with more than one).",
    )
    affinity = models.CharField(
        max_length=16,
        choices=Affinity.choices,
        default=Affinity.NONE,
        help_text="session: a conversation (session_id) stays on one endpoint while it is "
        "available and not overloaded, for agents that keep a session's state in memory.",
    )
    tls_verify = models.BooleanField(
        "TLS: verify the agent's certificate",
        default=True,
        help_text="Untick only for a test agent: anyone between the gateway and the agent could "
        "then read and change its traffic.",
    )
    tls_ca_bundle = models.TextField(
        "TLS: CA bundle (PEM)",
        blank=True,
        help_text="The certificate authorities that sign the agent's certificate (a private CA). "
        "Blank: the system's.",
    )
    tls_client_cert = models.TextField(
        "TLS: client certificate (PEM)",
        blank=True,
        help_text="For agents that require mutual TLS; with the client key below.",
    )
    tls_client_key = models.TextField(
        "TLS: client key (PEM)",
        blank=True,
        help_text="Stored encrypted; never shown again after saving.",
    )
    proxy_url = models.CharField(
        "egress proxy URL",
        max_length=500,
        blank=True,
        validators=[http_url_validator],
        help_text="An HTTP(S) proxy for this agent's requests. Blank: HTTP_PROXY / HTTPS_PROXY / "
        "NO_PROXY from the gateway's environment, if set.",
    )
    fallback_reply = models.TextField(
        blank=True,
        max_length=2000,
        help_text=f"Reply sent to n8n when this agent fails. Blank: “{DEFAULT_FALLBACK_REPLY}”",
    )
    is_fallback_route = models.BooleanField(
        "fallback route",
        default=False,
        help_text="Requests whose modalidad matches no routing name go to this agent "
        "(at most one agent) instead of getting a 400.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_fallback_route"],
                condition=models.Q(is_fallback_route=True),
                name="agents_single_fallback_route",
                violation_error_message="Another agent is already the fallback route; "
                "untick it there first.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.name})"

    # The connect timeout this instance was loaded with (the default for a new agent): one
    # still at that value is not "set" by the edit being validated (see clean_fields).
    _stored_connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S

    @classmethod
    def from_db(cls, db: Any, field_names: Any, values: Any) -> "Agent":
        agent = super().from_db(db, field_names, values)
        agent._stored_connect_timeout_s = agent.__dict__.get(
            "connect_timeout_s", DEFAULT_CONNECT_TIMEOUT_S
        )
        return agent

    @property
    def effective_connect_timeout_s(self) -> float:
        """What a call uses: the connect timeout, at most the timeout."""
        return min(float(self.connect_timeout_s), float(self.timeout_s))

    def clean_fields(self, exclude: Any = None) -> None:
        super().clean_fields(exclude=exclude)
        # Here rather than in clean(): a form without the field (the list's editable "enabled")
        # must get a form-wide error, not a ValueError for a field it does not have.
        if self.connect_timeout_s and self.timeout_s and self.connect_timeout_s > self.timeout_s:
            excluded = set(exclude or ())
            if (
                not {"connect_timeout_s", "timeout_s"} & excluded
                and self.connect_timeout_s == self._stored_connect_timeout_s
            ):
                # An edit that lowers the timeout below a connect timeout it leaves alone (a new
                # agent's default 5 s included) caps the connect timeout: contract §5.
                self.connect_timeout_s = self.timeout_s
                return
            message = "Must not exceed the timeout; lower it or raise the timeout."
            if exclude and "connect_timeout_s" in exclude:
                raise ValidationError(f"Connect timeout (s): {message}")
            raise ValidationError({"connect_timeout_s": message})
        self._tls_check(set(exclude or ()))

    def _tls_check(self, excluded: set[str]) -> None:
        """The TLS PEM text loads (CA bundle, client certificate with its key), as the agent's
        connection pool will load it; the stored client key is encrypted."""
        if not (self.tls_ca_bundle or self.tls_client_cert or self.tls_client_key):
            return
        try:
            key = secret_decrypt(self.tls_client_key) if self.tls_client_key else ""
            ssl_context(TlsSpec(self.tls_verify, self.tls_ca_bundle, self.tls_client_cert, key))
        except SecretUnreadable as exc:
            _tls_error(excluded, "tls_client_key", f"TLS client key: {exc}")
        except TlsConfigError as exc:
            name = "tls_ca_bundle" if "CA bundle" in str(exc) else "tls_client_cert"
            message = str(exc)
            _tls_error(excluded, name, f"{message[:1].upper()}{message[1:]}.")

    @property
    def effective_health_url(self) -> str:
        return self.health_url or default_health_url(self.url)


def _tls_error(excluded: set[str], name: str, message: str) -> None:
    """A field's error, or a form-wide one for a form without that field."""
    if name in excluded:
        raise ValidationError(message)
    raise ValidationError({name: message})


class AgentEndpoint(models.Model):
    """One replica of an agent: calls spread over an agent's enabled endpoints by weight."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="endpoints")
    url = models.CharField("URL", max_length=500, validators=[http_url_validator])
    weight = models.PositiveSmallIntegerField(
        default=1,
        validators=bounds_validators(1, 100),
        help_text="Share of the calls against the other endpoints' weights.",
    )
    enabled = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "url"], name="agent_endpoint_unique_url")
        ]
        verbose_name = "endpoint (replica)"
        verbose_name_plural = "endpoints (replicas)"

    def __str__(self) -> str:
        return self.url


HEADER_NAME_RE = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z"
# Headers the gateway itself sets on every attempt: an agent row may not replace them.
RESERVED_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "connection",
        "content-length",
        "content-type",
        "host",
        "idempotency-key",
        "traceparent",
        "tracestate",
        "transfer-encoding",
        "user-agent",
        "x-gateway-attempt",
        "x-request-id",
    }
)


def header_name_validate(name: str) -> None:
    if name.lower() in RESERVED_HEADERS:
        raise ValidationError(f"{name} is set by the gateway on every call; choose another header.")


_HEADER_VALUE_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # one line; tabs allowed


def header_value_validate(value: str) -> None:
    """A header value (plain, before encryption) is one line of text."""
    if _HEADER_VALUE_CONTROL.search(value):
        raise ValidationError("A header value must be one line of text.")


class AgentHeader(models.Model):
    """An extra request header sent to the agent (credentials: Authorization, X-Api-Key...).
    `value` is stored encrypted (agents/secrets.py) and never shown again after saving."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="headers")
    name = models.CharField(
        max_length=100,
        validators=[
            RegexValidator(HEADER_NAME_RE, "Not a valid HTTP header name."),
            header_name_validate,
        ],
    )
    value = models.TextField(help_text="Stored encrypted; never shown again after saving.")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "name"], name="agent_header_unique_name")
        ]
        verbose_name = "request header (secret value)"
        verbose_name_plural = "request headers (secret values)"

    def __str__(self) -> str:
        return self.name


class FailoverStep(models.Model):
    """When `agent` fails (breaker open, connection failure, 5xx), `target` is tried next,
    in `position` order, within the same request deadline."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="failover_steps")
    target = models.ForeignKey(
        Agent, on_delete=models.CASCADE, related_name="failover_for", verbose_name="then try"
    )
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "target"], name="failover_step_unique"),
            models.CheckConstraint(
                condition=~models.Q(agent=models.F("target")),
                name="failover_step_not_itself",
                violation_error_message="An agent cannot fail over to itself.",
            ),
        ]
        verbose_name = "failover agent"
        verbose_name_plural = "failover agents (tried in order when this one fails)"

    def __str__(self) -> str:
        return f"{self.agent_id} -> {self.target_id}"


def default_health_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/health"


class RoutingNameRow(models.Model):
    """A row whose `name` is compared with config.modalidad: stored trimmed and lower-case."""

    name: "models.CharField[str, str]"  # each subclass declares it (unique, or per tenant)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.name = normalize_routing_name(self.name)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        self.name = normalize_routing_name(self.name)
        if not self.name:
            raise ValidationError({"name": "Must not be empty or only spaces."})
        super().clean()


class RoutingName(RoutingNameRow):
    """A `config.modalidad` value that routes to an agent (stored trimmed and lower-case)."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="routing_names")
    name = models.CharField(
        max_length=100,
        unique=True,
        help_text="Compared with config.modalidad trimmed and case-insensitively.",
    )

    class Meta:
        ordering = ["name"]
        verbose_name = "routing name (modalidad)"
        verbose_name_plural = "routing names (modalidades)"


class Tenant(models.Model):
    """An empresa (`id_empresa` in chat requests): whether it is served, its limits, and its own
    routes. Optional: an empresa without a row is served like any other, under the fair share
    (runtime/limiter.py)."""

    id_empresa = models.PositiveIntegerField(
        unique=True,
        validators=[MinValueValidator(1, message="Must be at least 1.")],
        help_text="The id_empresa chat requests carry (top level or in config).",
    )
    name = models.CharField(max_length=100)
    enabled = models.BooleanField(
        default=True,
        help_text="Untick to refuse this empresa's requests (403 Empresa deshabilitada) within "
        "2 s on every worker.",
    )
    max_concurrency = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=bounds_validators(1, 10_000),
        help_text="Calls in flight at once for this empresa across all agents, per worker; "
        "more get a 503 with Retry-After. Blank: only each agent's limits apply.",
    )
    requests_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=bounds_validators(1, 1_000_000),
        help_text="Rate limit for this empresa whatever key it uses; more get a 429 with "
        "Retry-After. Blank: none beyond the keys' limits.",
    )

    class Meta:
        ordering = ["id_empresa"]
        verbose_name = "tenant (empresa)"
        verbose_name_plural = "tenants (empresas)"

    def __str__(self) -> str:
        return f"{self.id_empresa} {self.name}"


class TenantRoute(RoutingNameRow):
    """For one empresa, a `config.modalidad` that goes to another agent than the usual route."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="routes")
    name = models.CharField(
        max_length=100,
        help_text="config.modalidad, compared trimmed and case-insensitively.",
    )
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="tenant_routes")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="tenant_route_unique_name")
        ]
        verbose_name = "route for this empresa"
        verbose_name_plural = "routes for this empresa"


class TenantAgentLimit(models.Model):
    """For one empresa, a cap on its calls in flight to one agent (per worker), inside the
    agent's own max_concurrency and the empresa's cap across agents."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="agent_limits")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="tenant_limits")
    max_concurrency = models.PositiveIntegerField(
        validators=bounds_validators(1, 10_000),
        help_text="This empresa's calls in flight to this agent at once, per worker; more get "
        "a 503 with Retry-After.",
    )

    class Meta:
        ordering = ["agent__key"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "agent"], name="tenant_agent_limit_unique")
        ]
        verbose_name = "limit on one agent for this empresa"
        verbose_name_plural = "limits on one agent for this empresa"

    def __str__(self) -> str:
        return f"{self.max_concurrency}"
