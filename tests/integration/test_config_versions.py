"""Configuration as versioned data (issue 19 items 1-4): every kind of change is exactly one
version with the right diff; rollback across a create, an edit and a delete restores the earlier
state exactly; export -> import --prune into an empty database -> export is byte-identical; keys
restored from a backup authenticate; the history pages read well."""

import html
import importlib
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.core.management import CommandError, call_command
from django.db import transaction
from django.test import Client

from access.models import ApiKey
from access.services import api_key_create
from agents.models import (
    Agent,
    AgentEndpoint,
    FailoverStep,
    RoutingName,
    Tenant,
    TenantAgentLimit,
    TenantRoute,
)
from tests.conftest import in_thread
from tests.integration.test_admin import agent_form
from tests.integration.test_security import post
from versions.models import Version
from versions.recording import version_record

# Committed writes: versions are recorded per transaction.
pytestmark = pytest.mark.django_db(transaction=True)

AGENTS = "/admin/agents/agent/"
TENANTS = "/admin/agents/tenant/"
KEYS = "/admin/access/apikey/"
VERSIONS = "/admin/versions/version/"


@pytest.fixture(autouse=True)
def seeded(transactional_db: Any) -> None:
    """The four agents a fresh install seeds (migration agents/0002), then a version of them."""
    seed = importlib.import_module("agents.migrations.0002_seed_default_agents")
    seed.seed(django_apps, None)
    version_record(author="test", source="shell")


@pytest.fixture
def admin(admin_client: Client) -> Client:
    return admin_client


def export() -> str:
    out = io.StringIO()
    call_command("export_config", stdout=out)
    return out.getvalue()


def import_config(path: Path, *flags: str) -> str:
    out = io.StringIO()
    call_command("import_config", str(path), *flags, stdout=out)
    return out.getvalue()


def latest() -> Version:
    version = Version.objects.order_by("-id").first()
    assert version is not None
    return version


def new_versions(since: int) -> list[Version]:
    return list(Version.objects.filter(pk__gt=since).order_by("id"))


def change_of(version: Version, kind: str, label: str) -> dict[str, Any]:
    """The one change of `kind` `label` in a version, with its fields by name."""
    found = [c for c in version.changes if c["kind"] == kind and c["label"] == label]
    assert len(found) == 1, version.changes
    change = found[0]
    return {"op": change["op"], **{f["field"]: (f["before"], f["after"]) for f in change["fields"]}}


def populate() -> list[str]:
    """A configuration with every kind of row: tenants with routes and agent limits, keys with
    agents, empresas and an expiry, agents failing over to each other, and an agent pool."""
    cita, venta = Agent.objects.get(key="cita"), Agent.objects.get(key="venta")
    Agent.objects.filter(key="venta").update(url="", balance="round_robin", affinity="session")
    AgentEndpoint.objects.create(agent=venta, url="http://10.0.0.1:8000/chat", weight=3)
    AgentEndpoint.objects.create(
        agent=venta, url="http://10.0.0.2:8000/chat", enabled=False, position=1
    )
    acme = Tenant.objects.create(id_empresa=7, name="Acme", max_concurrency=5)
    TenantRoute.objects.create(tenant=acme, name="Ventas", agent=cita)
    TenantAgentLimit.objects.create(tenant=acme, agent=venta, max_concurrency=2)
    FailoverStep.objects.create(agent=cita, target=venta)
    FailoverStep.objects.create(agent=venta, target=cita)
    Tenant.objects.create(id_empresa=8, name="Beta", enabled=False, requests_per_minute=60)
    key, plain = api_key_create(name="n8n", empresas=[7, 8], requests_per_minute=600)
    key.allowed_agents.set([cita, venta])
    _, other = api_key_create(name="ops", expires_at="2031-01-02T03:04:05+00:00")
    return [plain, other]


