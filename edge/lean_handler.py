"""HotPathHandler: Django request handling for the chat, health and metrics paths, minus the
per-request costs those paths do not need.

Django's ASGIHandler sends `request_started`/`request_finished` (whose receivers are sync, so each
costs a thread hop), spools the body to a temporary file, runs every MIDDLEWARE entry (most are
MiddlewareMixin: one thread hop each) and closes the response in a thread. These paths touch no
database and need none of that. This handler keeps what matters:

- a chat POST is admitted from its headers alone before its body is read (503 before the agents
  are loaded, 401, 429: chat.pipeline.admit), so a wrong key costs no body read;
- the body is read into memory and refused with the contract's 413 once it passes the limit,
  whether announced by Content-Length or streamed (chunked);
- the view is cancelled when the caller disconnects (what Django's own `listen_for_disconnect`
  does), so an abandoned agent call is closed at once; so is a streamed reply
  (chat/streaming.py) while it is sent;
- only HOT_PATH_MIDDLEWARE runs, all natively async;
- a chat POST without an Origin header skips Django's request object, URL resolver and
  middleware altogether: the chat pipeline (chat/pipeline.py) answers it from the scope's
  headers and the body; with an Origin header the same pipeline answers through the ninja
  operation, inside the CORS middleware;
- any exception becomes a JSON error, never an HTML page or a traceback.
"""

import asyncio
import contextlib
import functools
import io
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import Http404, HttpRequest, HttpResponseBase
from django.urls import Resolver404, set_script_prefix
from django.utils.module_loading import import_string

from access.auth import Principal
from chat import messages
from chat.pipeline import admit, chat_answer
from chat.responses import JsonAnswer, detail_response
from chat.streaming import STREAM_HEADERS, EventStreamResponse, StreamAnswer
from edge.scope import (
    VARY_ORIGIN,
    client_address,
    declared_length,
    is_chat_post,
    request_headers,
    takes_fast_lane,
)
from gateway_project.conf import gateway_settings
from observability.context import request_context
from runtime import deadline_in

logger = logging.getLogger("gateway.http")

T = TypeVar("T")

# How old an agent call is when the caller's disconnect starts being watched. A watcher is a task
# per request (~4 µs, 3.7 % of a fast call's instructions: bench/README.md, "Issue 15: the last
# cuts"); a call that ends sooner is not worth cancelling. A caller that leaves earlier is noticed at this age; one that leaves
# during a call shorter than this is counted as answered.
WATCH_AGENT_CALL_AFTER_S = 0.05


class BodyTooLargeError(Exception):
    pass


def _log_unhandled() -> None:
    logger.exception("unhandled error on the hot path", extra={"event": "http_error"})


class HotPathHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = True) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        self._cors_middleware: list[Any] = []
        handler = self._json_errors(self._get_response_async)
        for path in reversed(settings.HOT_PATH_MIDDLEWARE):
            middleware = import_string(path)
            if not getattr(middleware, "async_capable", False):
                raise TypeError(f"{path} is not natively async; it cannot run on the hot path")
            instance = middleware(handler)
            if hasattr(instance, "add_response_headers"):
                self._cors_middleware.append(instance)
            handler = self._json_errors(instance)
        self._middleware_chain = handler

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.handle(scope, receive, send)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        principal: Principal | None = None
        headers: dict[str, str] = {}
        client = ""
        if is_chat_post(scope):
            headers, client = request_headers(scope), client_address(scope)
            admitted = await admit(headers, client)
            if isinstance(admitted, JsonAnswer):
                await self._send_refusal(scope, admitted, send)
                return
            principal = admitted
        limit = gateway_settings.chat_max_body_bytes
        declared = declared_length(scope)
        try:
            if declared is not None and declared > limit:
                raise BodyTooLargeError()
            with deadline_in(gateway_settings.body_read_timeout_s):
                body = await self.read_body_capped(receive, limit)
        except RequestAborted:
            return
        except BodyTooLargeError:
            await self.send_response(detail_response(413, messages.BODY_TOO_LARGE), send)
            return
        except TimeoutError:  # a caller dribbling its body holds no worker for long
            response = detail_response(408, messages.BODY_TIMEOUT, {"Connection": "close"})
            await self.send_response(response, send)
            return
        if principal is not None and takes_fast_lane(scope):
            answer = await self._unless_disconnected(
                functools.partial(chat_answer, headers, body, client, admitted=principal),
                receive,
                watch_from_agent_call=True,
            )
            if isinstance(answer, StreamAnswer):
                await self._send_stream(answer, send, receive, (*STREAM_HEADERS, *VARY_ORIGIN))
            elif answer is not None:
                with contextlib.suppress(asyncio.CancelledError):  # the caller left mid-write
                    await answer.send_to(send, VARY_ORIGIN)
            return
        set_script_prefix(get_script_prefix(scope))
        try:
            request = self.request_class(scope, io.BytesIO(body))
        except Exception:
            await self.send_response(detail_response(400, messages.INVALID_JSON), send)
            return
        response = await self._unless_disconnected(
            functools.partial(self._middleware_chain, request), receive
        )
        if isinstance(response, EventStreamResponse):
            await self._send_stream(response.answer, send, receive, response.asgi_headers())
        elif response is not None:
            with contextlib.suppress(asyncio.CancelledError):  # the caller left mid-write
                await self.send_response(response, send)

    async def _send_stream(
        self,
        answer: StreamAnswer,
        send: Any,
        receive: Any,
        headers: Iterable[tuple[bytes, bytes]],
    ) -> None:
        """Send a streamed reply while watching for the caller's disconnect: when the caller
        leaves, the agent's stream is closed at once and nothing more is sent."""

        async def relay() -> bool:
            await answer.send_to(send, headers)
            return True

        try:
            if await self._unless_disconnected(relay, receive) is None:
                ctx = request_context.get()
                if ctx is not None:
                    ctx.outcome = "disconnected"
        finally:
            answer.close()

    async def _send_refusal(self, scope: dict[str, Any], answer: JsonAnswer, send: Any) -> None:
        """A chat refusal sent before the body was read (uvicorn discards the body as it comes).
        With an Origin header the CORS middleware adds its headers, as on the ninja path."""
        if takes_fast_lane(scope):
            await answer.send_to(send, VARY_ORIGIN)
            return
        set_script_prefix(get_script_prefix(scope))
        request = self.request_class(scope, io.BytesIO(b""))
        response = answer.http_response()
        for middleware in self._cors_middleware:
            response = middleware.add_response_headers(request, response)
        await self.send_response(response, send)

    @staticmethod
    async def _unless_disconnected(
        respond: Callable[[], Awaitable[T]], receive: Any, *, watch_from_agent_call: bool = False
    ) -> T | None:
        """Run the view; cancel it if the caller disconnects first (and answer nothing).

        With `watch_from_agent_call`, the disconnect is watched only once the request's agent
        call is WATCH_AGENT_CALL_AFTER_S old (RequestContext.before_agent_call starts the
        clock): an answer that needs no agent, or an agent call shorter than that, is ready
        before cancelling it could matter, and pays a timer instead of a watcher task.
        """
        task = asyncio.current_task()
        assert task is not None
        disconnected = False
        watcher: asyncio.Task[None] | None = None
        timer: asyncio.TimerHandle | None = None

        async def watch() -> None:
            nonlocal disconnected
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected = True
                    task.cancel()
                    return

        def start_watching() -> None:
            nonlocal watcher
            if watcher is None:
                watcher = asyncio.create_task(watch())

        def start_watching_soon() -> None:
            nonlocal timer
            if timer is None:
                timer = asyncio.get_running_loop().call_later(
                    WATCH_AGENT_CALL_AFTER_S, start_watching
                )

        ctx = request_context.get()
        if watch_from_agent_call and ctx is not None:
            ctx.before_agent_call = start_watching_soon
        else:
            start_watching()
        try:
            return await respond()
        except asyncio.CancelledError:
            if disconnected and task.uncancel() == 0:
                return None
            raise
        finally:
            if ctx is not None:
                # An agent connection opened in this request keeps a copy of its context (and
                # so `ctx`) for as long as it is pooled: let it not keep the watcher, whose
                # frames hold the whole request.
                ctx.before_agent_call = None
            if timer is not None:
                timer.cancel()
            if watcher is not None:
                watcher.cancel()

    async def read_body_capped(self, receive: Any, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestAborted()
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise BodyTooLargeError()
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _json_errors(self, get_response: Any) -> Any:
        async def inner(request: HttpRequest) -> HttpResponseBase:
            try:
                response: HttpResponseBase = await get_response(request)
            except (Http404, Resolver404):
                return detail_response(404, messages.NOT_FOUND)
            except Exception:
                _log_unhandled()
                return detail_response(500, messages.INTERNAL_ERROR)
            if response.status_code == 405 and not response.get("Content-Type", "").startswith(
                "application/json"
            ):
                # A method no view declares (TRACE, QUERY, ...) gets Django's HTML 405. The one
                # hot path taking POST is the chat endpoint, whose other methods only exist to
                # answer this 405, so POST is all it allows.
                allowed = response.get("Allow", "")
                allow = "POST" if "POST" in allowed.split(", ") else allowed
                return detail_response(405, messages.METHOD_NOT_ALLOWED, {"Allow": allow})
            return response

        return inner
