"""The tenants admin: list, add with routes inline (stored normalised), validation, and the
configuration version every save moves (what makes workers reload)."""

import pytest
from django.test import Client

from agents.models import Agent, ConfigVersion, Tenant

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/agents/tenant/"


def agents_version() -> int:
    return ConfigVersion.objects.get(name="agents").version


def tenant_form(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "id_empresa": 7,
        "name": "Siete",
        "enabled": "on",
        "max_concurrency": "",
        "requests_per_minute": "",
        "routes-TOTAL_FORMS": 1,
        "routes-INITIAL_FORMS": 0,
        "routes-MIN_NUM_FORMS": 0,
        "routes-MAX_NUM_FORMS": 1000,
        "routes-0-name": "",
        "routes-0-agent": "",
        "agent_limits-TOTAL_FORMS": 0,
        "agent_limits-INITIAL_FORMS": 0,
        "agent_limits-MIN_NUM_FORMS": 0,
        "agent_limits-MAX_NUM_FORMS": 1000,
    }
    data.update(overrides)
    return data


def test_a_tenant_is_added_with_its_own_route_and_listed(admin_client: Client) -> None:
    premium = Agent.objects.create(key="premium", name="Premium", url="http://premium:8000/chat")
    before = agents_version()
    response = admin_client.post(
        f"{CHANGELIST}add/",
        tenant_form(**{"routes-0-name": "  Citas ", "routes-0-agent": premium.pk}),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    tenant = Tenant.objects.get(id_empresa=7)
    assert [(r.name, r.agent.key) for r in tenant.routes.all()] == [("citas", "premium")]
    assert agents_version() > before
    listing = admin_client.get(CHANGELIST).content.decode()
    assert "Siete" in listing and "citas → premium" in listing


def test_bad_values_get_messages_not_a_crash(admin_client: Client) -> None:
    response = admin_client.post(f"{CHANGELIST}add/", tenant_form(id_empresa=0, max_concurrency=0))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Must be at least 1" in page
    assert not Tenant.objects.exists()


def test_a_key_is_bound_to_empresas_in_the_admin(admin_client: Client) -> None:
    from access.models import ApiKey

    response = admin_client.post(
        "/admin/access/apikey/add/",
        {"name": "solo-7", "enabled": "on", "empresas": "[7, 8]", "requests_per_minute": ""},
    )
    assert response.status_code in (200, 302), response.content.decode()[:2000]
    assert ApiKey.objects.get(name="solo-7").empresas == [7, 8]
    refused = admin_client.post(
        "/admin/access/apikey/add/",
        {"name": "mal", "enabled": "on", "empresas": '[0, "x"]', "requests_per_minute": ""},
    )
    assert refused.status_code == 200
    assert "Enter a list of id_empresa numbers above 0" in refused.content.decode()
    assert not ApiKey.objects.filter(name="mal").exists()


def test_live_columns_show_each_tenants_published_traffic(admin_client: Client) -> None:
    from django.utils import timezone

    from agents.models import WorkerStatus

    Tenant.objects.create(id_empresa=7, name="Siete", max_concurrency=5)
    Tenant.objects.create(id_empresa=9, name="Nueve")
    now = timezone.now()
    seven = {"inflight": 2, "limit": 5, "requests_5m": 30, "fallbacks_5m": 3}
    nine = {"inflight": 1, "limit": None, "requests_5m": 0, "fallbacks_5m": 0}
    for worker in ("a:1", "b:2"):
        WorkerStatus.objects.create(
            worker_id=worker,
            updated_at=now,
            state={"agents": {}, "tenants": {"7": seven, "9": nine}},
        )
    WorkerStatus.objects.create(  # a dead worker: not counted
        worker_id="c:3",
        updated_at=now - timezone.timedelta(minutes=5),
        state={"agents": {}, "tenants": {"7": {**seven, "inflight": 99}}},
    )
    page = admin_client.get(CHANGELIST).content.decode()
    assert "4 / 10" in page  # 2 in flight on each of two workers, a cap of 5 on each
    assert "60 req, 10% fallback" in page
    assert 'class="field-inflight_column">2<' in page  # 9: in flight, no cap of its own
    assert "no requests" in page
