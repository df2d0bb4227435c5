"""The pieces of tracing without a process: samplers by name, what an agent URL shows on a span,
the startup summary, and the caller's trace context on a request with tracing off."""

import pytest

from observability.context import RequestContext
from observability.otel import _url_attributes, sampler_for
from observability.tracing import trace_begin, tracing_summary

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("name", "description"),
    [
        ("always_on", "AlwaysOnSampler"),
        ("always_off", "AlwaysOffSampler"),
        ("traceidratio", "TraceIdRatioBased{0.25}"),
        ("parentbased_always_on", "ParentBased{root:AlwaysOnSampler,"),
        ("parentbased_always_off", "ParentBased{root:AlwaysOffSampler,"),
        ("parentbased_traceidratio", "ParentBased{root:TraceIdRatioBased{0.25},"),
    ],
)
def test_each_standard_sampler_name(name, description):
    assert sampler_for(name, 0.25).get_description().startswith(description)


def test_an_agent_url_on_a_span_keeps_no_credentials_or_query():
    attributes = _url_attributes("https://user:secret@agent.example:8443/chat?token=abc#x")
    assert attributes == {
        "url.full": "https://agent.example:8443/chat#x",
        "server.address": "agent.example",
        "server.port": 8443,
    }


def test_the_startup_summary_names_the_collector_without_its_credentials(settings):
    assert tracing_summary() == {"exporter": "none"}
    settings.OTEL_TRACES_EXPORTER = "otlp"
    settings.OTEL_TRACES_ENDPOINT = "https://user:secret@collector.example:4318/v1/traces"
    settings.OTEL_TRACES_SAMPLER = "parentbased_traceidratio"
    settings.OTEL_TRACES_SAMPLER_ARG = 0.01
    assert tracing_summary() == {
        "exporter": "otlp",
        "endpoint": "https://collector.example:4318/v1/traces",
        "sampler": "parentbased_traceidratio",
        "ratio": 0.01,
    }


@pytest.mark.parametrize(
    ("traceparent", "sampled"),
    [(PARENT, True), (PARENT[:-2] + "00", False)],
)
def test_with_tracing_off_the_callers_context_is_kept_and_its_trace_id_logged(traceparent, sampled):
    ctx = RequestContext(request_id="r")
    trace_begin(ctx, traceparent, "congo=t61rcWkgMzE")
    assert ctx.trace_headers == (("traceparent", traceparent), ("tracestate", "congo=t61rcWkgMzE"))
    assert ctx.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert ctx.trace_sampled is sampled
    assert ctx.trace is None


@pytest.mark.parametrize("traceparent", [None, "garbage", f"{PARENT},{PARENT}"])
def test_with_tracing_off_no_trace_is_invented(traceparent):
    ctx = RequestContext(request_id="r")
    trace_begin(ctx, traceparent, "congo=t61rcWkgMzE")
    assert (ctx.trace_headers, ctx.trace_id, ctx.trace_sampled, ctx.trace) == (
        (),
        None,
        False,
        None,
    )
