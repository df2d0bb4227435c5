"""An agent pool in the admin: endpoints edited inline, the URL-or-endpoint rule and unique
endpoint URLs said in plain words, and the list's "pool: n/m up" in the URL column."""

from typing import Any

import pytest
from django.test import Client

from agents.models import Agent, AgentEndpoint, ConfigVersion
from console.agents_admin import NO_URL_NOR_ENDPOINT, URL_AND_ENDPOINTS
from tests.integration.test_admin import CHANGELIST, agent_form

pytestmark = pytest.mark.django_db


def with_endpoints(agent: Agent, rows: list[tuple[str, int]], **overrides: Any) -> dict[str, Any]:
    form = agent_form(agent, **overrides)
    form["endpoints-TOTAL_FORMS"] = len(rows)
    for index, (url, weight) in enumerate(rows):
        form |= {
            f"endpoints-{index}-agent": agent.pk,
            f"endpoints-{index}-position": index,
            f"endpoints-{index}-url": url,
            f"endpoints-{index}-weight": weight,
            f"endpoints-{index}-enabled": "on",
        }
    return form


def change(admin: Client, agent: Agent, form: dict[str, Any]) -> str:
    return str(admin.post(f"{CHANGELIST}{agent.pk}/change/", form).content.decode())


def test_endpoints_added_inline_make_a_pool(admin_client: Client) -> None:
    cita = Agent.objects.get(key="cita")
    before = ConfigVersion.objects.get(name="agents").version
    rows = [("http://10.0.0.1:8000/chat", 3), ("http://10.0.0.2:8000/chat", 1)]
    response = admin_client.post(
        f"{CHANGELIST}{cita.pk}/change/",
        with_endpoints(cita, rows, url="", balance="round_robin", affinity="session"),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert [(e.url, e.weight) for e in cita.endpoints.all()] == rows
    cita.refresh_from_db()
    assert (cita.url, cita.balance, cita.affinity) == ("", "round_robin", "session")
    assert ConfigVersion.objects.get(name="agents").version > before
    page = admin_client.get(CHANGELIST).content.decode()
    assert "pool: 2/2 up" in page and "http://127.0.0.1:8001/api/chat" in page  # venta: a URL
    AgentEndpoint.objects.filter(agent=cita, position=1).update(enabled=False)
    assert "pool: 1/2 up" in admin_client.get(CHANGELIST).content.decode()


def test_neither_url_nor_endpoint_is_refused_with_a_clear_message(admin_client: Client) -> None:
    cita = Agent.objects.get(key="cita")
    page = change(admin_client, cita, agent_form(cita, url=""))
    assert NO_URL_NOR_ENDPOINT in page
    assert Agent.objects.get(key="cita").url  # unchanged


def test_a_url_and_endpoints_together_are_refused(admin_client: Client) -> None:
    cita = Agent.objects.get(key="cita")
    page = change(admin_client, cita, with_endpoints(cita, [("http://10.0.0.1:8000/chat", 1)]))
    assert URL_AND_ENDPOINTS in page
    assert not cita.endpoints.exists()


def test_an_endpoint_url_twice_is_refused(admin_client: Client) -> None:
    cita = Agent.objects.get(key="cita")
    twice = [("http://10.0.0.1:8000/chat", 1), ("http://10.0.0.1:8000/chat", 2)]
    page = change(admin_client, cita, with_endpoints(cita, twice))
    assert "Please correct the duplicate data for url." in page
    assert not cita.endpoints.exists()


def test_an_endpoint_weight_out_of_bounds_is_refused(admin_client: Client) -> None:
    cita = Agent.objects.get(key="cita")
    page = change(admin_client, cita, with_endpoints(cita, [("http://10.0.0.1:8000/chat", 101)]))
    assert "Must be at most 100" in page
    assert not cita.endpoints.exists()
