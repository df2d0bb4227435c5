"""API key lifecycle: an expired key is refused like a wrong one, on time and without a reload;
rotation in the admin shows the new key once and keeps the old one for the grace chosen, never
longer than an expiry it already had; the list reads "never" and "expired"."""

import asyncio
import html
import re
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from chat import messages
from tests.conftest import in_thread
from tests.integration.test_security import create_key, post

ROTATE = "/admin/access/apikey/{pk}/rotate/"
HOUR = 3600


def key_row(name: str):
    from access.models import ApiKey

    return in_thread(lambda: ApiKey.objects.get(name=name))


async def status_within(gateway, key: str, expected: int, *, seconds: float = 2.0) -> int:
    """Post until the answer's status is `expected` (the key store follows the database within
    a poll); returns the last status."""
    deadline = time.monotonic() + seconds
    while (status := (await post(gateway, key)).status_code) != expected:
        if time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.02)
    return status


def shown_key(page: str) -> str:
    """The plain key on the page shown once after "Save" or "Rotate"."""
    match = re.search(r'value="([^"]+)" id="api-key-value"', page)
    assert match, page[:2000]
    return html.unescape(match.group(1))


def list_rows(page: str) -> dict[str, dict[str, str]]:
    """The changelist's rows: key name -> {column: cell HTML}."""
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", page, re.S):
        cells = dict(re.findall(r'class="field-(\w+)[^"]*">(.*?)</t[dh]>', row, re.S))
        if "name" in cells:
            rows[re.sub(r"<[^>]+>", "", cells["name"])] = cells
    return rows


class TestExpiry:
    async def test_an_expired_key_gets_the_contracts_401_and_an_unexpired_one_200(
        self, gateway, make_agent, fault_agent
    ):
        make_agent("cita", url=fault_agent.url("/ok"))
        now = timezone.now()
        expired = create_key("expired", expires_at=now - timedelta(seconds=1))
        later = create_key("later", expires_at=now + timedelta(hours=1))
        never = create_key("never")

        refused = await post(gateway, expired)
        assert refused.status_code == 401
        wrong = await post(gateway, "gk_not-a-key")
        assert refused.json() == wrong.json() == {"detail": messages.UNAUTHORIZED}
        assert refused.headers.get("www-authenticate") == wrong.headers.get("www-authenticate")
        assert (await post(gateway, later)).status_code == 200
        assert (await post(gateway, never)).status_code == 200
        assert fault_agent.attempts() == 2

    async def test_a_key_is_refused_once_its_expiry_passes_without_any_edit(
        self, gateway, make_agent, fault_agent
    ):
        from access.keys import key_store

        make_agent("cita", url=fault_agent.url("/ok"))
        expires = timezone.now() + timedelta(seconds=1.5)
        plain = create_key("short-lived", expires_at=expires)
        assert (await post(gateway, plain)).status_code == 200
        loaded_version = key_store.version

        deadline = expires.timestamp() + 1.0
        while (await post(gateway, plain)).status_code == 200:
            assert time.time() < deadline, "the key still works 1 s after its expiry"
            await asyncio.sleep(0.02)
        refused_at = time.time()
        assert refused_at >= expires.timestamp(), "refused before its expiry"
        assert key_store.version == loaded_version, "a reload, not the clock, refused it"
        assert (await post(gateway, plain)).status_code == 401

    async def test_expired_keys_still_keep_auth_on(self, gateway, make_agent, fault_agent):
        from agents.models import ConfigVersion
        from agents.selectors import API_KEYS_SEEN

        make_agent("cita", url=fault_agent.url("/ok"))
        create_key("gone", expires_at=timezone.now() - timedelta(days=1))
        # Forget that keys were ever saved: only the expired row itself can keep auth on.
        in_thread(lambda: ConfigVersion.objects.filter(name=API_KEYS_SEEN).delete())
        assert (await post(gateway)).status_code == 401
        assert fault_agent.attempts() == 0


