"""The OpenTelemetry side of tracing, imported only when it is on (observability/tracing.py).

One TracerProvider per process: the sampler named by OTEL_TRACES_SAMPLER, a BatchSpanProcessor
whose thread exports over OTLP/HTTP (protobuf) to the resolved traces endpoint, and a resource
named by OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES (read by the SDK; the gateway's name when
neither names the service). No global provider is set: only the gateway's own spans are made.

Attributes follow OpenTelemetry's HTTP conventions where one fits (`http.request.method`,
`http.response.status_code`, `url.full`, `server.address`, `error.type`, ...) and are `gateway.*`
otherwise. They are set only on recording spans. No secret is put on a span: an agent URL loses
its user info and query, and no header or body is recorded.
"""

import asyncio
import functools
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    set_span_in_context,
)

from gateway_project.conf import GatewaySettings
from observability.context import RequestContext
from observability.trace_context import TraceHeaders

FALLBACK_HEADER = b"x-gateway-fallback"


def sampler_for(name: str, ratio: float) -> Sampler:
    """The sampler OTEL_TRACES_SAMPLER names (gateway_project/settings.py checked the name)."""
    fixed = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "parentbased_always_on": DEFAULT_ON,
        "parentbased_always_off": DEFAULT_OFF,
    }
    if name in fixed:
        return fixed[name]
    if name == "traceidratio":
        return TraceIdRatioBased(ratio)
    return ParentBasedTraceIdRatio(ratio)


def traceparent(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


@functools.lru_cache(maxsize=256)
def _url_attributes(url: str) -> dict[str, Any]:
    """An agent URL as span attributes, without its user info and query (they may hold
    secrets)."""
    parts = urlsplit(url)
    attributes: dict[str, Any] = {
        "url.full": parts._replace(netloc=parts.netloc.rpartition("@")[2], query="").geturl(),
        "server.address": parts.hostname or "",
    }
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None:
        attributes["server.port"] = port
    return attributes


class OtelTracer:
    """The process's tracer (observability.tracing.Tracer)."""

    def __init__(self, settings: GatewaySettings) -> None:
        resource = Resource.create({SERVICE_VERSION: settings.version})
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: settings.name}))
        self.provider = TracerProvider(
            resource=resource,
            sampler=sampler_for(settings.traces_sampler, settings.traces_sampler_arg),
            # Flushed by the ASGI lifespan's shutdown (tracing_stop), within the drain.
            shutdown_on_exit=False,
        )
        exporter = OTLPSpanExporter(endpoint=settings.traces_endpoint)
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("gateway", settings.version)

    def begin(self, ctx: RequestContext) -> None:
        caller = ctx.trace_headers
        parent = None
        if caller:
            parent_header = caller[0][1]
            remote = SpanContext(
                trace_id=int(parent_header[3:35], 16),
                span_id=int(parent_header[36:52], 16),
                is_remote=True,
                trace_flags=TraceFlags(int(parent_header[53:55], 16)),
            )
            parent = set_span_in_context(NonRecordingSpan(remote))
        span = self.tracer.start_span(
            f"{ctx.method} {ctx.path}", context=parent, kind=SpanKind.SERVER
        )
        context = span.get_span_context()
        trace_id = ctx.trace_id = f"{context.trace_id:032x}"
        flags = context.trace_flags
        ctx.trace_sampled = flags.sampled
        state = caller[1:]  # the caller's tracestate goes on as it came
        if not span.is_recording():
            # Sampled out: nothing is recorded, but the agent joins the trace (unsampled).
            parent_header = f"00-{trace_id}-{context.span_id:016x}-{flags:02x}"
            ctx.trace_headers = (("traceparent", parent_header), *state)
            return
        span.set_attributes(
            {
                "http.request.method": ctx.method,
                "http.route": ctx.path,
                "gateway.request_id": ctx.request_id,
            }
        )
        ctx.trace = RecordedRequest(self.tracer, span, state)

    def shutdown(self) -> None:
        self.provider.shutdown()


class RecordedRequest:
    """A chat request's recorded server span (observability.context.RequestTrace)."""

    __slots__ = ("_context", "_fallback", "_span", "_state", "_tracer")

    def __init__(self, tracer: Tracer, span: Span, state: TraceHeaders) -> None:
        self._tracer = tracer
        self._span = span
        self._context = set_span_in_context(span)  # the attempts' parent
        self._state = state
        self._fallback: str | None = None

    def attempt(
        self, *, agent: str, url: str, attempt: int, breaker_state: str, deadline: float
    ) -> "AttemptSpan":
        attributes = {
            "http.request.method": "POST",
            **_url_attributes(url),
            "gateway.agent": agent,
            "gateway.attempt": attempt,
            "gateway.breaker_state": breaker_state,
        }
        if attempt > 1:
            attributes["http.request.resend_count"] = attempt - 1
        span = self._tracer.start_span(
            f"POST {agent}", context=self._context, kind=SpanKind.CLIENT, attributes=attributes
        )
        return AttemptSpan(span, self._state, deadline)

    def event(self, name: str, attributes: Mapping[str, str]) -> None:
        self._span.add_event(name, attributes)

    def answered(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        for name, value in headers:
            if name.lower() == FALLBACK_HEADER:
                self._fallback = value.decode("latin1")

    def end(self, ctx: RequestContext) -> None:
        span = self._span
        attributes: dict[str, Any] = {}
        if ctx.status:
            attributes["http.response.status_code"] = ctx.status
        if ctx.agent is not None:
            attributes["gateway.agent"] = ctx.agent
        outcome = ctx.outcome or ("disconnected" if ctx.status == 0 else None)
        if outcome is not None:
            attributes["gateway.outcome"] = outcome
        if self._fallback is not None:
            attributes["gateway.fallback_reason"] = self._fallback
        if ctx.id_empresa is not None:
            attributes["gateway.id_empresa"] = ctx.id_empresa
        span.set_attributes(attributes)
        if ctx.status >= 500:
            span.set_attribute("error.type", str(ctx.status))
            span.set_status(Status(StatusCode.ERROR))
        span.end()


class AttemptSpan:
    """One agent attempt's client span: entered, the headers that carry it to the agent; left,
    the attempt's HTTP status or its error (`error.type` in the fallback reasons' words:
    timeout, connection, bad_status, ...)."""

    __slots__ = ("_deadline", "_span", "_state")

    def __init__(self, span: Span, state: TraceHeaders, deadline: float) -> None:
        self._span, self._state, self._deadline = span, state, deadline

    def __enter__(self) -> TraceHeaders:
        return (("traceparent", traceparent(self._span.get_span_context())), *self._state)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        span = self._span
        if span.is_recording():
            if exc is None:
                span.set_attribute("http.response.status_code", 200)
            else:
                self._failed(span, exc)
        span.end()

    def _failed(self, span: Span, exc: BaseException) -> None:
        status = getattr(exc, "status_code", None)
        if isinstance(status, int):
            span.set_attribute("http.response.status_code", status)
        if isinstance(exc, asyncio.CancelledError):
            # The call's deadline (asyncio.timeout cancels the attempt), or the caller left.
            late = asyncio.get_running_loop().time() >= self._deadline
            reason = "timeout" if late else "cancelled"
        else:
            # runtime.errors.AgentError's `reason`: the fallback reason the attempt would give.
            reason = str(getattr(exc, "reason", "") or type(exc).__name__)
        span.set_attribute("error.type", reason)
        span.set_status(Status(StatusCode.ERROR, reason))
