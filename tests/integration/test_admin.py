"""The agents admin as admins use it: list, search, filters, actions, inline routing names,
and validation messages that say how to fix the value."""

from typing import Any

import pytest
from django.test import Client

from agents.models import Agent, ConfigVersion, RoutingName

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/agents/agent/"


@pytest.fixture
def admin(admin_client: Client) -> Client:
    return admin_client


def agent_form(agent: Agent, **overrides: Any) -> dict[str, Any]:
    """The change form as the browser posts it, with the agent's routing names inline."""
    names = list(agent.routing_names.order_by("name"))
    data: dict[str, Any] = {
        "key": agent.key,
        "name": agent.name,
        "url": agent.url,
        "health_url": agent.health_url,
        "enabled": "on" if agent.enabled else "",
        "payload_format": agent.payload_format,
        "timeout_s": agent.timeout_s,
        "connect_timeout_s": agent.connect_timeout_s,
        "max_concurrency": agent.max_concurrency,
        "max_connections": agent.max_connections,
        "retries": agent.retries,
        "retry_on": agent.retry_on,
        "stream_idle_timeout_s": agent.stream_idle_timeout_s,
        "stream_max_s": agent.stream_max_s,
        "breaker_fail_max": agent.breaker_fail_max,
        "breaker_reset_s": agent.breaker_reset_s,
        "fallback_reply": agent.fallback_reply,
        "routing_names-TOTAL_FORMS": len(names) + 1,
        "routing_names-INITIAL_FORMS": len(names),
        "routing_names-MIN_NUM_FORMS": 0,
        "routing_names-MAX_NUM_FORMS": 1000,
        "balance": agent.balance,
        "affinity": agent.affinity,
        "endpoints-TOTAL_FORMS": 0,
        "endpoints-INITIAL_FORMS": 0,
        "endpoints-MIN_NUM_FORMS": 0,
        "endpoints-MAX_NUM_FORMS": 1000,
    }
    for index, routing_name in enumerate(names):
        data[f"routing_names-{index}-id"] = routing_name.pk
        data[f"routing_names-{index}-agent"] = agent.pk
        data[f"routing_names-{index}-name"] = routing_name.name
    data[f"routing_names-{len(names)}-agent"] = agent.pk
    data[f"routing_names-{len(names)}-name"] = ""
    data.update(credentials_form(agent))
    data.update(failover_form(agent))
    data.update(overrides)
    return {k: v for k, v in data.items() if v != "" or k.endswith("-name")}


def failover_form(agent: Agent, *targets: Agent) -> dict[str, Any]:
    """The failover agents inline as posted: the agent's steps, or `targets` in that order."""
    steps = list(agent.failover_steps.all())
    data: dict[str, Any] = {
        "failover_steps-TOTAL_FORMS": len(targets) if targets else len(steps),
        "failover_steps-INITIAL_FORMS": 0 if targets else len(steps),
        "failover_steps-MIN_NUM_FORMS": 0,
        "failover_steps-MAX_NUM_FORMS": 1000,
    }
    rows = (
        [(None, t.pk, i) for i, t in enumerate(targets)]
        if targets
        else [(step.pk, step.target_id, step.position) for step in steps]
    )
    for index, (pk, target, position) in enumerate(rows):
        if pk is not None:
            data[f"failover_steps-{index}-id"] = pk
        data[f"failover_steps-{index}-agent"] = agent.pk
        data[f"failover_steps-{index}-target"] = target
        data[f"failover_steps-{index}-position"] = position
    return data


