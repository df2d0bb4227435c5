"""The hot paths make no database query and no thread hop (issue 7).

Every chat outcome (answered, fallback, 400, 401, unrouted, 503 backpressure) and the health and
metrics paths run through the real ASGI application against a real agent on 127.0.0.1 while two
counters watch: every SQL statement executed by any connection in any thread other than the
registry poller, and every hop off the event loop (`sync_to_async` calls and executor jobs, which
is how `asyncio.to_thread` and `sync_to_async` reach a thread).
"""

import asyncio
import contextlib
import threading
import warnings
from collections import Counter

import httpx
import orjson
import pytest
from asgiref.sync import SyncToAsync
from django.db.backends import utils as db_utils

from agents.models import Agent, RoutingName
from fleet.sync import registry_sync
from runtime.registry import registry

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

API_KEY = "budget-key"
REPLY = b'{"reply": "hola", "url": null}'


class Budget:
    """Counts queries and thread hops while active."""

    def __init__(self) -> None:
        self.queries: list[str] = []
        self.hops: Counter[str] = Counter()
        self.active = False

    def query(self, sql: str) -> None:
        if self.active and threading.current_thread().name != "registry-sync":
            self.queries.append(sql)

    def hop(self, kind: str, target: object) -> None:
        if self.active:
            self.hops[f"{kind}: {getattr(target, '__qualname__', target)!s}"] += 1


@pytest.fixture
def budget(monkeypatch):
    budget = Budget()
    execute, executemany = db_utils.CursorWrapper.execute, db_utils.CursorWrapper.executemany
    sync_to_async_call = SyncToAsync.__call__
    run_in_executor = asyncio.BaseEventLoop.run_in_executor

    def counted_execute(self, sql, params=None):
        budget.query(sql)
        return execute(self, sql, params)

    def counted_executemany(self, sql, param_list):
        budget.query(sql)
        return executemany(self, sql, param_list)

    async def counted_sync_to_async(self, *args, **kwargs):
        budget.hop("sync_to_async", self.func)
        return await sync_to_async_call(self, *args, **kwargs)

    def counted_run_in_executor(self, executor, func, *args):
        budget.hop("run_in_executor", func)
        return run_in_executor(self, executor, func, *args)

    monkeypatch.setattr(db_utils.CursorWrapper, "execute", counted_execute)
    monkeypatch.setattr(db_utils.CursorWrapper, "executemany", counted_executemany)
    monkeypatch.setattr(SyncToAsync, "__call__", counted_sync_to_async)
    monkeypatch.setattr(asyncio.BaseEventLoop, "run_in_executor", counted_run_in_executor)
    return budget


async def _agent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A keep-alive agent answering every POST with REPLY."""
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(REPLY), REPLY)
            )
            await writer.drain()
    writer.close()


@pytest.fixture
async def agent_port():
    server = await asyncio.start_server(_agent, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


@pytest.fixture
def agents(transactional_db, agent_port, settings):
    settings.GATEWAY_API_KEYS = [API_KEY]
    with socket_refusing() as dead_port:
        rows = {
            "budget_ok": {"url": f"http://127.0.0.1:{agent_port}/chat"},
            "budget_dead": {"url": f"http://127.0.0.1:{dead_port}/chat", "retries": 0},
            "budget_busy": {"url": f"http://127.0.0.1:{agent_port}/chat", "max_concurrency": 1},
        }
        for key, fields in rows.items():
            agent = Agent.objects.create(key=key, name=key, timeout_s=5.0, **fields)
            RoutingName.objects.create(agent=agent, name=key)
        yield


@contextlib.contextmanager
def socket_refusing():
    """A port on 127.0.0.1 that refuses connections (bound, never listening)."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture
async def gateway(agents):
    await registry_sync.ensure_started()  # what the lifespan startup does
    assert registry.snapshot.loaded
    with warnings.catch_warnings():
        # WhiteNoise (admin stack only) warns when collectstatic has not run; not this test's topic.
        warnings.filterwarnings("ignore", "No directory at", UserWarning)
        from gateway_project.asgi import application
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client
    await asyncio.to_thread(registry_sync.stop)
    await registry.aclose()
    registry.clear()


def chat(modalidad: str, **overrides: object) -> bytes:
    body = {
        "message": "Quiero agendar una cita",
        "session_id": 3796,
        "id_empresa": 1,
        "config": {"modalidad": modalidad, "duracion_cita_minutos": "30"},
        **overrides,
    }
    return orjson.dumps(body)


AUTH = {"X-API-Key": API_KEY, "Content-Type": "application/json"}


async def test_chat_requests_make_no_query_and_no_thread_hop(gateway, budget):
    budget.active = True
    ok = await gateway.post("/api/agent/chat", content=chat("Budget_OK"), headers=AUTH)
    again = await gateway.post("/api/agent/chat", content=chat("budget_ok"), headers=AUTH)
    fallback = await gateway.post("/api/agent/chat", content=chat("budget_dead"), headers=AUTH)
    invalid = await gateway.post(
        "/api/agent/chat", content=chat("budget_ok", message=" "), headers=AUTH
    )
    not_json = await gateway.post("/api/agent/chat", content=b"{", headers=AUTH)
    unrouted = await gateway.post("/api/agent/chat", content=chat("nadie"), headers=AUTH)
    no_key = await gateway.post("/api/agent/chat", content=chat("budget_ok"))
    wrong_method = await gateway.get("/api/agent/chat", headers=AUTH)
    budget.active = False

    assert (ok.status_code, ok.json()["reply"]) == (200, "hola")
    assert (again.status_code, again.json()["agent_used"]) == (200, "budget_ok")
    assert fallback.headers["X-Gateway-Fallback"] == "connection"
    assert [r.status_code for r in (invalid, not_json, unrouted, no_key, wrong_method)] == [
        400,
        400,
        400,
        401,
        405,
    ]
    assert budget.queries == []
    assert dict(budget.hops) == {}


async def test_backpressure_makes_no_query_and_no_thread_hop(gateway, budget):
    runtime = registry.route("budget_busy")
    assert runtime is not None
    assert runtime.limiter.try_acquire()  # the busy agent's one slot is taken
    try:
        budget.active = True
        busy = await gateway.post("/api/agent/chat", content=chat("budget_busy"), headers=AUTH)
        budget.active = False
    finally:
        runtime.limiter.release()
    assert busy.status_code == 503
    assert budget.queries == []
    assert dict(budget.hops) == {}


async def test_health_and_metrics_make_no_query_and_no_thread_hop(gateway, budget):
    budget.active = True
    statuses = [(await gateway.get(path)).status_code for path in ("/health/live", "/metrics")]
    ready = await gateway.get("/health/ready")
    budget.active = False
    assert statuses == [200, 200]
    assert ready.status_code in (200, 503)  # its value is another test's concern; its cost is ours
    assert budget.queries == []
    assert dict(budget.hops) == {}


async def test_the_counters_do_count(gateway, budget):
    """The same counters see a query and a hop when a request path does make them."""
    from asgiref.sync import sync_to_async

    budget.active = True
    count = await sync_to_async(Agent.objects.count)()
    budget.active = False
    assert count >= 3
    assert budget.queries and budget.hops
