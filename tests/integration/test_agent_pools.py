"""Agent pools against several real local agent servers (issue 16): weighted balancing, session
affinity that moves only an ejected replica's sessions, outlier ejection and return on an
injected clock, a retry that goes to another replica, and per-endpoint state in metrics."""

import asyncio
import contextlib
import io
import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.management import call_command

from agents.models import AgentEndpoint
from runtime import AgentStream, agent_call, calls
from runtime.registry import registry
from tests.conftest import chat_body, in_thread
from tests.fault_agent import FaultAgent, refused_url
from tests.metrics import sample, sample_or_absent

CHAT = "/api/agent/chat"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def replicas() -> Iterator[list[FaultAgent]]:
    agents = [FaultAgent().start() for _ in range(4)]
    yield agents
    for agent in agents:
        agent.stop()


@pytest.fixture
def make_pool(make_agent: Callable[..., Any]) -> Callable[..., Any]:
    """An agent with endpoint rows instead of a URL: `endpoints` is a list of (url, weight) or
    (url, weight, enabled)."""

    def make(endpoints: list[tuple[Any, ...]], key: str = "cita", **fields: Any) -> Any:
        agent = make_agent(key, url="", **fields)

        def add() -> None:
            for position, (url, weight, *enabled) in enumerate(endpoints):
                AgentEndpoint.objects.create(
                    agent=agent, url=url, weight=weight, position=position, enabled=all(enabled)
                )

        in_thread(add)
        return agent

    return make


def served(agents: list[FaultAgent]) -> dict[int, int]:
    """session_id -> the index of the replica that got its last request."""
    where: dict[int, int] = {}
    for index, agent in enumerate(agents):
        with agent._lock:
            for request in agent.requests:
                if request.method == "POST":
                    where[request.json["session_id"]] = index
    return where


def forget(agents: list[FaultAgent]) -> None:
    for agent in agents:
        with agent._lock:
            agent.requests.clear()


async def chat_sessions(gateway: Any, sessions: range) -> None:
    for session in sessions:
        response = await gateway.post(CHAT, json=chat_body(session_id=session))
        assert response.status_code == 200 and "x-gateway-fallback" not in response.headers


async def test_calls_spread_over_the_replicas_by_weight(gateway, make_pool, replicas):
    """Weights 1, 2, 5 over 800 calls one at a time: with nothing in flight the power of two
    choices keeps the first weighted pick, so each replica's count is binomial (n = 800, p =
    w / 8): a standard deviation of at most 1.8 points of share; ±6 points is over 3 of them.
    The picks are seeded, so the run is the same every time."""
    make_pool([(a.url("/ok"), w) for a, w in zip(replicas[:3], (1, 2, 5), strict=True)])
    await gateway.post(CHAT, json=chat_body())  # loads the registry
    balancer = registry.snapshot.agents["cita"].balancer
    assert balancer is not None
    balancer.rng.seed(8)
    forget(replicas)
    await chat_sessions(gateway, range(1, 801))
    shares = [a.attempts("/ok") / 800 for a in replicas[:3]]
    assert shares == pytest.approx([1 / 8, 2 / 8, 5 / 8], abs=0.06)


async def test_round_robin_follows_the_weights_exactly(gateway, make_pool, replicas):
    make_pool([(replicas[0].url("/ok"), 3), (replicas[1].url("/ok"), 1)], balance="round_robin")
    await chat_sessions(gateway, range(1, 401))
    assert [replicas[0].attempts("/ok"), replicas[1].attempts("/ok")] == [300, 100]


async def test_affinity_keeps_sessions_and_moves_only_the_ejected_replicas(
    gateway, make_pool, replicas, monkeypatch
):
    monkeypatch.setattr(calls, "RETRY_BACKOFF_S", (0.0, 0.0))
    make_pool([(a.url("/ok"), 1) for a in replicas], affinity="session", retries=0)
    sessions = range(1, 1001)
    await chat_sessions(gateway, sessions)
    homes = served(replicas)
    assert len(homes) == 1000 and set(Counter(homes.values())) != {1000}
    forget(replicas)
    await chat_sessions(gateway, sessions)
    assert served(replicas) == homes  # every session again on its replica

    runtime = registry.snapshot.agents["cita"]
    assert runtime.balancer is not None
    clock = Clock()
    runtime.balancer.clock = clock
    down = homes[1]
    replicas[down].failing = 503
    for _ in range(3):  # 3 consecutive failures eject it
        response = await gateway.post(CHAT, json=chat_body(session_id=1))
        assert response.headers["x-gateway-fallback"] == "bad_status"
    ejected = runtime.replicas[down].state
    assert ejected.ejected(clock.now) and ejected.ejections == 1

    forget(replicas)
    await chat_sessions(gateway, sessions)
    during = served(replicas)
    moved = {s for s in sessions if during[s] != homes[s]}
    assert moved == {s for s in sessions if homes[s] == down}
    assert down not in during.values()

    replicas[down].failing = 0
    clock.now += 30.0  # the first ejection's base time (ENDPOINT_EJECTION_BASE_S)
    forget(replicas)
    await chat_sessions(gateway, sessions)
    assert served(replicas) == homes  # they moved back