class TestBackupAndRestore:
    def test_export_import_prune_into_an_empty_database_export_is_byte_identical(self, tmp_path):
        plain_keys = populate()
        backup = tmp_path / "backup.json"
        backup.write_text(export())
        document = json.loads(backup.read_text())
        assert [t["id_empresa"] for t in document["tenants"]] == [7, 8]
        assert document["tenants"][0]["routes"] == {"ventas": "cita"}
        assert document["tenants"][0]["agent_limits"] == {"venta": 2}
        failover = {a["key"]: a.get("failover") for a in document["agents"]}
        assert failover == {"cita": ["venta"], "citas_ventas": None, "reserva": None,
                            "venta": ["cita"]}  # fmt: skip
        keys = {k["name"]: k for k in document["api_keys"]}
        assert keys["n8n"]["agents"] == ["cita", "venta"] and keys["n8n"]["empresas"] == [7, 8]
        assert keys["ops"]["expires_at"] == "2031-01-02T03:04:05+00:00"
        assert len(keys["n8n"]["digest"]) == 64
        assert not any(plain in backup.read_text() for plain in plain_keys)

        with transaction.atomic():  # an empty database
            ApiKey.objects.all().delete()
            Tenant.objects.all().delete()
            Agent.objects.all().delete()
        assert json.loads(export()) == {"agents": [], "tenants": [], "api_keys": []}

        printed = import_config(backup, "--prune")
        assert "created agent cita" in printed and "created tenant Acme" in printed
        assert export() == backup.read_text()
        assert (
            import_config(backup, "--prune").splitlines()[-1] == "0 created, 0 changed, 0 deleted"
        )

    def test_prune_deletes_what_the_document_leaves_out_and_dry_run_writes_nothing(self, tmp_path):
        populate()
        document = json.loads(export())
        document["agents"] = [a for a in document["agents"] if a["key"] != "reserva"]
        document["tenants"] = [t for t in document["tenants"] if t["id_empresa"] != 8]
        document["agents"][0]["timeout_s"] = 12.5
        path = tmp_path / "next.json"
        path.write_text(json.dumps(document))
        before, versions = export(), latest().pk

        dry = import_config(path, "--prune", "--dry-run")
        assert "deleted agent reserva" in dry and "deleted tenant Beta" in dry
        assert "changed agent cita: timeout_s 25.0 -> 12.5" in dry
        assert dry.splitlines()[-1].endswith("(dry run: nothing written)")
        assert export() == before and new_versions(versions) == []

        assert "deleted agent" not in import_config(path)  # without --prune, nothing goes
        assert Agent.objects.filter(key="reserva").exists()
        import_config(path, "--prune")
        assert not Agent.objects.filter(key="reserva").exists()
        assert not Tenant.objects.filter(id_empresa=8).exists()
        assert json.loads(export()) == document

    def test_a_document_with_errors_writes_nothing_and_lists_every_error(self, tmp_path):
        populate()
        document = json.loads(export())
        document["agents"][0]["timeout_s"] = -1
        document["tenants"][0]["routes"] = {"ventas": "no-such-agent"}
        document["api_keys"][0]["digest"] = "not-hex"
        document["api_keys"][1]["expires_at"] = "tomorrow"
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(document))
        before, versions = export(), latest().pk
        err = io.StringIO()
        with pytest.raises(CommandError, match="nothing was imported"):
            call_command("import_config", str(path), "--prune", stdout=io.StringIO(), stderr=err)
        lines = err.getvalue()
        assert "row 1 (cita): timeout_s" in lines
        assert "route 'ventas': no agent 'no-such-agent'" in lines
        assert "'digest' is required" in lines and "ISO 8601" in lines
        assert export() == before and new_versions(versions) == []

    async def test_keys_restored_from_a_backup_authenticate(self, gateway, make_agent, fault_agent,
                                                            tmp_path):  # fmt: skip
        make_agent("cita", url=fault_agent.url("/ok"))
        plain = in_thread(lambda: api_key_create(name="n8n")[1])
        assert (await post(gateway, plain)).status_code == 200
        backup = tmp_path / "backup.json"
        backup.write_text(in_thread(export))

        in_thread(lambda: ApiKey.objects.all().delete())
        api_key_create_later = in_thread(lambda: api_key_create(name="other")[1])
        assert await status_within(gateway, plain, 401)

        in_thread(lambda: import_config(backup, "--prune"))
        assert await status_within(gateway, plain, 200)
        assert await status_within(gateway, api_key_create_later, 401)  # pruned


async def status_within(gateway, key: str, expected: int, seconds: float = 3.0) -> bool:
    """True once a chat request with `key` gets `expected` (workers follow within a poll)."""
    import asyncio
    import time

    deadline = time.monotonic() + seconds
    while (await post(gateway, key)).status_code != expected:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


