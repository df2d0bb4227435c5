"""Failover agents (issue 16, point 4) through real agent servers (tests/fault_agent.py): what
fails over and what does not, the order of a chain, the request's deadline, no loops, key
permissions, streaming, and what the metrics count."""

import io
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from chat import failover
from tests.conftest import chat_body, in_thread
from tests.fault_agent import refused_url
from tests.integration.test_tracing import (
    add_agent,
    children,
    log_lines,
    server_span,
    tracing_env,
)
from tests.integration.test_tracing import post as traced_post
from tests.metrics import sample_or_absent
from tests.otlp_receiver import OtlpReceiver

pytestmark = [pytest.mark.integration]

CHAT = "/api/agent/chat"
A_FALLBACK = "A no está disponible."


def chain(agent: str, *targets: str) -> None:
    """`agent` fails over to `targets`, in that order."""
    from agents.models import Agent, FailoverStep

    def create() -> None:
        source = Agent.objects.get(key=agent)
        for position, target in enumerate(targets):
            FailoverStep.objects.create(
                agent=source, target=Agent.objects.get(key=target), position=position
            )

    in_thread(create)


async def counted(gateway: httpx.AsyncClient, name: str, **labels: str) -> float:
    """A sample of the in-process gateway's /metrics; 0 while not exported (the process's
    counters outlive a test: compare before and after)."""
    return sample_or_absent((await gateway.get("/metrics")).text, name, **labels) or 0.0


async def failovers(gateway: httpx.AsyncClient, to: str, outcome: str, agent: str = "a") -> float:
    return await counted(gateway, "gateway_failover_total", agent=agent, to=to, outcome=outcome)


async def post(gateway: httpx.AsyncClient, **kwargs) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await gateway.post(CHAT, json=chat_body(config={"modalidad": "a"}), **kwargs)
    return response, time.monotonic() - started


def agents(make_agent, a_url: str, **urls: str) -> None:
    """Agent `a` (routed by "a", its own fallback text, no retries) and the others by key."""
    make_agent("a", url=a_url, fallback_reply=A_FALLBACK, retries=0)
    for key, url in urls.items():
        make_agent(key, url=url, retries=0)


def answered_by(response: httpx.Response, key: str) -> None:
    assert response.status_code == 200
    assert response.json() == {
        "reply": "echo: Quiero agendar una cita", "session_id": 3796, "agent_used": key,
        "url": None,
    }  # fmt: skip
    assert response.headers["x-gateway-failover"] == "a"
    assert "x-gateway-fallback" not in response.headers


def fell_back(response: httpx.Response, reason: str) -> None:
    assert response.status_code == 200
    assert response.json()["reply"] == A_FALLBACK
    assert response.json()["agent_used"] == "a"
    assert response.headers["x-gateway-fallback"] == reason
    assert "x-gateway-failover" not in response.headers


