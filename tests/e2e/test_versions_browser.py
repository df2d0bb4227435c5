"""Configuration history in a real browser: read a change's diff, roll back to the version
before it, and see the routing follow on the next chat request (issue 19)."""

import time

import pytest
from playwright.sync_api import expect

from tests.e2e.test_admin_browser import admin_gateway, chat, log_in

pytestmark = pytest.mark.e2e
__all__ = ["admin_gateway"]  # the fixture, used by name


def status_within(base: str, modalidad: str, expected: int, seconds: float = 3.0) -> int:
    deadline = time.monotonic() + seconds
    while (status := chat(base, modalidad).status_code) != expected:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return status


def test_history_diff_and_rollback_change_the_routing(page, screenshot, admin_gateway):
    base = admin_gateway.url
    log_in(page, base)
    assert chat(base, "agenda").status_code == 400  # no agent is routed by "agenda"

    # A change in the admin: cita gains the routing name "agenda".
    page.goto(f"{base}/admin/agents/agent/")
    page.click("#result_list th a:text-is('cita')")
    page.fill("#id_routing_names-1-name", "agenda")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    assert status_within(base, "agenda", 200) == 200

    # Its history lists the version; the version shows the diff, field by field.
    page.click("#result_list th a:text-is('cita')")
    page.click("a.historylink")
    versions = page.locator("#object-versions tbody tr")
    expect(versions.first).to_contain_text("changed agent cita (modalidades)")
    expect(versions.first).to_contain_text("admin")
    screenshot("object-history")
    versions.first.locator("a").click()
    diff = page.locator("#version-diff tbody tr")
    expect(diff).to_have_count(1)
    cells = [c.strip() for c in diff.first.locator("td").all_inner_texts()]
    assert cells[:3] == ["agent cita", "changed", "modalidades"]
    assert "agenda" not in cells[3] and "agenda" in cells[4]
    screenshot("version-diff")

    # Roll back to the version before it: the confirmation shows what will change.
    page.goto(f"{base}/admin/versions/version/")
    page.locator("#result_list tbody tr").nth(1).locator("th a").click()
    page.click("#restore-version")
    expect(page.locator("#version-diff")).to_contain_text("modalidades")
    screenshot("restore-confirmation")
    page.click("#restore-form input[type=submit]")
    expect(page.locator(".messagelist")).to_contain_text("Restored version #")
    expect(page.locator("#content-main")).to_contain_text("This is the current configuration")
    screenshot("restored")

    # The next chat requests follow the restored routing.
    assert status_within(base, "agenda", 400) == 400
    assert chat(base, "cita").status_code == 200
