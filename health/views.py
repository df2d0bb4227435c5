"""GET /health, /health/live, /health/ready and /metrics (served on the lean async path)."""

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from agents.conf import gateway_settings
from agents.registry import registry
from agents.sync import registry_sync
from chat import messages
from gateway_project.responses import detail_response, json_response
from health.probes import new_probe_client, probe_all

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
    snapshot = registry.snapshot
    runtimes = list(snapshot.agents.values())
    results = await probe_all(
        (r.spec for r in runtimes),
        probe_client(),
        timeout_s=gateway_settings.health_check_timeout_s,
        breaker_states=_breaker_states(runtimes),
    )
    healthy = all(h.healthy for h in results.values())
    return json_response(
        200 if healthy else 503,
        {
            "status": "ok" if healthy else "degraded",
            "service": "gateway",
            "agents": {key: h.status for key, h in results.items()},
        },
    )


def _breaker_states(runtimes: list[Any]) -> dict[str, str]:
    """This process's breakers, and "open" where another live worker reports one open."""
    open_elsewhere = registry_sync.fleet_open_breakers
    return {r.key: "open" if r.key in open_elsewhere else r.breaker.state for r in runtimes}


@_get_only
async def health_live(request: HttpRequest) -> HttpResponse:
    return json_response(200, {"status": "ok"})


@_get_only
async def health_ready(request: HttpRequest) -> HttpResponse:
    checks = {
        "database": "ok" if registry_sync.db_ok else "unreachable",
        "registry": "ok" if registry.snapshot.loaded else "not_loaded",
    }
    ready = all(v == "ok" for v in checks.values())
    return json_response(
        200 if ready else 503, {"status": "ok" if ready else "unavailable", **checks}
    )


def _metrics_registry() -> CollectorRegistry:
    if settings.PROMETHEUS_MULTIPROC_DIR:
        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)
        return collected
    return REGISTRY


@_get_only
async def metrics_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(generate_latest(_metrics_registry()), content_type=CONTENT_TYPE_LATEST)
