"""One version per configuration change, written in the transaction of the change.

Every configuration write ends in `agents.services.config_version_bump`, which sends
`config_written` inside the writing transaction. Two ways to turn those into versions:

- Inside `recording(author=..., source=...)` (the admin's saves and actions, imports, rollback),
  writes only mark the block dirty; when the block ends (still inside the caller's transaction),
  one version records the whole change, inline rows included, however many rows it touched.
- Anywhere else (the shell, code), each write records at once; further writes in the same
  transaction update that version, so one transaction is still one version.

A version stores the whole configuration after the change and its diff from the version before;
a change that leaves the configuration as it was records nothing.
"""

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.apps import AppConfig
from django.db import transaction
from django.db.models.signals import post_migrate

from agents.selectors import AGENTS_VERSION, API_KEYS_VERSION
from agents.services import config_written
from versions.diff import ObjectChange, config_diff, diff_summary
from versions.document import config_export
from versions.models import Source, Version, VersionObject

_RECORDED = frozenset({AGENTS_VERSION, API_KEYS_VERSION})
EMPTY_DOCUMENT: dict[str, list[Any]] = {"agents": [], "tenants": [], "api_keys": []}

# Who is changing the configuration: (author, source), set by `changed_by` and `recording`.
_changer: ContextVar[tuple[str, str] | None] = ContextVar("config_changer", default=None)


@dataclass
class _Pending:
    """The version the current transaction recorded outside a `recording` block."""

    atomic: object  # the transaction's outermost Atomic: this transaction, not a later one
    version_id: int
    token: str
    base: dict[str, Any]


class _State(threading.local):  # per thread, as Django's connections are
    depth = 0
    dirty = False
    note = ""
    pending: _Pending | None = None


_state = _State()


@contextmanager
def changed_by(*, author: str, source: str) -> Iterator[None]:
    """Name who makes the changes inside (versions recorded at each write)."""
    token = _changer.set((author, source))
    try:
        yield
    finally:
        _changer.reset(token)


@contextmanager
def recording(*, author: str, source: str, note: str = "") -> Iterator[None]:
    """The changes inside are one version, written as the block ends; open it inside the
    transaction that makes the changes. `note` heads the summary (e.g. the version restored)."""
    _state.depth += 1
    if _state.depth == 1:
        _state.dirty, _state.note = False, note
    try:
        with changed_by(author=author, source=source):
            yield
            if _state.depth == 1 and _state.dirty:
                version_record(author=author, source=source, note=_state.note)
    finally:
        _state.depth -= 1
        if _state.depth == 0:
            _state.dirty = False


def version_record(*, author: str, source: str, note: str = "") -> Version | None:
    """Record the configuration as it is now, with its diff from the latest version; nothing
    when it did not change."""
    connection = transaction.get_connection()
    outermost = connection.atomic_blocks[0] if connection.in_atomic_block else None
    with transaction.atomic():
        pending = _state.pending
        if pending is not None and outermost is not None and pending.atomic is outermost:
            version = _pending_update(pending, note)
            if version is not None:
                return version
        latest = Version.objects.select_for_update().order_by("-id").first()
        base = latest.document if latest is not None else EMPTY_DOCUMENT
        document = config_export()
        changes = config_diff(base, document)
        if not changes:
            return None
        version = Version.objects.create(
            author=author[:150], source=source, summary=_summary(note, changes),
            document=document, changes=changes, token=secrets.token_hex(16),
        )  # fmt: skip
        _objects_write(version, changes)
    if outermost is not None and not _state.depth:
        pending = _Pending(outermost, version.pk, version.token, base)
        _state.pending = pending
        transaction.on_commit(lambda: _pending_clear(pending))
    return version


def version_baseline(**_: Any) -> None:
    """After `migrate`: record the configuration as found, once, so the first change has a
    version to differ from."""
    if not Version.objects.exists():
        Version.objects.create(
            author="manage.py migrate", source=Source.BASELINE, summary="baseline",
            document=config_export(), changes=[], token=secrets.token_hex(16),
        )  # fmt: skip


def connect(app: AppConfig) -> None:
    config_written.connect(_written, dispatch_uid="versions-config-written")
    post_migrate.connect(version_baseline, sender=app, dispatch_uid="versions-baseline")


def _written(*, name: str, **_: Any) -> None:
    if name not in _RECORDED:
        return
    if _state.depth:
        _state.dirty = True
        return
    author, source = _changer.get() or ("shell", Source.SHELL)
    version_record(author=author, source=source)


def _pending_update(pending: _Pending, note: str) -> Version | None:
    """Fold this write into the version the transaction already recorded (None: that version
    is gone, as after a rolled-back transaction, so record a new one)."""
    version = Version.objects.filter(pk=pending.version_id, token=pending.token).first()
    if version is None:
        _state.pending = None
        return None
    version.document = config_export()
    version.changes = config_diff(pending.base, version.document)
    version.summary = _summary(note, version.changes)
    version.touched.all().delete()
    if not version.changes:  # the transaction put everything back
        version.delete()
        return None
    version.save(update_fields=["document", "changes", "summary"])
    _objects_write(version, version.changes)
    return version


def _pending_clear(pending: _Pending) -> None:
    if _state.pending is pending:
        _state.pending = None


def _summary(note: str, changes: list[ObjectChange]) -> str:
    summary = diff_summary(changes)
    return (f"{note}: {summary}" if note else summary)[:500]


def _objects_write(version: Version, changes: list[ObjectChange]) -> None:
    VersionObject.objects.bulk_create(
        VersionObject(version=version, kind=c["kind"], ident=c["ident"][:100],
                      label=c["label"][:150], op=c["op"])
        for c in changes
    )  # fmt: skip