class TestRotation:
    async def test_rotation_shows_the_new_key_once_and_the_old_one_lasts_the_grace(
        self, gateway, admin_client: Client, make_agent, fault_agent, monkeypatch
    ):
        from access.keys import key_digest, key_store
        from access.models import ApiKey

        cita = make_agent("cita", url=fault_agent.url("/ok"))
        make_agent("venta", url=fault_agent.url("/ok"))
        old_plain = create_key("n8n", agents=(cita,), empresas=[1, 2], requests_per_minute=500)
        old = key_row("n8n")
        assert (await post(gateway, old_plain)).status_code == 200

        url = ROTATE.format(pk=old.pk)
        form = in_thread(lambda: admin_client.get(url))
        assert form.status_code == 200
        assert 'value="n8n-r2"' in form.content.decode()  # the new name, derived
        rotated_at = timezone.now()
        page = in_thread(lambda: admin_client.post(url, {"grace_s": HOUR, "name": "n8n-r2"}))
        assert page.status_code == 200, page.content.decode()[:2000]
        assert "no-store" in page["Cache-Control"]
        new_plain = shown_key(page.content.decode())
        assert new_plain.startswith("gk_") and new_plain != old_plain

        new = key_row("n8n-r2")
        old = key_row("n8n")
        assert new.key_hash == key_digest(new_plain) and new_plain not in (new.prefix, new.key_hash)
        assert (new.empresas, new.requests_per_minute, new.expires_at) == ([1, 2], 500, None)
        assert in_thread(lambda: [a.key for a in new.allowed_agents.all()]) == ["cita"]
        grace_ends = old.expires_at.timestamp()
        assert rotated_at.timestamp() + HOUR <= grace_ends <= time.time() + HOUR
        for other in ("/admin/access/apikey/", f"/admin/access/apikey/{new.pk}/change/"):
            assert new_plain not in in_thread(lambda u=other: admin_client.get(u)).content.decode()

        # During the grace both keys work, with the old key's agents and empresas.
        assert await status_within(gateway, new_plain, 200) == 200
        assert (await post(gateway, old_plain)).status_code == 200
        assert (await post(gateway, new_plain, config={"modalidad": "venta"})).status_code == 403
        assert (await post(gateway, new_plain, id_empresa=3)).status_code == 403

        # The workers judge the expiry by the wall clock: move theirs to either side of the grace.
        monkeypatch.setattr(key_store, "clock", lambda: grace_ends - 1)
        assert (await post(gateway, old_plain)).status_code == 200
        monkeypatch.setattr(key_store, "clock", lambda: grace_ends)
        assert (await post(gateway, old_plain)).status_code == 401
        assert (await post(gateway, new_plain)).status_code == 200
        assert in_thread(lambda: ApiKey.objects.count()) == 2

    async def test_rotation_with_no_grace_stops_the_old_key_at_once(
        self, gateway, admin_client: Client, make_agent, fault_agent
    ):
        make_agent("cita", url=fault_agent.url("/ok"))
        old_plain = create_key("n8n-r2")
        assert (await post(gateway, old_plain)).status_code == 200
        url = ROTATE.format(pk=key_row("n8n-r2").pk)
        assert 'value="n8n-r3"' in in_thread(lambda: admin_client.get(url)).content.decode()
        page = in_thread(lambda: admin_client.post(url, {"grace_s": 0, "name": "n8n-r3"}))
        new_plain = shown_key(page.content.decode())
        assert await status_within(gateway, new_plain, 200) == 200
        assert await status_within(gateway, old_plain, 401) == 401


