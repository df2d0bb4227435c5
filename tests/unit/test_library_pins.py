"""The two private library APIs the gateway relies on, pinned to the behaviour it needs.

An upgrade of Django or aiohttp that changes them fails here, by name, instead of somewhere
downstream. Each is also covered by behaviour: the lean handler by every health, metrics and
CORS chat test, the idle cap by test_resilience.py's keep-alive cap test.
"""

import asyncio
import inspect

import aiohttp
import django
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler

from edge.lean_handler import HotPathHandler
from runtime.transport import _IdleCappedConnector


def test_django_is_the_lts_the_lean_handler_was_written_against() -> None:
    assert django.VERSION[:2] == (5, 2)


def test_djangos_async_response_step_takes_the_request_and_reads_the_middleware_lists() -> None:
    """HotPathHandler.load_middleware fills these lists itself and wraps
    `_get_response_async` (URL resolution, view middleware, the view) in its own chain."""
    step = BaseHandler._get_response_async
    assert inspect.iscoroutinefunction(step)
    assert list(inspect.signature(step).parameters) == ["self", "request"]
    source = inspect.getsource(step)
    for attribute in ("_view_middleware", "_template_response_middleware"):
        assert f"self.{attribute}" in source
    assert "self.process_exception_by_middleware" in source
    assert "_exception_middleware" in inspect.getsource(BaseHandler.process_exception_by_middleware)


def test_the_lean_handler_overrides_only_public_asgi_steps() -> None:
    """`handle`, `send_response`, `request_class` and `load_middleware` are ASGIHandler's own
    names; the handler's chain lives in the attribute Django's `get_response_async` calls."""
    for name in ("handle", "send_response", "load_middleware"):
        assert callable(getattr(ASGIHandler, name))
    assert list(inspect.signature(ASGIHandler.send_response).parameters) == [
        "self",
        "response",
        "send",
    ]
    assert "self._middleware_chain" in inspect.getsource(BaseHandler.get_response_async)
    handler = HotPathHandler()
    assert inspect.iscoroutinefunction(handler._middleware_chain)


def test_aiohttps_release_hook_keeps_the_signature_the_idle_cap_overrides() -> None:
    base = inspect.signature(aiohttp.TCPConnector._release)
    ours = inspect.signature(_IdleCappedConnector._release)
    expected = ["self", "key", "protocol", "should_close"]
    assert list(base.parameters) == expected
    assert list(ours.parameters) == expected
    assert base.parameters["should_close"].kind is inspect.Parameter.KEYWORD_ONLY
    assert base.parameters["should_close"].default is False


def test_aiohttps_idle_connections_are_a_mapping_of_lists_per_key() -> None:
    """The cap reads `self._conns[key]`: the idle connections waiting for reuse to one host."""

    async def conns() -> object:
        connector = _IdleCappedConnector(max_idle=1)
        try:
            return connector._conns
        finally:
            await connector.close()

    idle = asyncio.run(conns())
    assert isinstance(idle, dict)
    assert "self._conns" in inspect.getsource(aiohttp.BaseConnector._release)
