"""GATEWAY_DRAIN_S (uvicorn's --timeout-graceful-shutdown) shorter than an agent's timeout_s +
10 s is reported: a `drain_too_short` warning at start-up and when an edit raises a timeout past
it, and a `problem:` line (exit 2 when
every agent is healthy) from `manage.py check_agents`."""

import json
from types import SimpleNamespace

from runtime.drain_budget import drain_problems


def create_agents(live_db, fault_agent, **timeouts: float) -> None:
    lines = ["from agents.models import Agent, RoutingName"]
    for key, timeout in timeouts.items():
        lines.append(
            f"a = Agent.objects.create(key={key!r}, name={key!r}, url={fault_agent.url('/ok')!r},"
            f" health_url={fault_agent.url('/health')!r}, timeout_s={timeout})"
        )
        lines.append(f"RoutingName.objects.create(agent=a, name={key!r})")
    live_db.python("\n".join(lines))


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_drain_problems_names_every_agent_whose_timeout_plus_10_s_exceeds_the_drain():
    def spec(key: str, timeout_s: float) -> SimpleNamespace:  # what it reads of an AgentSpec
        return SimpleNamespace(key=key, timeout_s=timeout_s)

    specs = [spec("lento", 60), spec("justo", 25), spec("casi", 25.5), spec("rapido", 5)]
    problems = drain_problems(specs, drain_s=35)
    assert [p.split(":")[0] for p in problems] == ["agent casi", "agent lento"]
    assert "GATEWAY_DRAIN_S 35" in problems[1] and "at least 70" in problems[1]
    assert drain_problems(specs, drain_s=70) == []


def test_check_agents_reports_a_short_drain_as_a_configuration_problem(live_db, fault_agent):
    create_agents(live_db, fault_agent, cita=25, lento=60)
    result = live_db.manage("check_agents", check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    problems = [line for line in result.stderr.splitlines() if line.startswith("problem:")]
    assert len(problems) == 1 and problems[0].startswith("problem: agent lento: timeout_s 60 s")
    assert "GATEWAY_DRAIN_S 35 s" in problems[0]  # the default, as the entrypoint's

    as_json = live_db.manage("check_agents", "--json", check=False)
    assert as_json.returncode == 2
    report = json.loads(as_json.stdout)
    assert report["healthy"] is True and len(report["problems"]) == 1

    live_db.env["GATEWAY_DRAIN_S"] = "70"
    assert live_db.manage("check_agents", check=False).returncode == 0


def test_check_agents_an_unhealthy_agent_still_exits_1_with_the_problem_line(live_db, fault_agent):
    create_agents(live_db, fault_agent, lento=60)
    live_db.python(
        "from agents.models import Agent\n"
        f"Agent.objects.filter(key='lento').update(health_url={fault_agent.url('/status/500')!r})"
    )
    result = live_db.manage("check_agents", "--timeout", "1", check=False)
    assert result.returncode == 1
    assert "problem: agent lento" in result.stderr


def test_the_gateway_warns_at_start_up_when_the_drain_is_shorter(
    live_db, fault_agent, gateway_process
):
    create_agents(live_db, fault_agent, cita=25, lento=60)
    gateway = gateway_process(env={"GATEWAY_DRAIN_S": "30"})
    warnings = [e for e in json_lines(gateway.logs()) if e.get("event") == "drain_too_short"]
    assert len(warnings) == 1, gateway.logs()
    warning = warnings[0]
    assert warning["level"] == "warning"
    assert warning["drain_s"] == 30
    assert warning["agents"] == {"cita": 25, "lento": 60}
    assert len(warning["problems"]) == 2


def test_no_warning_when_the_drain_covers_every_agent(live_db, fault_agent, gateway_process):
    create_agents(live_db, fault_agent, cita=25)
    gateway = gateway_process()  # GATEWAY_DRAIN_S unset: 35 s, as the entrypoint's default
    events = [e.get("event") for e in json_lines(gateway.logs())]
    assert "startup" in events and "drain_too_short" not in events


async def test_an_edit_that_raises_a_timeout_past_the_drain_is_warned_once(
    gateway, make_agent, fault_agent, caplog
):
    import logging

    from agents.models import Agent
    from runtime.registry import registry
    from tests.conftest import in_thread

    make_agent("cita", url=fault_agent.url("/ok"), timeout_s=20)
    make_agent("venta", url=fault_agent.url("/ok"), timeout_s=20)

    def edit(key: str, **fields: object) -> None:
        in_thread(lambda: Agent.objects.filter(key=key).update(**fields))
        in_thread(lambda: Agent.objects.get(key=key).save())  # the signal bumps the version

    def warnings() -> list[logging.LogRecord]:
        return [r for r in caplog.records if getattr(r, "event", "") == "drain_too_short"]

    with caplog.at_level(logging.WARNING, logger="gateway.registry"):
        assert (await gateway.get("/health/live")).status_code == 200
        assert warnings() == []  # 20 s + 10 s fits the default 35 s drain
        edit("cita", timeout_s=60)
        await fault_agent.until(lambda _: registry.snapshot.agents["cita"].spec.timeout_s == 60)
        assert [getattr(r, "agents", None) for r in warnings()] == [{"cita": 60.0}]
        edit("venta", name="Ventas")  # a reload that changes nothing about the drain
        await fault_agent.until(lambda _: registry.snapshot.agents["venta"].spec.name == "Ventas")
        assert len(warnings()) == 1
