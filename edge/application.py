"""GatewayFront: request id, access log, the count of every chat answer, lifespan, idle
collection, and dispatch between the two handlers."""

import asyncio
import gc
import logging
import time
from typing import Any

from django.core.handlers.asgi import ASGIHandler

from chat import metrics
from chat.pipeline import CHAT_PATH
from edge.idle_gc import IdleCollector
from edge.lean_handler import HotPathHandler
from edge.startup_log import log_startup
from fleet import live_gauges
from fleet.sync import registry_sync
from health.views import close_probe_clients
from observability.context import RequestContext, request_context, request_id_from
from observability.logs import log_fields
from observability.tracing import trace_begin, trace_end, tracing_start, tracing_stop
from runtime import draining, registry

access_logger = logging.getLogger("gateway.access")

# Net new container objects between two young-generation collections (CPython's default: 700).
# With tens of calls in flight, each holding its objects for the call's length, the live set
# swings by thousands: at 700 the collector ran ~60 times a second at 64 in flight (50 ms agent),
# walking those live objects each time and promoting them to be walked again, ~7 % of the CPU
# per call, while a request's own garbage is almost never cyclic (~0.1 object per request).
# At 10,000 it runs a few times a minute (bench/README.md, "Issue 15: the last cuts").
YOUNG_COLLECTION_THRESHOLD = 10_000

HOT_PATHS = frozenset({CHAT_PATH, "/health", "/health/live", "/health/ready", "/metrics"})
QUIET_PATHS = frozenset({"/health/live", "/health/ready", "/metrics"})


class GatewayFront:
    def __init__(self) -> None:
        self.hot = HotPathHandler()
        self.stock = ASGIHandler()
        self.idle_gc = IdleCollector()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1003})

    async def http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        raw_id = traceparent = tracestate = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                raw_id = value if raw_id is None else raw_id
            elif name == b"traceparent":  # repeated: joined, so invalid (as Django reads it)
                traceparent = value if traceparent is None else traceparent + b"," + value
            elif name == b"tracestate":
                tracestate = value if tracestate is None else tracestate + b"," + value
        ctx = RequestContext(
            request_id=request_id_from(raw_id), method=scope["method"], path=scope["path"]
        )
        token = request_context.set(ctx)
        id_header = (b"x-request-id", ctx.request_id.encode("ascii"))
        is_chat = scope["path"] == CHAT_PATH
        if is_chat:
            trace_begin(
                ctx,
                traceparent.decode("latin1") if traceparent is not None else None,
                tracestate.decode("latin1") if tracestate is not None else None,
            )
        streamed_at: float | None = None  # a streamed reply is counted when it ends

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal streamed_at
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), id_header]
                ctx.status = message["status"]
                if is_chat:
                    if _is_event_stream(message["headers"]):
                        streamed_at = time.perf_counter()
                    else:  # counted as it is sent: a worker killed later cannot lose it
                        _count_chat_answer(ctx, ctx.status)
                    if ctx.trace is not None:
                        ctx.trace.answered(message["headers"])
            await send(message)

        self.idle_gc.enter()
        try:
            await registry_sync.ensure_started()
            handler = self.hot if scope["path"] in HOT_PATHS else self.stock
            await handler(scope, receive, send_with_id)
        finally:
            if is_chat and ctx.status == 0:  # the caller left before any answer
                _count_chat_answer(ctx, metrics.CLIENT_LEFT)
            elif streamed_at is not None:  # its duration: up to its first event, like an answer
                left = ctx.outcome == "disconnected"
                _count_chat_answer(ctx, metrics.CLIENT_LEFT if left else ctx.status, streamed_at)
            if ctx.trace is not None:
                trace_end(ctx)
            self.idle_gc.leave()
            _log_access(ctx)
            request_context.reset(token)

    async def lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await registry_sync.ensure_started()
                    draining.watch_stop_signals()
                    live_gauges.live_publisher.start()
                    tracing_start()
                    log_startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                # Everything loaded so far (Django, the apps, the registry) lives as long as the
                # process: keep it out of the collector's full passes, which otherwise walk it
                # all and stall every request in flight (the p99 of bench/README.md).
                gc.collect()
                gc.freeze()
                gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                draining.begin("lifespan shutdown")
                self.idle_gc.cancel()
                await asyncio.to_thread(registry_sync.stop)
                await registry.aclose()
                await close_probe_clients()
                await asyncio.to_thread(tracing_stop)  # exports the spans still queued
                live_gauges.process_exit()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _count_chat_answer(ctx: RequestContext, status: int, answered_at: float | None = None) -> None:
    """Every chat answer once: by the agent chosen, else `_none` (refused before routing)."""
    answered = time.perf_counter() if answered_at is None else answered_at
    metrics.request_done(
        ctx.agent or metrics.NONE,
        status,
        answered - ctx.started,
        ctx.id_empresa,
        trace_id=ctx.trace_id if ctx.trace_sampled else None,
    )


def _is_event_stream(headers: list[tuple[bytes, bytes]]) -> bool:
    """A streamed reply (chat/streaming.py), from its response headers."""
    for name, value in headers:
        if value.startswith(b"text/event-stream") and name.lower() == b"content-type":
            return True
    return False


def _outcome_from_status(status: int) -> str | None:
    """The outcome of a request whose handler recorded none: refused before any agent call
    (401, 400, 429, ...), or the caller gone before an answer was sent."""
    if status == 0:
        return "disconnected"
    return "rejected" if 400 <= status < 500 else None


def _log_access(ctx: RequestContext) -> None:
    level = logging.DEBUG if ctx.path in QUIET_PATHS else logging.INFO
    if not access_logger.isEnabledFor(level):
        return
    log_fields(
        access_logger,
        level,
        "request",
        {
            "event": "request",
            "method": ctx.method,
            "path": ctx.path,
            "status": ctx.status,
            "agent": ctx.agent,
            "key": ctx.key_name,
            "session_id": ctx.session_id,
            "id_empresa": ctx.id_empresa,
            "duration_ms": round((time.perf_counter() - ctx.started) * 1000, 2),
            "outcome": ctx.outcome or _outcome_from_status(ctx.status),
            "failover": ctx.failover,
            "message_preview": ctx.message_preview,
        },
    )
