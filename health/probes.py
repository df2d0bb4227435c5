"""Agent health probes, shared by GET /health and `manage.py check_agents`.

All agents are probed in parallel under one deadline, on one shared httpx client (an agent with
its own TLS settings, egress proxy or request headers gets a client of its own for the probe, so
a private CA or an authenticated health URL probes as the chat calls connect); a probe that
has not answered by then is `unreachable`, so the whole check ends within the timeout. An agent
pool's enabled endpoints are probed each (the health URL's path on the endpoint's host), and the
agent is `ok` while at least one of them is.
"""

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from chat.payloads import agent_payload
from chat.schemas import ChatIn
from gateway_project.conf import gateway_settings
from runtime import (
    OPEN,
    AgentClient,
    AgentError,
    AgentSpec,
    TlsConfigError,
    egress_proxy,
    ssl_context,
)

OK, DISABLED, UNREACHABLE, NO_URL, CIRCUIT_OPEN = (
    "ok",
    "disabled",
    "unreachable",
    "no_url",
    "circuit_open",
)


@dataclass(frozen=True, slots=True)
class EndpointHealth:
    """One endpoint of an agent pool, as its probe found it."""

    index: int  # its position among the agent's endpoints
    url: str
    weight: int
    enabled: bool
    status: str
    latency_ms: float | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AgentHealth:
    key: str
    status: str
    latency_ms: float | None = None
    detail: str = ""
    endpoints: tuple[EndpointHealth, ...] = ()  # an agent pool's, each probed

    @property
    def healthy(self) -> bool:
        return self.status in (OK, DISABLED)


def new_probe_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        follow_redirects=False,
        trust_env=False,
        headers={"Accept": "application/json"},
    )


async def probe_agent(
    spec: AgentSpec,
    client: httpx.AsyncClient,
    *,
    timeout_s: float,
    breaker_state: str | None = None,
) -> AgentHealth:
    if not spec.enabled:
        return AgentHealth(spec.key, DISABLED)
    if not spec.url or not spec.health_url:
        return AgentHealth(spec.key, NO_URL)
    if breaker_state == OPEN:
        return AgentHealth(spec.key, CIRCUIT_OPEN)
    if not _own_transport(spec):
        return await _probe(spec, client, timeout_s=timeout_s)
    try:
        own = _agent_probe_client(spec)
    except TlsConfigError as exc:
        return AgentHealth(spec.key, UNREACHABLE, None, f"TLS: {exc}")
    async with own:
        return await _probe(spec, own, timeout_s=timeout_s)


async def _probe(spec: AgentSpec, client: httpx.AsyncClient, *, timeout_s: float) -> AgentHealth:
    if len(spec.endpoints) > 1:
        return await _probe_pool(spec, client, timeout_s=timeout_s)
    status, latency, detail = await _probe_url(spec.health_url, client, timeout_s=timeout_s)
    return AgentHealth(spec.key, status, latency, detail)


def _own_transport(spec: AgentSpec) -> bool:
    """Whether the agent's calls connect differently from the shared probe client."""
    return (
        bool(spec.headers)
        or not spec.tls.default
        or egress_proxy(spec.health_url, spec.proxy_url) is not None
    )


def _agent_probe_client(spec: AgentSpec) -> httpx.AsyncClient:
    """A client that connects as the agent's calls do: its SSL context, proxy and headers."""
    return httpx.AsyncClient(
        verify=ssl_context(spec.tls) if not spec.tls.default else True,
        proxy=egress_proxy(spec.health_url, spec.proxy_url),
        follow_redirects=False,
        trust_env=False,
        headers={"Accept": "application/json", **dict(spec.headers)},
    )


