"""Distributed tracing (OpenTelemetry): off unless `OTEL_TRACES_EXPORTER=otlp`.

With it on, each chat request gets a server span and each agent attempt a client span under it,
exported over OTLP/HTTP (protobuf) by the SDK's batch processor, on its own thread::

    POST /api/agent/chat   server   parent: the caller's traceparent, when valid
    │                               events: gateway.backpressure, gateway.breaker_rejected
    └── POST <agent key>   client   one per attempt; the agent gets its traceparent

This module is all the request path sees of it, and it imports nothing of OpenTelemetry. Off,
a chat request pays one call (`trace_begin`) and `ctx.trace` stays None, so every other hook is
one `is None` test. `tracing_start` (the ASGI lifespan's startup) imports observability/otel.py,
and with it the SDK, only when tracing is on; `tracing_stop` flushes what is queued.

Sampling follows OTEL_TRACES_SAMPLER and its argument. A request sampled out gets no recorded
span (`ctx.trace` None, nothing exported): only its ids are made, so the agent still joins the
trace and its log lines carry the trace id.
"""

from typing import Any, Protocol
from urllib.parse import urlsplit

from gateway_project.conf import gateway_settings
from observability.context import RequestContext
from observability.trace_context import caller_trace, is_sampled, trace_id_of


class Tracer(Protocol):
    """The process's tracer (observability.otel.OtelTracer)."""

    def begin(self, ctx: RequestContext) -> None:
        """Start the request's server span: its trace id on `ctx`, and `ctx.trace` when it is
        recorded, else the trace headers the agent gets."""
        ...

    def shutdown(self) -> None:
        """Export what is queued and stop (blocking)."""
        ...


_tracer: Tracer | None = None


def tracing_start() -> None:
    """Set tracing up in this process when it is on (idempotent)."""
    global _tracer
    if _tracer is None and gateway_settings.tracing_on:
        # The one import of OpenTelemetry, so that with tracing off none of it is loaded.
        from observability.otel import OtelTracer  # noqa: PLC0415

        _tracer = OtelTracer(gateway_settings)


def tracing_stop() -> None:
    """Export the spans still queued and stop tracing (blocks up to the exporter's timeout:
    run it off the event loop)."""
    global _tracer
    tracer, _tracer = _tracer, None
    if tracer is not None:
        tracer.shutdown()


def trace_begin(ctx: RequestContext, traceparent: str | None, tracestate: str | None) -> None:
    """A chat request begins: the caller's trace context (sent on to the agent, its trace id on
    the log lines) and, with tracing on, the server span."""
    if traceparent is not None:
        caller = ctx.trace_headers = caller_trace(traceparent, tracestate)
        if caller:
            ctx.trace_id = trace_id_of(caller)
            ctx.trace_sampled = is_sampled(caller)
    if _tracer is not None:
        _tracer.begin(ctx)


def trace_end(ctx: RequestContext) -> None:
    """The request is over: end its server span, and let `ctx` (kept by a pooled agent
    connection's copy of the request's context) hold no span."""
    trace, ctx.trace = ctx.trace, None
    if trace is not None:
        trace.end(ctx)


def tracing_summary() -> dict[str, Any]:
    """How this process traces, for the startup line (no secrets: the endpoint's user info
    is left out)."""
    settings = gateway_settings
    if not settings.tracing_on:
        return {"exporter": "none"}
    url = urlsplit(settings.traces_endpoint)
    summary: dict[str, Any] = {
        "exporter": "otlp",
        "endpoint": url._replace(netloc=url.netloc.rpartition("@")[2]).geturl(),
        "sampler": settings.traces_sampler,
    }
    if settings.traces_sampler.endswith("traceidratio"):
        summary["ratio"] = settings.traces_sampler_arg
    return summary