async def test_three_consecutive_failures_eject_for_the_base_time(gateway, make_pool, replicas):
    make_pool([(a.url("/ok"), 1) for a in replicas[:2]], retries=0, balance="round_robin")
    await gateway.post(CHAT, json=chat_body())
    labels = {"agent": "cita", "endpoint": "0"}
    text = (await gateway.get("/metrics")).text
    ejections = sample_or_absent(text, "gateway_endpoint_ejections_total", **labels) or 0
    failed = sample_or_absent(
        text, "gateway_endpoint_requests_total", outcome="bad_status", **labels
    )
    runtime = registry.snapshot.agents["cita"]
    assert runtime.balancer is not None
    clock = Clock()
    runtime.balancer.clock = clock
    replicas[0].failing = 500
    fallbacks = 0
    for _ in range(6):  # round robin: 3 of them on replica 0
        response = await gateway.post(CHAT, json=chat_body())
        fallbacks += "x-gateway-fallback" in response.headers
    state = runtime.replicas[0].state
    assert fallbacks == 3 and state.ejected(clock.now)
    assert state.ejected_until == clock.now + 30.0
    forget(replicas)
    await chat_sessions(gateway, range(1, 11))
    assert replicas[0].attempts() == 0  # ejected: no calls
    replicas[0].failing = 0
    clock.now += 29.9
    await chat_sessions(gateway, range(1, 11))
    assert replicas[0].attempts() == 0
    clock.now += 0.2
    await chat_sessions(gateway, range(1, 11))
    assert replicas[0].attempts() == 5  # back in the rotation
    text = (await gateway.get("/metrics")).text
    assert sample(text, "gateway_endpoint_ejections_total", **labels) == ejections + 1
    assert (
        sample(text, "gateway_endpoint_requests_total", outcome="bad_status", **labels)
        == (failed or 0) + 3
    )
    assert sample(text, "gateway_endpoints_ejected", agent="cita") == 0


async def test_a_retry_goes_to_another_replica(gateway, make_pool, replicas, monkeypatch):
    """The refused replica weighs 100 against 1. Smooth round robin makes the first pick the
    refused one, every time (two weighted random picks choose the light one first about once in
    100 calls, so this test would be flaky with them); a retry that could go back to it would."""
    monkeypatch.setattr(calls, "RETRY_BACKOFF_S", (0.0, 0.0))
    make_pool(
        [(refused_url("/ok"), 100), (replicas[0].url("/ok"), 1)], retries=1, balance="round_robin"
    )
    for session in range(1, 4):
        response = await gateway.post(CHAT, json=chat_body(session_id=session))
        assert response.status_code == 200 and "x-gateway-fallback" not in response.headers
        assert replicas[0].last_request().headers["x-gateway-attempt"] == "2"
    assert len(replicas[0].requests) == 3
    runtime = registry.snapshot.agents["cita"]
    assert runtime.replicas[0].state.ejections == 1  # 3 refusals in a row


async def test_an_edit_keeps_the_unchanged_replicas_client_and_state(gateway, make_pool, replicas):
    agent = make_pool([(a.url("/ok"), 1) for a in replicas[:2]])
    await gateway.post(CHAT, json=chat_body())
    before = registry.snapshot.agents["cita"]
    before.replicas[1].state.ejections = 2
    in_thread(lambda: AgentEndpoint.objects.filter(agent=agent, position=0).delete())
    in_thread(
        lambda: AgentEndpoint.objects.create(agent=agent, url=replicas[2].url("/ok"), position=2)
    )
    await _until(lambda: registry.snapshot.agents["cita"] is not before)
    after = registry.snapshot.agents["cita"]
    assert [r.url for r in after.replicas] == [replicas[1].url("/ok"), replicas[2].url("/ok")]
    assert after.replicas[0].client is before.replicas[1].client
    assert (
        after.replicas[0].state is before.replicas[1].state and after.replicas[0].state.index == 0
    )
    await _until(lambda: before.replicas[0].client.closed)  # the removed one is retired
    assert not after.replicas[0].client.closed


