"""Per-request facts shared between the ASGI front, the views and the logs.

The front puts one mutable RequestContext in a context variable before dispatching; the view's
task inherits a copy of the context but the same object, so what the view records (agent,
outcome) is visible to the access log written by the front.
"""

import contextvars
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from observability.trace_context import TraceHeaders

_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


class RequestTrace(Protocol):
    """A chat request's recorded server span (tracing on, request sampled), as the request path
    sees it; observability/otel.py implements it, observability/tracing.py describes the spans."""

    def attempt(
        self, *, agent: str, url: str, attempt: int, breaker_state: str, deadline: float
    ) -> AbstractContextManager[TraceHeaders]:
        """A client span over one agent attempt; entering it gives the trace headers to send
        (its traceparent), leaving it records the outcome (`deadline`: the call's, loop time)."""
        ...

    def event(self, name: str, attributes: Mapping[str, str]) -> None:
        """An event on the server span (a backpressure or breaker refusal)."""
        ...

    def answered(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        """The answer's headers, as they are sent (the fallback reason is read from them)."""
        ...

    def end(self, ctx: "RequestContext") -> None:
        """The request is over: its outcome on the span, and the span ended."""
        ...


@dataclass(slots=True)
class RequestContext:
    request_id: str
    method: str = ""
    path: str = ""
    started: float = field(default_factory=time.perf_counter)
    status: int = 0
    agent: str | None = None
    key_name: str | None = None  # the caller's key by name ("env-key-1", never the key)
    # The authenticated caller (access.auth.Principal), set before the body is read.
    principal: Any = None
    session_id: int | None = None
    id_empresa: int | None = None
    # The W3C trace context sent on to the agent: the caller's (observability/trace_context.py),
    # or with tracing on and the request not sampled, the gateway's unrecorded span in its trace.
    trace_headers: TraceHeaders = ()
    # The request's trace id on its log lines: the gateway's span's with tracing on, else the
    # caller's; `trace_sampled` when that trace is recorded (an exemplar may point at it).
    trace_id: str | None = None
    trace_sampled: bool = False
    # The recorded server span (tracing on and the request sampled; observability/tracing.py).
    trace: RequestTrace | None = None
    outcome: str | None = None
    # The failover agent that answered in place of `agent` (chat/failover.py), if one did.
    failover: str | None = None
    message_preview: str | None = None
    # Called when the agent call is let through (runtime.calls.agent_call's `before_send`): the
    # chat fast lane starts watching for the caller's disconnect there, so answers that need no
    # agent (refusals, an open breaker, backpressure) do not pay for a watcher task.
    before_agent_call: Callable[[], None] | None = None


request_context: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "request_context", default=None
)


def request_id_from(raw: bytes | None) -> str:
    """The caller's X-Request-ID when it matches the contract's pattern, else a fresh one."""
    if raw is not None and _VALID_REQUEST_ID.fullmatch(raw):
        return raw.decode("ascii")
    return secrets.token_hex(16)


def current_request_id() -> str:
    ctx = request_context.get()
    return ctx.request_id if ctx is not None else "-"
