"""Which caller trace context is passed on to agents (observability/trace_context.py)."""

import pytest

from observability.trace_context import TRACESTATE_MAX, trace_headers

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_valid_traceparent_and_its_tracestate_are_passed_on():
    headers = {"traceparent": PARENT, "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"}
    assert trace_headers(headers) == (
        ("traceparent", PARENT),
        ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
    )


def test_nothing_is_sent_without_a_traceparent():
    assert trace_headers({}) == ()
    assert trace_headers({"tracestate": "congo=t61rcWkgMzE"}) == ()


@pytest.mark.parametrize(
    "parent",
    [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # upper case
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # invalid version
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent id
        PARENT + "-extra",  # version 00 has no more fields
        "not a traceparent",
    ],
)
def test_a_malformed_traceparent_is_dropped_with_its_tracestate(parent):
    assert trace_headers({"traceparent": parent, "tracestate": "congo=t61rcWkgMzE"}) == ()


def test_a_later_version_may_carry_more_fields():
    later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next"
    assert trace_headers({"traceparent": later}) == (("traceparent", later),)


def test_an_oversized_tracestate_is_dropped_and_the_traceparent_kept():
    headers = {"traceparent": PARENT, "tracestate": "k=" + "v" * TRACESTATE_MAX}
    assert trace_headers(headers) == (("traceparent", PARENT),)
