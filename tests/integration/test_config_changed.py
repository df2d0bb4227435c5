"""`config_changed` runs once per transaction and version name after commit, however many rows
the transaction wrote (an admin save with inline rows bumps once per row), and never for the
writes of a savepoint that rolled back."""

from typing import Any

import pytest
from django.db import transaction
from django.test import Client

from agents.models import Agent
from agents.selectors import API_KEYS_VERSION
from agents.services import config_version_bump
from tests.integration.test_admin import CHANGELIST
from tests.integration.test_agent_pools_admin import with_endpoints

pytestmark = pytest.mark.django_db


def names(callbacks: list[Any]) -> list[str]:
    """The version names the after-commit calls will announce."""
    return [call.name for call in callbacks if hasattr(call, "name")]


def test_an_admin_save_with_inline_rows_tells_the_registry_once(
    admin_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    cita = Agent.objects.get(key="cita")
    rows = [(f"http://10.0.0.{n}:8000/chat", 1) for n in (1, 2, 3, 4)]
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(
            f"{CHANGELIST}{cita.pk}/change/", with_endpoints(cita, rows, url="")
        )
    assert response.status_code == 302
    assert cita.endpoints.count() == 4
    assert names(callbacks) == ["agents"]


# One scenario per test: a test's transaction never commits, so what one scenario left pending
# would still be pending in the next.


def test_one_call_per_name(django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        config_version_bump()
        config_version_bump(name=API_KEYS_VERSION)
        config_version_bump()
    assert sorted(names(callbacks)) == ["agents", "api_keys"]


def test_a_call_pending_in_a_rolled_back_savepoint_goes_and_the_next_bump_registers_its_own(
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        with pytest.raises(RuntimeError), transaction.atomic():
            config_version_bump()
            raise RuntimeError
        config_version_bump()
    assert names(callbacks) == ["agents"]


def test_a_call_pending_outside_a_rolled_back_savepoint_survives_it(
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        config_version_bump()
        with pytest.raises(RuntimeError), transaction.atomic():
            config_version_bump()
            raise RuntimeError
    assert names(callbacks) == ["agents"]
