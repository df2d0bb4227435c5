"""GET /health probes each agent at most once a second however many monitors call: concurrent
callers share one probe round, and a round that started less than 1 s ago is served from memory
(health/cache.py). What it answers still follows the registry and the breakers at once.

Time is a clock injected into the cache: nothing here sleeps to make the cache expire."""

import asyncio

import pytest

from tests.conftest import chat_body


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    from health.cache import health_cache

    fake = FakeClock()
    monkeypatch.setattr(health_cache, "clock", fake)
    return fake


def health_paths(fault_agent) -> dict[str, int]:
    return {path: fault_agent.attempts(path) for path in ("/health/a", "/health/b", "/health/c")}


async def wait_for_agents(gateway, *keys: str) -> None:
    """Until this process's registry serves exactly these agents (a reload, polled every 0.2 s)."""
    from runtime.registry import registry

    await gateway.get("/health/live")  # starts the registry
    for _ in range(500):
        if set(registry.snapshot.agents) == set(keys):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"registry has {sorted(registry.snapshot.agents)}, not {keys}")


async def test_20_concurrent_callers_probe_each_agent_once(gateway, make_agent, fault_agent, clock):
    for key in "abc":
        make_agent(key, url=fault_agent.url("/ok"), health_url=fault_agent.url(f"/health/{key}"))
    await wait_for_agents(gateway, "a", "b", "c")

    responses = await asyncio.gather(*(gateway.get("/health") for _ in range(20)))
    assert {r.status_code for r in responses} == {200}
    assert all(r.json()["agents"] == {"a": "ok", "b": "ok", "c": "ok"} for r in responses)
    assert health_paths(fault_agent) == {"/health/a": 1, "/health/b": 1, "/health/c": 1}

    clock.now += 0.9  # younger than 1 s: from the cache
    assert (await gateway.get("/health")).status_code == 200
    assert health_paths(fault_agent) == {"/health/a": 1, "/health/b": 1, "/health/c": 1}

    clock.now += 0.2  # 1.1 s after the round started: probed again
    assert (await gateway.get("/health")).status_code == 200
    assert health_paths(fault_agent) == {"/health/a": 2, "/health/b": 2, "/health/c": 2}


async def test_callers_arriving_during_a_round_await_that_round(
    gateway, make_agent, fault_agent, clock
):
    """Every agent hangs: the round takes the 2 s probe timeout. Callers arriving while it runs
    (even with the clock far past the cache's second) get its answer and add no probe."""
    for key in "abc":
        make_agent(key, url=fault_agent.url("/ok"), health_url=fault_agent.url("/hang"))
    await wait_for_agents(gateway, "a", "b", "c")

    first = asyncio.ensure_future(gateway.get("/health"))
    assert await fault_agent.until(lambda a: a.attempts("/hang") == 3)
    clock.now += 10
    later = await asyncio.gather(*(gateway.get("/health") for _ in range(19)))
    responses = [await first, *later]
    assert {r.status_code for r in responses} == {503}
    assert all(set(r.json()["agents"].values()) == {"unreachable"} for r in responses)
    assert fault_agent.attempts("/hang") == 3


async def test_a_registry_change_is_answered_at_once(gateway, make_agent, fault_agent, clock):
    for key in "ab":
        make_agent(key, url=fault_agent.url("/ok"), health_url=fault_agent.url(f"/health/{key}"))
    await wait_for_agents(gateway, "a", "b")
    assert (await gateway.get("/health")).json()["agents"] == {"a": "ok", "b": "ok"}

    make_agent("c", url=fault_agent.url("/ok"), health_url=fault_agent.url("/health/c"))
    await wait_for_agents(gateway, "a", "b", "c")
    # Same clock instant: the cached round was for another agent list.
    assert (await gateway.get("/health")).json()["agents"] == {"a": "ok", "b": "ok", "c": "ok"}
    assert health_paths(fault_agent) == {"/health/a": 2, "/health/b": 2, "/health/c": 1}


async def test_breaker_changes_are_answered_at_once(gateway, make_agent, fault_agent, clock):
    from runtime.registry import registry

    make_agent(
        "cita",
        url=fault_agent.url("/status/500"),
        health_url=fault_agent.url("/health/a"),
        breaker_fail_max=1,
        retries=0,
    )
    await wait_for_agents(gateway, "cita")
    assert (await gateway.get("/health")).json()["agents"] == {"cita": "ok"}

    await gateway.post("/api/agent/chat", json=chat_body())  # one 500 opens the breaker
    assert registry.snapshot.agents["cita"].breaker.state == "open"
    response = await gateway.get("/health")  # same instant: not the cached "ok"
    assert response.status_code == 503
    assert response.json()["agents"] == {"cita": "circuit_open"}

    registry.snapshot.agents["cita"].breaker.reset()
    assert (await gateway.get("/health")).json()["agents"] == {"cita": "ok"}
    assert fault_agent.attempts("/health/a") == 2  # probed again once the breaker closed
