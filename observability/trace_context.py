"""W3C Trace Context from the caller, passed on to agents so they can join the caller's trace.

Only a well-formed `traceparent` (version 00 or a later one read as 00, never the invalid
version ff or an all-zero id) is passed on, with its `tracestate` when that is within the
spec's size; anything else is dropped rather than forwarded. With tracing on, the traceparent an
agent gets names the gateway's span instead (observability/otel.py), in the caller's trace.
"""

import re
from collections.abc import Mapping

_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(?:-.*)?")
_ZERO_TRACE_ID = "0" * 32
_ZERO_PARENT_ID = "0" * 16
TRACESTATE_MAX = 512

TraceHeaders = tuple[tuple[str, str], ...]


def trace_headers(headers: Mapping[str, str]) -> TraceHeaders:
    """The caller's `traceparent` and `tracestate` to send on (lower-case header names in
    `headers`), or () when it sent none or a malformed one."""
    return caller_trace(headers.get("traceparent"), headers.get("tracestate"))


def caller_trace(parent: str | None, state: str | None) -> TraceHeaders:
    """`trace_headers` from the two header values (a repeated header joined with commas)."""
    if not parent:
        return ()
    parent = parent.strip()
    if not _TRACEPARENT.fullmatch(parent):
        return ()
    version, trace_id, parent_id = parent[:2], parent[3:35], parent[36:52]
    if version == "ff" or trace_id == _ZERO_TRACE_ID or parent_id == _ZERO_PARENT_ID:
        return ()
    if version == "00" and len(parent) != 55:
        return ()
    found = [("traceparent", parent)]
    state = (state or "").strip()
    if state and len(state) <= TRACESTATE_MAX:
        found.append(("tracestate", state))
    return tuple(found)


def trace_id_of(headers: TraceHeaders) -> str:
    """The trace id of a traceparent `caller_trace` accepted (headers[0])."""
    return headers[0][1][3:35]


def is_sampled(headers: TraceHeaders) -> bool:
    """Whether the caller's traceparent says its trace is recorded (the flags' sampled bit)."""
    return int(headers[0][1][53:55], 16) & 1 == 1