class TestWhatFailsOver:
    @pytest.mark.parametrize(
        ("a_path", "reason"),
        [(None, "connection"), ("/status/500", "bad_status"), ("/status/503", "bad_status")],
    )
    async def test_a_refused_or_5xx_agent_hands_the_request_to_its_failover_agent(
        self, gateway, make_agent, fault_agent, a_path, reason
    ):
        a_url = fault_agent.url(a_path) if a_path else refused_url()
        agents(make_agent, a_url, b=fault_agent.url("/ok"))
        chain("a", "b")
        before = {
            "failover": await failovers(gateway, "b", failover.ANSWERED),
            "a_error": await counted(gateway, "gateway_agent_error_total", agent="a",
                                     error_type=reason),
            "a_200": await counted(gateway, "gateway_requests_total", agent="a", status="200"),
            "b_200": await counted(gateway, "gateway_upstream_http_status_total", agent="b",
                                   status_code="200"),
        }  # fmt: skip
        response, _ = await post(gateway)
        answered_by(response, "b")
        assert fault_agent.attempts("/ok") == 1
        assert await failovers(gateway, "b", failover.ANSWERED) == before["failover"] + 1
        assert await counted(gateway, "gateway_agent_error_total", agent="a",
                             error_type=reason) == before["a_error"] + 1  # fmt: skip
        # The request counts under the routed agent, as every chat answer does.
        assert await counted(gateway, "gateway_requests_total", agent="a", status="200") == (
            before["a_200"] + 1
        )
        assert await counted(gateway, "gateway_upstream_http_status_total", agent="b",
                             status_code="200") == before["b_200"] + 1  # fmt: skip

    async def test_an_open_breaker_fails_over_without_calling_the_agent(
        self, gateway, make_agent, fault_agent
    ):
        agents(make_agent, fault_agent.url("/status/502"), b=fault_agent.url("/ok"))
        in_thread(lambda: _set("a", breaker_fail_max=1, breaker_reset_s=60))
        chain("a", "b")
        first, _ = await post(gateway)  # A's 502 opens its breaker; B answers
        answered_by(first, "b")
        before = await failovers(gateway, "b", failover.ANSWERED)
        for _ in range(3):
            response, _ = await post(gateway)
            answered_by(response, "b")
        assert fault_agent.attempts("/status/502") == 1  # never called while open
        assert fault_agent.attempts("/ok") == 4
        assert await failovers(gateway, "b", failover.ANSWERED) == before + 3

    async def test_a_disabled_agent_fails_over(self, gateway, make_agent, fault_agent):
        agents(make_agent, fault_agent.url("/ok_url"), b=fault_agent.url("/ok"))
        in_thread(lambda: _set("a", enabled=False))
        chain("a", "b")
        response, _ = await post(gateway)
        answered_by(response, "b")
        assert fault_agent.attempts("/ok_url") == 0

    @pytest.mark.parametrize(
        ("a_path", "reason"),
        [("/status/404", "bad_status"), ("/garbage", "decode"), ("/hang", "timeout")],
    )
    async def test_a_4xx_an_undecodable_reply_or_a_timeout_does_not_fail_over(
        self, gateway, make_agent, fault_agent, a_path, reason
    ):
        agents(make_agent, fault_agent.url(a_path), b=fault_agent.url("/ok"))
        in_thread(lambda: _set("a", timeout_s=1.5))  # time enough left after a quick failure
        chain("a", "b")
        response, _ = await post(gateway)
        fell_back(response, reason)
        assert fault_agent.attempts("/ok") == 0

    async def test_an_agent_without_failover_agents_answers_as_before(
        self, gateway, make_agent, fault_agent
    ):
        agents(make_agent, refused_url(), b=fault_agent.url("/ok"))
        response, _ = await post(gateway)
        fell_back(response, "connection")
        assert fault_agent.attempts() == 0


