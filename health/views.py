"""GET /health, /health/live, /health/ready and /metrics (served on the lean async path)."""

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess
from prometheus_client.exposition import choose_encoder

from chat import messages
from chat.responses import detail_response, json_response
from fleet import live_gauges
from fleet.sync import registry_sync, worker_state
from gateway_project.conf import gateway_settings
from health.cache import health_cache
from health.probes import AgentHealth, new_probe_client, probe_all
from runtime import AgentRuntime, AgentSpec, draining, registry

_probe_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}


def probe_client() -> httpx.AsyncClient:
    """One shared client per event loop for every health check."""
    loop = asyncio.get_running_loop()
    client = _probe_clients.get(loop)
    if client is None or client.is_closed:
        client = _probe_clients[loop] = new_probe_client()
    return client


async def close_probe_clients() -> None:
    clients = list(_probe_clients.values())
    _probe_clients.clear()
    await asyncio.gather(*(c.aclose() for c in clients))


def _get_only(view: Callable[[HttpRequest], Awaitable[HttpResponse]]) -> Any:
    """GET and HEAD only; anything else is the contract's JSON 405 (natively async)."""

    @functools.wraps(view)
    async def wrapper(request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return detail_response(405, messages.METHOD_NOT_ALLOWED, {"Allow": "GET, HEAD"})
        return await view(request)

    return wrapper


@_get_only
async def health_full(request: HttpRequest) -> HttpResponse:
    """Every agent's health, from one probe round shared by concurrent callers and reused for
    1 s (health/cache.py): any number of monitors probe each agent at most once a second."""
    snapshot = registry.snapshot
    runtimes = list(snapshot.agents.values())
    results = await health_cache.results(
        [r.spec for r in runtimes], _breaker_states(runtimes), _probe_round
    )
    healthy = all(h.healthy for h in results.values())
    body: dict[str, Any] = {
        "status": "ok" if healthy else "degraded",
        "service": "gateway",
        "agents": {key: h.status for key, h in results.items()},
    }
    failover = {r.key: list(r.spec.failover) for r in runtimes if r.spec.failover}
    if failover:  # agent key -> its failover agents, in order (only agents that have some)
        body["failover"] = failover
    pools = _pools(runtimes, results)
    if pools:
        body["endpoints"] = pools
    return json_response(200 if healthy else 503, body)


def _pools(
    runtimes: list[AgentRuntime], results: Mapping[str, AgentHealth]
) -> dict[str, list[dict[str, Any]]]:
    """Per agent pool, each endpoint: its row, its probe, and this process's live state (calls
    in flight, consecutive failures, ejections, seconds left of its ejection)."""
    pools = {}
    for runtime in runtimes:
        health = results.get(runtime.key)
        if health is None or not health.endpoints:
            continue
        live = {replica.state.index: replica.state for replica in runtime.replicas}
        now = runtime.balancer.clock() if runtime.balancer is not None else time.monotonic()
        rows = []
        for endpoint in health.endpoints:
            state = live.get(endpoint.index)
            row: dict[str, Any] = {
                "url": endpoint.url,
                "weight": endpoint.weight,
                "enabled": endpoint.enabled,
                "status": endpoint.status,
            }
            if state is not None:
                row |= {
                    "inflight": state.inflight,
                    "failures": state.failures,
                    "ejections": state.ejections,
                    "ejected_for_s": round(max(0.0, state.ejected_until - now), 1),
                }
            rows.append(row)
        pools[runtime.key] = rows
    return pools


async def _probe_round(
    specs: list[AgentSpec], breaker_states: Mapping[str, str]
) -> dict[str, AgentHealth]:
    return await probe_all(
        specs,
        probe_client(),
        timeout_s=gateway_settings.health_check_timeout_s,
        breaker_states=breaker_states,
    )


def _breaker_states(runtimes: list[Any]) -> dict[str, str]:
    """This process's breakers, and "open" where another live worker reports one open."""
    open_elsewhere = worker_state.fleet_open_breakers
    return {r.key: "open" if r.key in open_elsewhere else r.breaker.state for r in runtimes}


@_get_only
async def health_live(request: HttpRequest) -> HttpResponse:
    return json_response(200, {"status": "ok"})


@_get_only
async def health_ready(request: HttpRequest) -> HttpResponse:
    """Ready once the agents were loaded, until the process is told to stop. A database outage
    after that does not make it unready: chat is served from the agents last loaded, and pulling
    every replica would turn an admin outage into a chat outage. The body says what is down."""
    loaded = registry.snapshot.loaded
    ready = loaded and not draining
    body = {
        "status": "ok" if ready else "unavailable",
        "database": "ok" if registry_sync.database_reachable else "unreachable",
        "registry": "ok" if loaded else "not_loaded",
        "draining": bool(draining),
    }
    return json_response(200 if ready else 503, body)


def _metrics_registry() -> CollectorRegistry:
    directory = settings.PROMETHEUS_MULTIPROC_DIR
    if directory:
        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)
        collected.register(live_gauges.LiveGaugeCollector(directory))
        return collected
    return REGISTRY


@_get_only
async def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus' text format, or OpenMetrics (with the duration's exemplars: trace ids) for a
    scraper whose Accept header asks for `application/openmetrics-text`."""
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    response = HttpResponse(encode(_metrics_registry()), content_type=content_type)
    response["Vary"] = "Accept"
    return response