async def test_health_and_check_agents_show_each_endpoint(gateway, make_pool, replicas):
    make_pool(
        [
            (replicas[0].url("/ok"), 2),
            (replicas[1].url("/ok"), 1),
            (replicas[2].url("/ok"), 1, False),
        ]
    )
    replicas[1].failing = 503
    await gateway.post(CHAT, json=chat_body())  # loads the registry
    response = await gateway.get("/health")
    assert response.status_code == 200  # one endpoint up is enough to serve
    body = response.json()
    assert body["agents"] == {"cita": "ok"}
    pool = body["endpoints"]["cita"]
    assert [(e["url"], e["weight"], e["enabled"], e["status"]) for e in pool] == [
        (replicas[0].url("/ok"), 2, True, "ok"),
        (replicas[1].url("/ok"), 1, True, "unreachable"),
        (replicas[2].url("/ok"), 1, False, "disabled"),
    ]
    assert pool[0] | {"inflight": 0, "ejections": 0, "ejected_for_s": 0.0} == pool[0]
    assert "inflight" not in pool[2]  # disabled: no live state

    report = await asyncio.to_thread(check_agents_json)
    row = report["agents"][0]
    assert (row["key"], row["status"], row["detail"]) == ("cita", "ok", "1/2 endpoints up")
    assert [(e["status"], e["ejected"]) for e in row["endpoints"]] == [
        ("ok", False),
        ("unreachable", False),
        ("disabled", False),
    ]
    assert {"url", "enabled", "latency_ms", "routing_names", "healthy"} <= set(row)
    table = await asyncio.to_thread(check_agents_text)
    assert f"  {replicas[1].url('/ok')} (weight 1)  unreachable (HTTP 503)" in table


async def test_a_stream_holds_its_endpoints_in_flight_count_until_it_closes(
    gateway, make_pool, replicas
):
    make_pool([(a.url("/sse/3/0.05"), 1) for a in replicas[:2]])
    await gateway.post(CHAT, json=chat_body())  # loads the registry (answered as a failure)
    runtime = registry.snapshot.agents["cita"]
    body = json.dumps(chat_body()).encode()
    stream = await agent_call(
        runtime, body, request_id="pool-stream", stream_accept="text/event-stream"
    )
    assert isinstance(stream, AgentStream)
    assert sorted(r.state.inflight for r in runtime.replicas) == [0, 1]
    assert runtime.limiter.inflight == 1
    while await stream.next_event() is not None:
        pass
    assert sorted(r.state.inflight for r in runtime.replicas) == [0, 1]  # until closed
    stream.close(completed=True)
    assert [r.state.inflight for r in runtime.replicas] == [0, 0]
    assert runtime.limiter.inflight == 0


class RecordingTrace:
    """The request's trace as agent_call sees it: records each attempt span's URL."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def attempt(self, *, url: str, **_: Any) -> Any:
        self.urls.append(url)
        return contextlib.nullcontext(())

    def event(self, *_: Any) -> None: ...

    def answered(self, *_: Any) -> None: ...

    def end(self, *_: Any) -> None: ...


async def test_each_attempts_span_names_its_endpoint(gateway, make_pool, replicas, monkeypatch):
    monkeypatch.setattr(calls, "RETRY_BACKOFF_S", (0.0, 0.0))
    refused, good = refused_url("/ok"), replicas[0].url("/ok")
    make_pool([(refused, 100), (good, 1)], retries=1, balance="round_robin")
    await gateway.post(CHAT, json=chat_body())  # loads the registry
    runtime = registry.snapshot.agents["cita"]
    trace = RecordingTrace()
    body = json.dumps(chat_body()).encode()
    reply = await agent_call(runtime, body, request_id="traced", trace=trace)  # type: ignore[arg-type]
    assert not isinstance(reply, AgentStream) and reply.reply
    assert trace.urls == [refused, good]  # round robin picks the heavy one first


def check_agents_text() -> str:
    out = io.StringIO()
    with contextlib.suppress(SystemExit):
        call_command("check_agents", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def check_agents_json() -> dict[str, Any]:
    out = io.StringIO()
    with contextlib.suppress(SystemExit):
        call_command("check_agents", "--json", stdout=out, stderr=io.StringIO())
    return dict(json.loads(out.getvalue()))


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
