"""The admin as admins use it, in a real browser, against real serving processes."""

import re
import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import chat_body
from tests.e2e.conftest import ADMIN_PASSWORD

pytestmark = pytest.mark.e2e
CHAT = "/api/agent/chat"


@pytest.fixture
def admin_gateway(live_db, gateway_process, fault_agent):
    live_db.python(
        "from django.contrib.auth.models import User\n"
        f"User.objects.create_superuser('admin', 'admin@example.com', '{ADMIN_PASSWORD}')\n"
        "from agents.models import Agent, RoutingName\n"
        f"a = Agent.objects.create(key='cita', name='Citas', url='{fault_agent.url('/ok')}')\n"
        "RoutingName.objects.create(agent=a, name='cita')\n"
        f"h = Agent.objects.create(key='lento', name='Lento', url='{fault_agent.url('/hang')}',"
        f" health_url='{fault_agent.url('/hang')}', timeout_s=1, connect_timeout_s=0.5)\n"
        "RoutingName.objects.create(agent=h, name='lento')"
    )
    return gateway_process()


def log_in(page: Any, base: str) -> None:
    page.goto(f"{base}/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_contain_text("Agent gateway")


def chat(base: str, modalidad: str) -> httpx.Response:
    return httpx.post(f"{base}{CHAT}", json=chat_body(config={"modalidad": modalidad}), timeout=10)


def row(page: Any, key: str) -> Any:
    return page.locator("#result_list tbody tr", has=page.locator(f"th a:text-is('{key}')"))


def test_live_columns_disable_enable_and_routing(page, screenshot, admin_gateway, fault_agent):
    base = admin_gateway.url
    assert chat(base, "cita").status_code == 200
    log_in(page, base)

    # Live columns: published by the serving process within a couple of seconds.
    deadline = time.monotonic() + 8
    page.goto(f"{base}/admin/agents/agent/")
    while "1 req" not in row(page, "cita").inner_text() and time.monotonic() < deadline:
        page.reload()
    cita_row = row(page, "cita")
    expect(cita_row).to_contain_text("closed (1 worker)")
    expect(cita_row).to_contain_text("1 req, 0% fallback")
    expect(cita_row).to_contain_text("0 / 25")
    screenshot("agent-list")

    # Disable from the list: the next request gets the fallback and never reaches the agent.
    cita_row.locator("input.action-select").check()
    page.select_option("select[name=action]", "disable_selected")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("Disabled 1 agent(s).")
    attempts = fault_agent.attempts()
    response = chat(base, "cita")
    assert response.headers["x-gateway-fallback"] == "disabled"
    assert fault_agent.attempts() == attempts

    # Re-enable with the list's editable checkbox.
    row(page, "cita").locator("input[name$='-enabled']").check()
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    assert "x-gateway-fallback" not in chat(base, "cita").headers

    # Add a routing name inline and see it routed.
    page.click("#result_list th a:text-is('cita')")
    page.fill("#id_routing_names-1-name", "  Agenda ")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    response = chat(base, "AGENDA")
    assert response.status_code == 200 and response.json()["agent_used"] == "cita"
    screenshot("after-routing-name")

    # The change history names who changed what.
    page.goto(page.url)
    page.click("#result_list th a:text-is('cita')")
    page.click("a.historylink")
    entries = page.locator("#change-history tbody tr")
    expect(entries).to_have_count(3)
    history = [[cell.strip() for cell in entry.locator("td").all_inner_texts()]
               for entry in entries.all()]  # fmt: skip
    assert history == [
        ["admin", "Changed Enabled."],  # the list's "Disable" action
        ["admin", "Changed Enabled."],  # the list's editable checkbox
        ["admin", "Added routing name (modalidad) “agenda”."],  # the inline, normalised
    ]
    screenshot("history")


def test_check_health_now_reports_a_hanging_agent_within_3s(page, screenshot, admin_gateway):
    base = admin_gateway.url
    log_in(page, base)
    page.goto(f"{base}/admin/agents/agent/")
    page.locator("#action-toggle").check()
    page.select_option("select[name=action]", "check_health")
    started = time.monotonic()
    page.click("button[name=index]")
    messages = page.locator(".messagelist")
    # The admin's stylesheet capitalises each message's first letter.
    expect(messages).to_contain_text(re.compile("lento: unreachable", re.I))
    elapsed = time.monotonic() - started
    expect(messages).to_contain_text(re.compile(r"cita: ok in \d+ ms", re.I))
    assert elapsed < 3.0, elapsed
    expect(row(page, "lento")).to_contain_text("unreachable")
    expect(row(page, "cita")).to_contain_text(re.compile(r"ok, \d+ ms at"))
    screenshot("health-checked")


def test_send_a_test_message_shows_the_reply(page, admin_gateway):
    base = admin_gateway.url
    log_in(page, base)
    page.goto(f"{base}/admin/agents/agent/")
    row(page, "cita").locator("input.action-select").check()
    page.select_option("select[name=action]", "send_test_message")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text(
        re.compile("cita answered in \\d+ ms: “echo: Mensaje de prueba del gateway”", re.I)
    )