class TestChains:
    async def test_the_chain_goes_on_past_a_failing_agent_and_follows_its_own(
        self, gateway, make_agent, fault_agent
    ):
        """A → B, B → C: A refuses, B answers 500, C answers (B's own failover agent, tried
        after A's list)."""
        agents(make_agent, refused_url(), b=fault_agent.url("/status/500"),
               c=fault_agent.url("/ok"))  # fmt: skip
        chain("a", "b")
        chain("b", "c")
        b_failed = await failovers(gateway, "b", "bad_status")
        response, _ = await post(gateway)
        answered_by(response, "c")
        assert fault_agent.attempts("/status/500") == 1
        assert fault_agent.attempts("/ok") == 1
        assert await failovers(gateway, "b", "bad_status") == b_failed + 1

    async def test_the_routed_agents_list_comes_first_in_its_order(
        self, gateway, make_agent, fault_agent
    ):
        """A → [B, C], B → [D]: B fails, then C (A's list) answers before D is tried."""
        agents(make_agent, refused_url(), b=fault_agent.url("/status/502"),
               c=fault_agent.url("/ok"), d=fault_agent.url("/ok_url"))  # fmt: skip
        chain("a", "b", "c")
        chain("b", "d")
        response, _ = await post(gateway)
        answered_by(response, "c")
        assert fault_agent.attempts("/ok_url") == 0

    async def test_when_every_agent_fails_the_routed_agents_fallback_answers(
        self, gateway, make_agent, fault_agent
    ):
        agents(make_agent, fault_agent.url("/status/503"), b=refused_url(),
               c=fault_agent.url("/status/500"))  # fmt: skip
        chain("a", "b", "c")
        response, _ = await post(gateway)
        fell_back(response, "bad_status")  # the routed agent's reason
        assert fault_agent.attempts("/status/503") == 1
        assert fault_agent.attempts("/status/500") == 1

    async def test_mutual_failover_calls_each_agent_once(self, gateway, make_agent, fault_agent):
        agents(make_agent, fault_agent.url("/status/502"), b=fault_agent.url("/status/503"))
        chain("a", "b")
        chain("b", "a")
        response, elapsed = await post(gateway)
        fell_back(response, "bad_status")
        assert fault_agent.attempts("/status/502") == 1
        assert fault_agent.attempts("/status/503") == 1
        assert elapsed < 1

    async def test_a_failover_agent_the_key_may_not_use_is_skipped(
        self, gateway, make_agent, fault_agent
    ):
        from tests.integration.test_security import create_key

        agents(make_agent, refused_url(), b=fault_agent.url("/ok_url"), c=fault_agent.url("/ok"))
        chain("a", "b", "c")
        allowed = in_thread(lambda: _agents("a", "c"))
        plain = create_key("no-b", agents=allowed)
        skipped = await failovers(gateway, "b", failover.FORBIDDEN)
        response, _ = await post(gateway, headers={"X-API-Key": plain})
        answered_by(response, "c")
        assert fault_agent.attempts("/ok_url") == 0
        assert await failovers(gateway, "b", failover.FORBIDDEN) == skipped + 1


class TestDeadline:
    async def test_no_failover_agent_starts_in_the_deadlines_last_second(
        self, gateway, make_agent, fault_agent
    ):
        """A (2 s) answers 503 after 1.3 s: 0.7 s are left, so B is not started."""
        agents(make_agent, fault_agent.url("/status/503/1.3"), b=fault_agent.url("/ok"))
        in_thread(lambda: _set("a", timeout_s=2))
        chain("a", "b")
        no_time = await failovers(gateway, "b", failover.NO_TIME)
        response, _ = await post(gateway)
        fell_back(response, "bad_status")  # A's own answer, at 1.3 s
        assert fault_agent.attempts("/status/503/1.3") == 1
        assert fault_agent.attempts("/ok") == 0
        assert await failovers(gateway, "b", failover.NO_TIME) == no_time + 1

    async def test_a_failover_agent_gets_only_what_is_left_of_the_deadline(
        self, gateway, make_agent, fault_agent
    ):
        """A (2 s) answers 503 after 0.3 s; B (30 s of its own) hangs: the request still ends
        by A's deadline, and C, after B, is never started."""
        agents(make_agent, fault_agent.url("/status/503/0.3"), b=fault_agent.url("/hang"),
               c=fault_agent.url("/ok"))  # fmt: skip
        in_thread(lambda: _set("a", timeout_s=2))
        chain("a", "b", "c")
        deadline = time.monotonic() + 2
        response, elapsed = await post(gateway)
        assert time.monotonic() < deadline + 0.3
        assert elapsed >= 2 - 0.05  # B was given the time that was left, not cut short
        fell_back(response, "bad_status")
        assert fault_agent.attempts("/hang") == 1
        assert fault_agent.attempts("/ok") == 0

    async def test_a_failover_agents_own_timeout_goes_on_to_the_next_while_time_is_left(
        self, gateway, make_agent, fault_agent
    ):
        """B's own 1 s ends it (not A's 5 s, which would leave C no time: the answer would be
        A's fallback), and B is not cut before it."""
        agents(make_agent, refused_url(), b=fault_agent.url("/hang"), c=fault_agent.url("/ok"))
        in_thread(lambda: (_set("a", timeout_s=5), _set("b", timeout_s=1)))
        chain("a", "b", "c")
        timed_out = await failovers(gateway, "b", "timeout")
        response, elapsed = await post(gateway)
        answered_by(response, "c")
        assert await failovers(gateway, "b", "timeout") == timed_out + 1
        assert fault_agent.attempts("/hang") == 1
        assert elapsed >= 1


