"""The embedded SQLite database under concurrent writers: the admin and the registry poller."""

import threading

import pytest
from django.db import connection, transaction

pytestmark = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="SQLite's locking only; PostgreSQL has row locks"
)


def test_a_transaction_that_reads_then_writes_waits_out_another_writer(transactional_db):
    """Deleting an agent reads its related rows, then deletes; the poller may commit its
    activity write in between. With SQLite's default deferred transactions the late write fails
    at once ("database is locked"); the gateway's transactions take the write lock up front."""
    from agents.models import ConfigVersion

    read_done = threading.Event()
    other_committed = threading.Event()
    errors: list[BaseException] = []

    def reader_then_writer() -> None:
        try:
            with transaction.atomic():
                list(ConfigVersion.objects.all())
                read_done.set()
                other_committed.wait(timeout=0.5)  # set at once only if the other did not wait
                ConfigVersion.objects.create(name="first")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    def other_writer() -> None:
        try:
            read_done.wait(timeout=5)
            ConfigVersion.objects.create(name="second")
            other_committed.set()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=reader_then_writer), threading.Thread(target=other_writer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert errors == []
    assert set(ConfigVersion.objects.values_list("name", flat=True)) >= {"first", "second"}