class TestOneVersionPerChange:
    def test_an_admin_save_with_inline_rows_is_one_version_by_the_user(self, admin):
        start = latest().pk
        cita = Agent.objects.get(key="cita")
        form = agent_form(cita, timeout_s=9)
        form["routing_names-TOTAL_FORMS"] = 4  # two new routing names in the same save
        form["routing_names-2-agent"] = form["routing_names-3-agent"] = cita.pk
        form["routing_names-2-name"], form["routing_names-3-name"] = "agenda", "turnos"
        assert admin.post(f"{AGENTS}{cita.pk}/change/", form).status_code == 302
        (version,) = new_versions(start)
        assert (version.author, version.source) == ("admin", "admin")
        change = change_of(version, "agent", "cita")
        assert change["op"] == "changed" and change["timeout_s"] == (25.0, 9.0)
        assert change["modalidades"] == (["cita", "citas"], ["agenda", "cita", "citas", "turnos"])

    def test_a_tenant_added_with_routes_and_limits_is_one_version(self, admin):
        start = latest().pk
        cita = Agent.objects.get(key="cita")
        form = {
            "id_empresa": 7, "name": "Acme", "enabled": "on",
            "routes-TOTAL_FORMS": 2, "routes-INITIAL_FORMS": 0,
            "routes-0-name": "ventas", "routes-0-agent": cita.pk,
            "routes-1-name": "soporte", "routes-1-agent": cita.pk,
            "agent_limits-TOTAL_FORMS": 1, "agent_limits-INITIAL_FORMS": 0,
            "agent_limits-0-agent": cita.pk, "agent_limits-0-max_concurrency": 3,
        }  # fmt: skip
        response = admin.post(f"{TENANTS}add/", form)
        assert response.status_code == 302, response.content.decode()[:3000]
        (version,) = new_versions(start)
        change = change_of(version, "tenant", "Acme")
        assert change["op"] == "created"
        assert change["routes"] == (None, {"soporte": "cita", "ventas": "cita"})
        assert change["agent_limits"] == (None, {"cita": 3})

    def test_a_list_action_over_several_rows_is_one_version(self, admin):
        start = latest().pk
        ids = list(Agent.objects.filter(key__in=["cita", "venta"]).values_list("pk", flat=True))
        admin.post(AGENTS, {"action": "disable_selected", "_selected_action": ids})
        (version,) = new_versions(start)
        assert change_of(version, "agent", "cita")["enabled"] == (True, False)
        assert change_of(version, "agent", "venta")["enabled"] == (True, False)

        for name in ("a", "b"):
            api_key_create(name=name)
        start = latest().pk
        keys = list(ApiKey.objects.values_list("pk", flat=True))
        admin.post(KEYS, {"action": "revoke_selected", "_selected_action": keys})
        (version,) = new_versions(start)
        assert [c["op"] for c in version.changes] == ["changed", "changed"]

    def test_a_key_created_in_the_admin_is_a_version_with_its_digest_never_the_key(self, admin):
        start = latest().pk
        page = admin.post(f"{KEYS}add/", {"name": "n8n", "enabled": "on", "empresas": "[]"})
        assert page.status_code == 200  # the page that shows the key once
        plain = re.search(r'value="([^"]+)" id="api-key-value"', page.content.decode())
        assert plain is not None
        (version,) = new_versions(start)
        change = change_of(version, "api_key", "n8n")
        assert change["digest"] == (None, ApiKey.objects.get(name="n8n").key_hash)
        recorded = json.dumps([version.changes, version.document])
        assert html.unescape(plain.group(1)) not in recorded

    def test_a_key_rotation_is_one_version_the_new_key_and_the_old_ones_expiry(self, admin):
        old, _ = api_key_create(name="n8n")
        start = latest().pk
        admin.post(f"{KEYS}{old.pk}/rotate/", {"grace_s": 3600, "name": "n8n-r2"})
        (version,) = new_versions(start)
        assert version.author == "admin"
        assert change_of(version, "api_key", "n8n-r2")["op"] == "created"
        before, after = change_of(version, "api_key", "n8n")["expires_at"]
        assert before is None and after == ApiKey.objects.get(pk=old.pk).expires_at.isoformat()

    def test_deleting_an_agent_from_the_admin_is_one_version(self, admin):
        start = latest().pk
        reserva = Agent.objects.get(key="reserva")
        admin.post(f"{AGENTS}{reserva.pk}/delete/", {"post": "yes"})
        (version,) = new_versions(start)
        assert change_of(version, "agent", "reserva")["op"] == "deleted"

    def test_shell_writes_are_versions_one_per_transaction(self):
        start = latest().pk
        agent = Agent.objects.create(key="nuevo", name="Nuevo", url="http://127.0.0.1:9/x")
        (created,) = new_versions(start)
        assert (created.author, created.source) == ("shell", "shell")
        RoutingName.objects.create(agent=agent, name="nuevo")
        agent.delete()  # the agent and its routing name in one transaction
        *_, deleted = new_versions(start)
        assert len(new_versions(start)) == 3
        assert change_of(deleted, "agent", "nuevo")["op"] == "deleted"
        with transaction.atomic():
            for key in ("cita", "venta"):
                Agent.objects.filter(key=key).update(timeout_s=11)
                Agent.objects.get(key=key).save()  # a signal per save
        assert len(new_versions(start)) == 4
        assert {c["label"] for c in latest().changes} == {"cita", "venta"}

    def test_imports_are_one_version_named_after_their_command(self, tmp_path):
        rows = json.loads(export())["agents"]
        for row in rows:
            row["retries"] = 0
        path = tmp_path / "agents.json"
        path.write_text(json.dumps(rows))
        start = latest().pk
        call_command("import_agents", str(path), stdout=io.StringIO())
        (version,) = new_versions(start)
        assert version.author == "manage.py import_agents" and len(version.changes) == 4

    def test_what_changes_nothing_records_nothing(self, admin):
        start = latest().pk
        cita = Agent.objects.get(key="cita")
        admin.post(f"{AGENTS}{cita.pk}/change/", agent_form(cita))  # saved unchanged
        admin.post(AGENTS, {"action": "reset_breaker", "_selected_action": [cita.pk]})
        assert new_versions(start) == []