def credentials_form(agent: Agent) -> dict[str, Any]:
    """The TLS fields and the headers inline as the browser posts them: secrets blank (kept)."""
    headers = list(agent.headers.order_by("name"))
    data: dict[str, Any] = {
        "tls_verify": "on" if agent.tls_verify else "",
        "tls_ca_bundle": agent.tls_ca_bundle,
        "tls_client_cert": agent.tls_client_cert,
        "proxy_url": agent.proxy_url,
        "headers-TOTAL_FORMS": len(headers),
        "headers-INITIAL_FORMS": len(headers),
        "headers-MIN_NUM_FORMS": 0,
        "headers-MAX_NUM_FORMS": 1000,
    }
    for index, header in enumerate(headers):
        data[f"headers-{index}-id"] = header.pk
        data[f"headers-{index}-agent"] = agent.pk
        data[f"headers-{index}-name"] = header.name
    return data


def version() -> int:
    return ConfigVersion.objects.get(name="agents").version


def test_list_shows_the_agents_with_their_routing_names(admin: Client) -> None:
    page = admin.get(CHANGELIST).content.decode()
    for text in ("cita", "http://127.0.0.1:8002/api/chat", "cita, citas", "citas y ventas"):
        assert text in page
    assert 'name="form-0-enabled"' in page  # enabled is editable in the list


def test_search_and_filter(admin: Client) -> None:
    page = admin.get(CHANGELIST, {"q": "reservas"}).content.decode()
    assert "8003" in page and "8002" not in page
    Agent.objects.filter(key="venta").update(enabled=False)
    page = admin.get(CHANGELIST, {"enabled__exact": "0"}).content.decode()
    assert "8001" in page and "8002" not in page


def test_disable_and_enable_actions_bump_the_config_version(admin: Client) -> None:
    ids = list(Agent.objects.filter(key__in=["cita", "venta"]).values_list("pk", flat=True))
    before = version()
    response = admin.post(
        CHANGELIST, {"action": "disable_selected", "_selected_action": ids}, follow=True
    )
    assert "Disabled 2 agent(s)." in response.content.decode()
    assert set(Agent.objects.filter(enabled=False).values_list("key", flat=True)) == {
        "cita",
        "venta",
    }
    assert version() > before
    admin.post(CHANGELIST, {"action": "enable_selected", "_selected_action": ids})
    assert not Agent.objects.filter(enabled=False).exists()


