"""The last hour's charts in a real browser: the agent list, the agent page and the fleet
dashboard, drawn from what a real serving process published after real traffic."""

import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import chat_body
from tests.e2e.conftest import ADMIN_PASSWORD

pytestmark = pytest.mark.e2e
CHAT = "/api/agent/chat"
TITLES = ["requests/min", "p95 latency", "fallback ratio"]
TRAFFIC = {"cita": 12, "lento": 4, "roto": 3}  # answers sent to each agent


@pytest.fixture
def busy_gateway(live_db, gateway_process, fault_agent):
    agents = {"cita": "/ok", "lento": "/slow/0.3", "roto": "/status/500"}
    live_db.python(
        "from django.contrib.auth.models import User\n"
        f"User.objects.create_superuser('admin', 'admin@example.com', '{ADMIN_PASSWORD}')\n"
        "from agents.models import Agent, RoutingName\n"
        + "".join(
            f"a = Agent.objects.create(key='{key}', name='{key.title()}', "
            f"url='{fault_agent.url(path)}', breaker_fail_max=100)\n"
            f"RoutingName.objects.create(agent=a, name='{key}')\n"
            for key, path in agents.items()
        )
    )
    gateway = gateway_process()
    for key, count in TRAFFIC.items():
        for _ in range(count):
            body = chat_body(config={"modalidad": key})
            assert httpx.post(f"{gateway.url}{CHAT}", json=body, timeout=10).status_code == 200
    return gateway


def log_in(page: Any, base: str) -> None:
    page.goto(f"{base}/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_contain_text("Agent gateway")


def chart_labels(scope: Any) -> list[str]:
    return [svg.get_attribute("aria-label") for svg in scope.locator("svg.gateway-chart").all()]


def assert_charts(scope: Any, key: str) -> None:
    """The three charts, each titled in place, with the agent's traffic in their labels."""
    expect(scope.locator("svg.gateway-chart")).to_have_count(3)
    labels = chart_labels(scope)
    assert [label.split(",")[0] for label in labels] == TITLES
    assert labels[0].endswith(f"total {TRAFFIC[key]}"), labels
    for svg, title in zip(scope.locator("svg.gateway-chart").all(), TITLES, strict=True):
        expect(svg.locator("text").first).to_have_text(title)
        expect(svg.locator("polyline, circle").first).to_be_attached()  # drawn, not empty
    box = scope.locator("svg.gateway-chart").first.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 40  # laid out, visible


def test_charts_on_the_agent_list_the_agent_page_and_the_fleet_dashboard(
    page, screenshot, busy_gateway
):
    base = busy_gateway.url
    log_in(page, base)

    page.goto(f"{base}/admin/agents/agent/")

    def agent_row(key: str) -> Any:
        return page.locator("#result_list tbody tr", has=page.locator(f"th a:text-is('{key}')"))

    def all_published() -> bool:
        return all(
            f"total {count}" in str(chart_labels(agent_row(key))) for key, count in TRAFFIC.items()
        )

    # The worker publishes every 2 s: a publish may fall between two agents' traffic, so wait
    # for the last one to show every agent's total.
    deadline = time.monotonic() + 10
    while not all_published() and time.monotonic() < deadline:
        page.reload()
    for key in TRAFFIC:
        assert_charts(agent_row(key).locator("td.field-charts_column"), key)
    results = page.locator("#changelist .results").bounding_box()
    charts = page.locator("td.field-charts_column").first.bounding_box()
    assert results and charts and charts["x"] + charts["width"] <= results["x"] + results["width"]
    roto = chart_labels(
        page.locator("#result_list tbody tr", has=page.locator("th a:text-is('roto')"))
    )
    assert "3 of 3 fallbacks" in roto[2] and "peak 100%" in roto[2]
    screenshot("agent-list")

    page.click("#result_list th a:text-is('lento')")
    panel = page.locator(".field-charts_panel")
    assert_charts(panel, "lento")
    p95 = chart_labels(panel)[1]
    assert "p95 over the hour 392 ms" in p95, p95  # 0.3 s: the 250-400 ms bucket, 95% in
    panel.scroll_into_view_if_needed()
    screenshot("agent-page")

    page.goto(f"{base}/admin/agents/agent/")
    page.click(".object-tools a:text-is('Fleet dashboard')")
    expect(page.locator("h1")).to_have_text("Fleet dashboard")
    rows = page.locator("#fleet-dashboard tr.fleet-agent")
    expect(rows).to_have_count(len(TRAFFIC))
    for key in TRAFFIC:
        dashboard_row = page.locator(f"#fleet-dashboard tr[data-agent='{key}']")
        expect(dashboard_row).to_contain_text("breaker: closed (1 worker)")
        assert_charts(dashboard_row, key)
    screenshot("fleet-dashboard")

    page.goto(f"{base}/admin/")  # also linked from the index
    page.click("a:text-is('Fleet dashboard')")
    expect(page.locator("h1")).to_have_text("Fleet dashboard")