class TestRollback:
    def test_rollback_across_a_create_an_edit_and_a_delete_restores_the_state(self, admin):
        populate()
        target, state = latest(), export()
        Agent.objects.create(key="nuevo", name="Nuevo", url="http://127.0.0.1:9/x")
        Agent.objects.filter(key="cita").update(timeout_s=3)
        Agent.objects.get(key="cita").save()
        Tenant.objects.get(id_empresa=7).delete()
        ApiKey.objects.get(name="ops").delete()
        assert export() != state

        confirm = admin.get(f"{VERSIONS}{target.pk}/restore/").content.decode()
        for text in ("deleted", "nuevo", "created", "Acme", "timeout_s", "ops"):
            assert text in confirm
        assert Agent.objects.filter(key="nuevo").exists()  # the confirmation changes nothing

        response = admin.post(f"{VERSIONS}{target.pk}/restore/", follow=True)
        assert f"Restored version #{target.pk}" in response.content.decode()
        assert export() == state
        version = latest()
        assert (version.source, version.author) == ("rollback", "admin")
        assert version.summary.startswith(f"restored version #{target.pk}: ")
        assert change_of(version, "agent", "nuevo")["op"] == "deleted"

    def test_restore_needs_the_permission_to_change_versions(self, client, django_user_model):
        from django.contrib.auth.models import Permission

        viewer = django_user_model.objects.create_user("viewer", password="pw-viewer-1",
                                                        is_staff=True)  # fmt: skip
        viewer.user_permissions.add(Permission.objects.get(codename="view_version"))
        client.force_login(viewer)
        target = latest()
        Agent.objects.create(key="nuevo", name="Nuevo", url="http://127.0.0.1:9/x")
        assert client.get(f"{VERSIONS}{target.pk}/change/").status_code == 200
        assert client.post(f"{VERSIONS}{target.pk}/restore/").status_code == 403
        assert Agent.objects.filter(key="nuevo").exists()


class TestHistoryPages:
    def test_the_list_filters_by_object_and_a_version_shows_its_diff(self, admin):
        cita = Agent.objects.get(key="cita")
        admin.post(f"{AGENTS}{cita.pk}/change/", agent_form(cita, timeout_s=9))
        Agent.objects.filter(key="venta").update(retries=0)
        Agent.objects.get(key="venta").save()

        history = admin.get(f"{AGENTS}{cita.pk}/history/").content.decode()
        versions = history[history.index('id="object-versions"') :]
        assert "changed agent cita (timeout_s)" in versions
        assert "changed agent venta" not in versions
        assert "?object=agent%3Acita" in versions

        listed = admin.get(VERSIONS, {"object": "agent:cita"}).content.decode()
        assert "changed agent cita (timeout_s)" in listed and "changed agent venta" not in listed
        assert "changed agent venta" in admin.get(VERSIONS).content.decode()

        version = Version.objects.filter(touched__ident="cita").latest("id")
        detail = admin.get(f"{VERSIONS}{version.pk}/change/").content.decode()
        assert 'id="version-diff"' in detail and "<code>timeout_s</code>" in detail
        assert "<code>25.0</code>" in detail and "<code>9.0</code>" in detail
        assert "By <strong>admin</strong>" in detail

    def test_versions_are_read_only(self, admin):
        version = latest()
        assert admin.get(f"{VERSIONS}add/").status_code == 403
        assert admin.post(f"{VERSIONS}{version.pk}/delete/", {"post": "yes"}).status_code == 403
        assert Version.objects.filter(pk=version.pk).exists()