def test_a_routing_name_added_inline_is_stored_normalised(admin: Client) -> None:
    cita = Agent.objects.get(key="cita")
    response = admin.post(
        f"{CHANGELIST}{cita.pk}/change/", agent_form(cita, **{"routing_names-2-name": "  Agenda "})
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert RoutingName.objects.get(name="agenda").agent == cita


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"timeout_s": "500"}, "Must be at most 120 s; lower it to 120 or less."),
        ({"timeout_s": "0.1"}, "Must be at least 0.5 s; raise it to 0.5 or more."),
        ({"max_concurrency": "0"}, "Must be at least 1; raise it to 1 or more."),
        ({"max_concurrency": "5000"}, "Must be at most 1000; lower it to 1000 or less."),
        ({"url": "ftp://h/x"}, "Enter an http:// or https:// URL"),
        ({"connect_timeout_s": "30", "timeout_s": "10"}, "Must not exceed the timeout"),
        ({"routing_names-2-name": " VENTAS "}, "already exists"),
        ({"stream_idle_timeout_s": "0.1"}, "Must be at least 0.5 s; raise it to 0.5 or more."),
        ({"stream_max_s": "7200"}, "Must be at most 3600 s; lower it to 3600 or less."),
    ],
)
def test_bad_values_get_messages_that_say_how_to_fix_them(
    admin: Client, overrides: dict[str, str], message: str
) -> None:
    cita = Agent.objects.get(key="cita")
    before = version()
    response = admin.post(f"{CHANGELIST}{cita.pk}/change/", agent_form(cita, **overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert version() == before


def test_the_stream_limits_are_edited_on_the_agents_page(admin: Client) -> None:
    cita = Agent.objects.get(key="cita")
    page = admin.get(f"{CHANGELIST}{cita.pk}/change/").content.decode()
    assert "Streaming" in page
    assert 'name="stream_idle_timeout_s" value="30.0"' in page
    assert 'name="stream_max_s" value="300.0"' in page
    before = version()
    form = agent_form(cita, stream_idle_timeout_s="12", stream_max_s="90")
    response = admin.post(f"{CHANGELIST}{cita.pk}/change/", form)
    assert response.status_code == 302
    cita.refresh_from_db()
    assert (cita.stream_idle_timeout_s, cita.stream_max_s) == (12, 90)
    assert version() == before + 1


def test_the_same_routing_name_twice_in_one_form_is_an_error_not_a_crash(admin: Client) -> None:
    cita = Agent.objects.get(key="cita")
    form = agent_form(cita, **{"routing_names-2-name": "Agenda", "routing_names-3-name": "agenda "})
    form["routing_names-TOTAL_FORMS"] = 4
    form["routing_names-3-agent"] = cita.pk
    response = admin.post(f"{CHANGELIST}{cita.pk}/change/", form)
    assert response.status_code == 200
    assert "Please correct the duplicate data for name" in response.content.decode()
    assert not RoutingName.objects.filter(name="agenda").exists()


def test_a_second_fallback_route_is_refused_with_a_clear_message(admin: Client) -> None:
    Agent.objects.filter(key="venta").update(is_fallback_route=True)
    cita = Agent.objects.get(key="cita")
    response = admin.post(
        f"{CHANGELIST}{cita.pk}/change/", agent_form(cita, is_fallback_route="on")
    )
    assert response.status_code == 200
    assert "Another agent is already the fallback route" in response.content.decode()


def test_failover_agents_are_edited_inline_in_order(admin: Client) -> None:
    cita, venta, reserva = (Agent.objects.get(key=k) for k in ("cita", "venta", "reserva"))
    page = admin.get(f"{CHANGELIST}{cita.pk}/change/").content.decode()
    assert "Failover agents (tried in order when this one fails)" in page
    before = version()
    form = agent_form(cita)
    form.update(failover_form(cita, reserva, venta))
    response = admin.post(f"{CHANGELIST}{cita.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert [s.target.key for s in cita.failover_steps.all()] == ["reserva", "venta"]
    assert version() > before


@pytest.mark.parametrize(
    ("targets", "message"),
    [(("cita",), "An agent cannot fail over to itself."),
     (("venta", "venta"), "Please correct the duplicate data for target.")],
)  # fmt: skip
def test_a_failover_list_naming_itself_or_an_agent_twice_is_refused(
    admin: Client, targets: tuple[str, ...], message: str
) -> None:
    cita = Agent.objects.get(key="cita")
    before = version()
    form = agent_form(cita)
    form.update(failover_form(cita, *(Agent.objects.get(key=k) for k in targets)))
    response = admin.post(f"{CHANGELIST}{cita.pk}/change/", form)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not cita.failover_steps.exists()
    assert version() == before


def test_admin_login_locks_out_password_guessing(client: Client, django_user_model) -> None:
    from django.core.cache import cache

    cache.clear()
    django_user_model.objects.create_superuser("root", "root@example.com", "right-password-42")
    login = "/admin/login/"
    for _ in range(5):
        response = client.post(login, {"username": "root", "password": "wrong"})
        assert response.status_code == 200  # the form again, with its error
    locked = client.post(login, {"username": "ROOT ", "password": "right-password-42"})
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) == 900
    assert "_auth_user_id" not in client.session

    cache.clear()  # the lockout expired
    ok = client.post(login, {"username": "root", "password": "right-password-42"})
    assert ok.status_code == 302


def test_export_and_import_from_the_admin(admin: Client) -> None:
    import json

    from django.core.files.uploadedfile import SimpleUploadedFile

    exported = admin.get("/admin/agents/agent/export/")
    assert exported["Content-Disposition"] == 'attachment; filename="agents.json"'
    rows = json.loads(exported.content)
    assert [r["key"] for r in rows] == ["cita", "citas_ventas", "reserva", "venta"]

    rows[0]["timeout_s"] = 9
    upload = json.dumps(rows).encode()
    preview = admin.post(
        "/admin/agents/agent/import/",
        {"file": SimpleUploadedFile("a.json", upload), "dry_run": "on"},
    ).content.decode()
    assert "Dry run: nothing was written" in preview and "changed cita: timeout_s" in preview
    assert Agent.objects.get(key="cita").timeout_s == 25

    done = admin.post("/admin/agents/agent/import/", {"file": SimpleUploadedFile("a.json", upload)})
    assert "changed cita: timeout_s" in done.content.decode()
    assert Agent.objects.get(key="cita").timeout_s == 9
    history = admin.get(f"{CHANGELIST}{Agent.objects.get(key='cita').pk}/history/")
    assert "Changed Timeout (s)." in history.content.decode()

    rows[1]["url"] = "nope"
    bad = admin.post(
        "/admin/agents/agent/import/",
        {"file": SimpleUploadedFile("a.json", json.dumps(rows).encode())},
    ).content.decode()
    assert "Nothing was imported" in bad and "row 2 (citas_ventas): url:" in bad


def test_actions_appear_in_the_change_history(admin: Client) -> None:
    cita = Agent.objects.get(key="cita")
    admin.post(CHANGELIST, {"action": "disable_selected", "_selected_action": [cita.pk]})
    history = admin.get(f"{CHANGELIST}{cita.pk}/history/").content.decode()
    assert "Changed Enabled." in history
    assert "admin" in history  # who


def test_live_columns_show_what_the_workers_published(admin: Client) -> None:
    from django.utils import timezone

    from agents.models import HealthResult, WorkerStatus

    now = timezone.now()
    cita = {"breaker": "open", "inflight": 3, "limit": 25, "requests_5m": 40, "fallbacks_5m": 10}
    WorkerStatus.objects.create(worker_id="a:1", updated_at=now, state={"agents": {"cita": cita}})
    WorkerStatus.objects.create(
        worker_id="b:2", updated_at=now, state={"agents": {"cita": {**cita, "breaker": "closed"}}}
    )
    WorkerStatus.objects.create(  # a dead worker: not counted
        worker_id="c:3",
        updated_at=now - timezone.timedelta(minutes=5),
        state={"agents": {"cita": {**cita, "inflight": 99}}},
    )
    HealthResult.objects.create(
        agent=Agent.objects.get(key="cita"), status="ok", latency_ms=12.4, checked_at=now
    )
    page = admin.get(CHANGELIST).content.decode()
    assert "closed ×1, open ×1" in page
    assert "6 / 50" in page
    assert "80 req, 25% fallback" in page
    assert "ok, 12 ms at" in page
    assert "never checked" in page  # the other agents


def test_reset_breaker_action_reaches_the_workers_through_the_database(admin: Client) -> None:
    from agents.models import BreakerReset

    cita = Agent.objects.get(key="cita")
    before = ConfigVersion.objects.get_or_create(name="commands")[0].version
    response = admin.post(
        CHANGELIST, {"action": "reset_breaker", "_selected_action": [cita.pk]}, follow=True
    )
    assert "Breaker reset sent for cita" in response.content.decode()
    assert list(BreakerReset.objects.values_list("agent_key", flat=True)) == ["cita"]
    assert ConfigVersion.objects.get(name="commands").version > before


def test_an_invalid_row_in_the_editable_list_is_an_error_not_a_crash(admin: Client) -> None:
    Agent.objects.filter(key="venta").update(timeout_s=1, connect_timeout_s=5)
    agents = list(Agent.objects.order_by("key"))
    form: dict[str, Any] = {
        "form-TOTAL_FORMS": len(agents),
        "form-INITIAL_FORMS": len(agents),
        "_save": "Save",
    }
    for index, agent in enumerate(agents):
        form[f"form-{index}-id"] = agent.pk
        form[f"form-{index}-enabled"] = "on"
    response = admin.post(CHANGELIST, form)
    assert response.status_code == 200
    assert "Must not exceed the timeout" in response.content.decode()