@pytest.mark.django_db
class TestRotationRules:
    def test_rotation_never_extends_an_earlier_expiry(self, admin_client: Client) -> None:
        from access.models import ApiKey
        from access.services import api_key_create

        soon = timezone.now() + timedelta(minutes=10)
        old, _ = api_key_create(name="expiring", expires_at=soon)
        response = admin_client.post(
            ROTATE.format(pk=old.pk), {"grace_s": 7 * 24 * HOUR, "name": "expiring-r2"}
        )
        assert response.status_code == 200 and shown_key(response.content.decode())
        old.refresh_from_db()
        assert old.expires_at == soon
        assert ApiKey.objects.get(name="expiring-r2").expires_at is None

    def test_a_revoked_key_is_not_rotated(self, admin_client: Client) -> None:
        from access.models import ApiKey
        from access.services import ROTATE_REVOKED, api_key_create

        old, _ = api_key_create(name="revoked", enabled=False)
        page = admin_client.post(ROTATE.format(pk=old.pk), {"grace_s": HOUR, "name": "revoked-r2"})
        assert page.status_code == 200
        assert ROTATE_REVOKED in page.content.decode()
        assert list(ApiKey.objects.values_list("name", "expires_at")) == [("revoked", None)]

    def test_a_taken_name_is_an_error_and_nothing_changes(self, admin_client: Client) -> None:
        from access.models import ApiKey
        from access.services import api_key_create

        old, _ = api_key_create(name="a")
        api_key_create(name="b")
        page = admin_client.post(ROTATE.format(pk=old.pk), {"grace_s": HOUR, "name": "b"})
        assert page.status_code == 200
        assert "A key with this name exists" in page.content.decode()
        assert ApiKey.objects.count() == 2 and ApiKey.objects.get(name="a").expires_at is None

    def test_the_key_page_and_the_list_action_lead_to_rotation(self, admin_client: Client) -> None:
        from access.services import api_key_create

        key, _ = api_key_create(name="linked")
        other, _ = api_key_create(name="other")
        page = admin_client.get(f"/admin/access/apikey/{key.pk}/change/").content.decode()
        assert f'href="{ROTATE.format(pk=key.pk)}"' in page
        action = {"action": "rotate_selected", "_selected_action": [key.pk]}
        response = admin_client.post("/admin/access/apikey/", action)
        assert response.status_code == 302 and response["Location"] == ROTATE.format(pk=key.pk)
        both = admin_client.post(
            "/admin/access/apikey/", {**action, "_selected_action": [key.pk, other.pk]}, follow=True
        )
        assert "Select one key to rotate." in both.content.decode()


@pytest.mark.django_db
def test_the_list_shows_expiry_and_last_use_readably(admin_client: Client) -> None:
    from access.services import api_key_create

    now = timezone.now()
    api_key_create(name="fresh")
    api_key_create(name="old", expires_at=now - timedelta(hours=1))
    api_key_create(name="used", expires_at=now + timedelta(days=30), last_used_at=now)

    rows = list_rows(admin_client.get("/admin/access/apikey/").content.decode())
    assert set(rows) == {"fresh", "old", "used"}
    assert rows["fresh"]["expires_column"] == rows["fresh"]["last_used_column"] == "never"
    assert "expired" in rows["old"]["expires_column"]
    assert "expired" not in rows["used"]["expires_column"]
    assert rows["used"]["last_used_column"] not in ("never", "-", "")


def test_the_old_admin_addresses_of_keys_lead_to_the_new_ones(admin_client: Client) -> None:
    """The keys' admin pages moved from agents/apikey/ to access/apikey/ with the model (issue
    15): a bookmark to the old address lands on the same page, its query kept."""
    for old, new in (
        ("/admin/agents/apikey/", "/admin/access/apikey/"),
        ("/admin/agents/apikey/?q=n8n&o=1", "/admin/access/apikey/?q=n8n&o=1"),
        ("/admin/agents/apikey/7/change/", "/admin/access/apikey/7/change/"),
        ("/admin/agents/apikey/add/", "/admin/access/apikey/add/"),
    ):
        response = admin_client.get(old)
        assert (response.status_code, response["Location"]) == (301, new)
    assert admin_client.get("/admin/access/apikey/?q=n8n").status_code == 200
    assert admin_client.get("/admin/agents/agent/").status_code == 200  # the rest of the app