class TestStreaming:
    async def test_a_stream_from_a_failover_agent_carries_the_header(
        self, gateway, make_agent, fault_agent
    ):
        agents(make_agent, refused_url(), b=fault_agent.url("/sse/3/0.05"))
        chain("a", "b")
        response, _ = await post(gateway, headers={"Accept": "text/event-stream"})
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["x-gateway-failover"] == "a"
        assert response.content.count(b"data: token") == 3

    async def test_a_stream_that_breaks_after_its_first_event_does_not_fail_over(
        self, gateway, make_agent, fault_agent
    ):
        agents(make_agent, fault_agent.url("/sse/2/0.05/reset"), b=fault_agent.url("/ok"))
        chain("a", "b")
        response, _ = await post(gateway, headers={"Accept": "text/event-stream"})
        assert response.headers["content-type"] == "text/event-stream"
        assert "x-gateway-failover" not in response.headers
        assert response.content.count(b"data: token") == 2
        assert response.content.endswith(
            b'event: error\ndata: {"reply":"'
            + A_FALLBACK.encode()
            + b'","reason":"connection"}\n\n'
        )
        assert fault_agent.attempts("/ok") == 0

    @pytest.mark.parametrize("accept", ["text/event-stream", "application/json"])
    async def test_the_ninja_path_carries_it_too_and_lets_browsers_read_it(
        self, gateway, make_agent, fault_agent, settings, accept
    ):
        settings.CORS_ALLOW_ALL_ORIGINS = True
        b_path = "/sse/2/0.05" if accept == "text/event-stream" else "/ok"
        agents(make_agent, refused_url(), b=fault_agent.url(b_path))
        chain("a", "b")
        response, _ = await post(gateway, headers={"Accept": accept, "Origin": "http://n8n.test"})
        assert response.headers["content-type"] == accept
        assert response.headers["x-gateway-failover"] == "a"
        exposed = response.headers["access-control-expose-headers"].lower()
        assert "x-gateway-failover" in exposed
        assert response.headers["access-control-allow-origin"] == "*"


def _set(key: str, **fields) -> None:
    from agents.models import Agent

    agent = Agent.objects.get(key=key)
    for name, value in fields.items():
        setattr(agent, name, value)
    agent.save()


def _agents(*keys: str) -> tuple:
    from agents.models import Agent

    return tuple(Agent.objects.filter(key__in=keys))


class TestShown:
    async def test_health_lists_the_failover_agents(self, gateway, make_agent, fault_agent):
        agents(make_agent, fault_agent.url("/ok"), b=fault_agent.url("/ok"),
               c=fault_agent.url("/ok"))  # fmt: skip
        chain("a", "c", "b")
        body = (await gateway.get("/health")).json()
        assert body["agents"] == {"a": "ok", "b": "ok", "c": "ok"}
        assert body["failover"] == {"a": ["c", "b"]}

    def test_check_agents_json_lists_them(self, make_agent, fault_agent):
        from django.core.management import call_command

        agents(make_agent, fault_agent.url("/ok"), b=fault_agent.url("/ok"))
        chain("a", "b")
        out = io.StringIO()
        in_thread(lambda: call_command("check_agents", "--json", stdout=out))
        rows = {row["key"]: row for row in json.loads(out.getvalue())["agents"]}
        assert (rows["a"]["failover"], rows["b"]["failover"]) == (["b"], [])


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