async def _probe_url(
    url: str, client: httpx.AsyncClient, *, timeout_s: float
) -> tuple[str, float | None, str]:
    started = time.perf_counter()
    try:
        response = await client.get(url, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return UNREACHABLE, _ms_since(started), type(exc).__name__
    latency = _ms_since(started)
    if response.is_success:
        return OK, latency, ""
    return UNREACHABLE, latency, f"HTTP {response.status_code}"


def endpoint_health_url(spec: AgentSpec, url: str) -> str:
    """An endpoint's health URL: the agent's health URL's path on the endpoint's host."""
    endpoint, health = urlsplit(url), urlsplit(spec.health_url)
    return health._replace(scheme=endpoint.scheme, netloc=endpoint.netloc).geturl()


async def _probe_pool(
    spec: AgentSpec, client: httpx.AsyncClient, *, timeout_s: float
) -> AgentHealth:
    enabled = [(i, e) for i, e in enumerate(spec.endpoints) if e.enabled]
    probes = await asyncio.gather(
        *(_probe_url(endpoint_health_url(spec, e.url), client, timeout_s=timeout_s)
          for _, e in enabled)
    )  # fmt: skip
    found = dict(zip((i for i, _ in enabled), probes, strict=True))
    endpoints = tuple(
        EndpointHealth(i, e.url, e.weight, e.enabled, *found.get(i, (DISABLED, None, "")))
        for i, e in enumerate(spec.endpoints)
    )
    up = [h for h in endpoints if h.status == OK]
    detail = f"{len(up)}/{len(enabled)} endpoints up"
    if not enabled:
        return AgentHealth(spec.key, DISABLED, None, "no endpoint enabled", endpoints)
    if up:
        return AgentHealth(spec.key, OK, min(h.latency_ms or 0.0 for h in up), detail, endpoints)
    return AgentHealth(spec.key, UNREACHABLE, None, detail, endpoints)


async def probe_all(
    specs: Iterable[AgentSpec],
    client: httpx.AsyncClient,
    *,
    timeout_s: float,
    breaker_states: Mapping[str, str] | None = None,
) -> dict[str, AgentHealth]:
    specs = list(specs)
    states = breaker_states or {}
    tasks = {
        spec.key: asyncio.create_task(
            probe_agent(spec, client, timeout_s=timeout_s, breaker_state=states.get(spec.key))
        )
        for spec in specs
    }
    if tasks:
        await asyncio.wait(tasks.values(), timeout=timeout_s + 0.2)
    results: dict[str, AgentHealth] = {}
    for key, task in tasks.items():
        if task.done() and not task.cancelled() and task.exception() is None:
            results[key] = task.result()
        else:
            task.cancel()
            results[key] = AgentHealth(key, UNREACHABLE, timeout_s * 1000, "timeout")
    return results


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


@dataclass(frozen=True, slots=True)
class ChatProbe:
    """One sample chat message sent through the real agent client and contract."""

    key: str
    ok: bool
    latency_ms: float
    reply: str = ""
    error: str = ""


# Synthetic traffic (the admin's "Send a test message", `check_agents --chat`) is marked so agents
# can leave it out of their memory and statistics: this session id, and SYNTHETIC_HEADER.
SYNTHETIC_SESSION_ID = 999_999_999
SYNTHETIC_HEADER = ("X-Gateway-Synthetic", "1")
SAMPLE_CHAT = {
    "message": "Mensaje de prueba del gateway",
    "session_id": SYNTHETIC_SESSION_ID,
    "id_empresa": 1,
    "config": {"modalidad": "prueba"},
}


async def probe_chat(spec: AgentSpec, *, request_id: str) -> ChatProbe:
    """POST the sample message in the agent's payload format and check the reply's shape, with
    the same client code, size cap and timeout as real requests (no breaker, no retry)."""
    client = AgentClient(
        spec,
        user_agent=gateway_settings.user_agent,
        max_response_bytes=gateway_settings.agent_max_response_bytes,
    )
    body = agent_payload(ChatIn.model_validate(SAMPLE_CHAT), spec.payload_format)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(spec.timeout_s):
            reply = await client.post_json(
                body, request_id=request_id, extra_headers=(SYNTHETIC_HEADER,)
            )
    except TimeoutError:
        return ChatProbe(spec.key, False, _ms_since(started), error="timeout")
    except AgentError as exc:
        return ChatProbe(spec.key, False, _ms_since(started), error=f"{exc.reason}: {exc}")
    finally:
        await client.aclose()
    return ChatProbe(spec.key, True, _ms_since(started), reply=reply.reply)
