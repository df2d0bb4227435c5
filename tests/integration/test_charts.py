"""The last hour per agent as charts: real traffic through serving processes reaches their
published series and the admin's SVG; the admin pages from published rows."""

import contextlib
import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from agents.models import Agent, WorkerStatus
from fleet.series import MinuteSeries, series_published
from tests.conftest import chat_body

CHAT = "/api/agent/chat"
PASSWORD = "charts-admin-password-7"

SERIES = """
import json
from fleet.worker_state import fleet_series
print(json.dumps({k: {"requests": sum(v.requests), "fallbacks": sum(v.fallbacks),
                      "p95": v.hour_p95_ms} for k, v in fleet_series().items()}))
"""


@contextlib.contextmanager
def logged_in(base: str) -> Iterator[httpx.Client]:
    """An admin session on a serving process, logged in through the login form."""
    with httpx.Client(base_url=base, follow_redirects=True, timeout=10) as client:
        form = client.get("/admin/login/").text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
        assert token, form[:500]
        page = client.post(
            "/admin/login/?next=/admin/",
            data={"csrfmiddlewaretoken": token.group(1), "username": "admin",
                  "password": PASSWORD, "next": "/admin/"},
        )  # fmt: skip
        assert "Log out" in page.text, page.text[:500]
        yield client


def chart_labels(page: str) -> list[str]:
    return re.findall(r'<svg [^>]*aria-label="([^"]*)"', page)


def test_real_traffic_reaches_the_published_series_and_the_admin_charts(
    live_db, gateway_process, fault_agent
):
    live_db.python(
        "from django.contrib.auth.models import User\n"
        f"User.objects.create_superuser('admin', 'admin@example.com', '{PASSWORD}')\n"
        "from agents.models import Agent, RoutingName\n"
        f"a = Agent.objects.create(key='cita', name='Cita', url='{fault_agent.url('/slow/0.2')}')\n"
        "RoutingName.objects.create(agent=a, name='cita')\n"
        f"b = Agent.objects.create(key='venta', name='Venta', url='{fault_agent.url('/status/500')}',"
        " breaker_fail_max=100)\n"
        "RoutingName.objects.create(agent=b, name='venta')"
    )
    workers = [gateway_process() for _ in range(2)]
    for worker, cita, venta in ((workers[0], 3, 2), (workers[1], 2, 2)):
        for modalidad in ["cita"] * cita + ["venta"] * venta:
            body = chat_body(config={"modalidad": modalidad})
            response = httpx.post(f"{worker.url}{CHAT}", json=body, timeout=10)
            assert response.status_code == 200
            assert ("x-gateway-fallback" in response.headers) == (modalidad == "venta")

    deadline = time.monotonic() + 10  # each worker publishes every 2 s
    while True:
        series = json.loads(live_db.python(SERIES).strip().splitlines()[-1])
        totals = {key: (v["requests"], v["fallbacks"]) for key, v in series.items()}
        if totals == {"cita": (5, 0), "venta": (4, 4)} or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert totals == {"cita": (5, 0), "venta": (4, 4)}  # both workers, summed
    assert 150 < series["cita"]["p95"] <= 250  # every answer in the 150-250 ms bucket

    with logged_in(workers[0].url) as admin:
        listing = admin.get("/admin/agents/agent/").text
        labels = chart_labels(listing)
        assert len(labels) == 6  # three charts per agent
        assert any(label.endswith("total 5") for label in labels)
        assert any("4 of 4 fallbacks" in label for label in labels)
        link = re.search(r'href="(/admin/agents/agent/\d+/change/)">cita<', listing)
        assert link, "no change link for cita"
        page = chart_labels(admin.get(link.group(1)).text)
        assert [label.split(",")[0] for label in page] == [
            "requests/min", "p95 latency", "fallback ratio"]  # fmt: skip
        assert page[0].endswith("total 5")
        dashboard = admin.get("/admin/fleet/").text
        assert len(chart_labels(dashboard)) == 6
        assert "total 5" in dashboard and "4 of 4 fallbacks" in dashboard


# -- the admin pages from published rows, in process ---------------------------------------


def publish(worker: str, agents: dict[str, list[tuple[bool, float]]], *, age_s: float = 0) -> None:
    """A WorkerStatus row as a worker writes it, its series from these (fallback, seconds)."""
    series = {key: MinuteSeries() for key in agents}
    for key, answers in agents.items():
        for fallback, seconds in answers:
            series[key].record(fallback=fallback, seconds=seconds)
    WorkerStatus.objects.create(
        worker_id=worker,
        updated_at=timezone.now() - timezone.timedelta(seconds=age_s),
        state={"agents": {}, "tenants": {}, "series": series_published(series)},
    )


@pytest.mark.django_db
def test_charts_on_the_list_the_agent_page_and_the_dashboard(admin_client: Client) -> None:
    publish("a:1", {"cita": [(False, 0.08)] * 6 + [(True, 0.3)] * 2})
    publish("b:2", {"cita": [(False, 0.08)] * 2})
    publish("c:3", {"cita": [(True, 9.0)] * 50}, age_s=300)  # a dead worker: not counted
    Agent.objects.filter(key="venta").update(name="<b>Ventas</b>")

    listing = admin_client.get("/admin/agents/agent/").content.decode()
    labels = chart_labels(listing)
    assert len(labels) == 3 * Agent.objects.count()
    assert "requests/min, last 60 min: now 10, peak 10; total 10" in labels
    assert "fallback ratio, last 60 min: now 20%, peak 20%; 2 of 10 fallbacks" in labels
    assert "p95 latency, last 60 min: no traffic" in labels  # the agents without requests
    assert 'href="/admin/fleet/"' in listing

    cita = Agent.objects.get(key="cita")
    page = admin_client.get(f"/admin/agents/agent/{cita.pk}/change/").content.decode()
    assert "Last hour" in page
    assert chart_labels(page)[0] == "requests/min, last 60 min: now 10, peak 10; total 10"
    assert 'width="300"' in page  # the large size

    dashboard = admin_client.get("/admin/fleet/").content.decode()
    assert len(chart_labels(dashboard)) == 3 * Agent.objects.count()
    assert "breaker: no worker" in dashboard
    assert "&lt;b&gt;Ventas&lt;/b&gt;" in dashboard and "<b>Ventas" not in dashboard
    assert "Fleet dashboard" in admin_client.get("/admin/").content.decode()


@pytest.mark.django_db
def test_the_dashboard_needs_the_permission_to_view_agents(client: Client) -> None:
    staff = User.objects.create_user("staff", password="x", is_staff=True)
    client.force_login(staff)
    assert client.get("/admin/fleet/").status_code == 403
    assert "Fleet dashboard" not in client.get("/admin/").content.decode()
    staff.user_permissions.add(Permission.objects.get(codename="view_agent"))
    staff = User.objects.get(pk=staff.pk)  # a fresh permission cache
    client.force_login(staff)
    assert client.get("/admin/fleet/").status_code == 200
    assert "Fleet dashboard" in client.get("/admin/").content.decode()