def test_a_traced_failover_is_an_event_with_a_client_span_per_agent_and_logged(
    live_db, gateway_process, fault_agent, otlp
):
    add_agent(live_db, "a", fault_agent.url("/status/502"), retries=0)
    add_agent(live_db, "b", fault_agent.url("/ok"), retries=0)
    live_db.python(
        "from agents.models import Agent, FailoverStep\n"
        "FailoverStep.objects.create(agent=Agent.objects.get(key='a'),"
        " target=Agent.objects.get(key='b'))"
    )
    gateway = gateway_process(env=tracing_env(otlp))
    answer = traced_post(gateway, "a", "fo-1")
    assert answer.status_code == 200
    assert (answer.json()["agent_used"], answer.headers["x-gateway-failover"]) == ("b", "a")

    server = server_span(otlp, "fo-1")
    assert server.events == [
        ("gateway.failover", {"gateway.agent": "a", "gateway.failover.to": "b",
                              "gateway.failover.after": "bad_status"}),
    ]  # fmt: skip
    assert (server.attributes["gateway.agent"], server.attributes["gateway.outcome"]) == ("a", "ok")
    first, second = sorted(children(otlp, server, 2), key=lambda s: s.start_ns)
    assert (first.name, first.attributes["error.type"]) == ("POST a", "bad_status")
    assert second.name == "POST b" and "error.type" not in second.attributes
    (access,) = [line for line in log_lines(gateway, "fo-1") if line["event"] == "request"]
    assert (access["agent"], access["failover"], access["outcome"]) == ("a", "b", "ok")


class TestEmpresaLimits:
    @staticmethod
    def limit(agent: str, max_concurrency: int) -> None:
        from agents.models import Agent, Tenant, TenantAgentLimit

        def create() -> None:
            tenant, _ = Tenant.objects.get_or_create(id_empresa=1, defaults={"name": "Uno"})
            TenantAgentLimit.objects.create(
                tenant=tenant, agent=Agent.objects.get(key=agent), max_concurrency=max_concurrency
            )

        in_thread(create)

    async def test_a_failover_agent_whose_empresa_cap_is_full_is_skipped(
        self, gateway, make_agent, fault_agent
    ):
        import asyncio

        agents(make_agent, refused_url(), b=fault_agent.url("/slow/1"), c=fault_agent.url("/ok"))
        chain("a", "b", "c")
        self.limit("b", 1)
        skipped = await failovers(gateway, "b", "backpressure")
        holding = asyncio.create_task(
            gateway.post(CHAT, json=chat_body(config={"modalidad": "b"}))
        )  # takes the empresa's one slot on B for 1 s
        assert await fault_agent.until(lambda a: a.attempts("/slow/1") == 1)
        response, _ = await post(gateway)
        answered_by(response, "c")
        assert (await holding).json()["agent_used"] == "b"
        assert fault_agent.attempts("/slow/1") == 1
        assert await failovers(gateway, "b", "backpressure") == skipped + 1

    @pytest.mark.parametrize(
        ("b_path", "accept"), [("/ok", "application/json"), ("/sse/2/0.01", "text/event-stream")]
    )
    async def test_the_slot_a_failover_agent_takes_comes_back(
        self, gateway, make_agent, fault_agent, b_path, accept
    ):
        agents(make_agent, refused_url(), b=fault_agent.url(b_path))
        chain("a", "b")
        self.limit("b", 1)
        for _ in range(3):
            response, _ = await post(gateway, headers={"Accept": accept})
            assert response.headers["x-gateway-failover"] == "a"
            assert response.headers["content-type"] == accept
        assert fault_agent.attempts(b_path) == 3
