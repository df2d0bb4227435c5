"""The difference between two configuration documents (`versions.document.config_export`), per
object and field, as JSON-ready data: what a version records and what an import prints.

Objects are matched by identity (an agent by `key`, a tenant by `id_empresa`, an API key by its
`digest`), so a rename shows as a changed field. The document holds no secrets in the clear: API
keys are there as their SHA-256 digests, which cannot authenticate, and agents' secrets (header
values, TLS client keys) encrypted (`encrypted:...`); a diff shows those as "(secret)" or
"(secret changed)", never the token.
"""

import json
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from agents.secrets import CHANGED_MARK, EXPORT_PREFIX, MARK

# kind -> (document section, identity field, label field)
KINDS: dict[str, tuple[str, str, str]] = {
    "agent": ("agents", "key", "key"),
    "tenant": ("tenants", "id_empresa", "name"),
    "api_key": ("api_keys", "digest", "name"),
}


class FieldChange(TypedDict):
    field: str
    before: Any
    after: Any


class ObjectChange(TypedDict):
    kind: str  # agent, tenant, api_key
    ident: str  # the identity, as text
    label: str  # what a person calls it
    op: str  # created, changed, deleted
    fields: list[FieldChange]


def config_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[ObjectChange]:
    """Every object created, changed or deleted from `before` to `after`, in document order."""
    changes: list[ObjectChange] = []
    for kind, (section, ident_field, label_field) in KINDS.items():
        old = _by_identity(before.get(section, ()), ident_field)
        new = _by_identity(after.get(section, ()), ident_field)
        for ident in sorted(old.keys() | new.keys(), key=_sort_key):
            row_before, row_after = old.get(ident), new.get(ident)
            label = str((row_after or row_before or {}).get(label_field, ident))
            if row_before is None:
                op, names = "created", list(row_after or {})
            elif row_after is None:
                op, names = "deleted", list(row_before)
            else:
                op = "changed"
                names = [n for n in _field_names(row_before, row_after)
                         if row_before.get(n) != row_after.get(n)]  # fmt: skip
                if not names:
                    continue
            fields: list[FieldChange] = [
                _field_change(n, (row_before or {}).get(n), (row_after or {}).get(n), op)
                for n in names
            ]
            changes.append(
                {"kind": kind, "ident": ident, "label": label, "op": op, "fields": fields}
            )
    return changes


def _field_change(name: str, before: Any, after: Any, op: str) -> FieldChange:
    """A field's change with any encrypted secret in it masked: a secret that changed shows as
    CHANGED_MARK (in an object, per key), one that did not as MARK."""
    changed = CHANGED_MARK if op == "changed" else MARK
    if isinstance(before, dict) or isinstance(after, dict):
        old = before if isinstance(before, dict) else {}
        if isinstance(after, dict):
            after = {k: changed if _secret(v) and old.get(k) != v else _masked(v)
                     for k, v in after.items()}  # fmt: skip
        before = _masked(before)
    elif _secret(before) or _secret(after):
        before = _masked(before)
        after = changed if _secret(after) else after
    return {"field": name, "before": before, "after": after}


def _secret(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(EXPORT_PREFIX)


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    return MARK if _secret(value) else value


def diff_lines(changes: Iterable[ObjectChange]) -> list[str]:
    """One line per object, for a terminal: `changed agent cita: timeout_s 30.0 -> 10.0`."""
    lines = []
    for change in changes:
        head = f"{change['op']} {change['kind']} {change['label']}"
        if change["op"] == "changed":
            parts = [f"{f['field']} {value_text(f['before'])} -> {value_text(f['after'])}"
                     for f in change["fields"]]  # fmt: skip
            head += ": " + "; ".join(parts)
        lines.append(head)
    return lines


def diff_summary(changes: list[ObjectChange], *, limit: int = 3) -> str:
    """A short headline: `changed agent cita (timeout_s); created tenant 7 Acme`."""
    parts = []
    for change in changes[:limit]:
        part = f"{change['op']} {change['kind']} {change['label']}"
        if change["op"] == "changed":
            part += f" ({', '.join(f['field'] for f in change['fields'])})"
        parts.append(part)
    if len(changes) > limit:
        parts.append(f"{len(changes) - limit} more")
    return "; ".join(parts) or "no change"


def _by_identity(rows: Iterable[Mapping[str, Any]], ident_field: str) -> dict[str, Mapping]:
    return {str(row[ident_field]): row for row in rows}


def _sort_key(ident: str) -> tuple[int, str]:
    """Numeric identities (id_empresa) in numeric order, others alphabetically."""
    return (int(ident), "") if ident.isdigit() else (0, ident)


def _field_names(*rows: Mapping[str, Any]) -> list[str]:
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    return list(names)


def value_text(value: Any) -> str:
    """A field's value as JSON text, as a person reads it in a diff."""
    return json.dumps(value, ensure_ascii=False)
