"""Failover agents in import/export (`failover`: the keys in order, only when there are any),
their validation against the agents after the import, and the versions' diff."""

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from agents.models import Agent, FailoverStep
from agents.transfer import ImportRejected, agents_export, agents_import

pytestmark = pytest.mark.django_db


def failover_of(key: str) -> list[str]:
    return [s.target.key for s in FailoverStep.objects.filter(agent__key=key).order_by("position")]


def rows() -> list[dict[str, Any]]:
    return agents_export()


def row(document: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return next(r for r in document if r["key"] == key)


def import_config(tmp_path: Path, document: Any, *flags: str) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    out = StringIO()
    call_command("import_config", str(path), *flags, stdout=out)
    return out.getvalue()


def test_rows_without_failover_agents_keep_the_contracts_shape() -> None:
    assert all("failover" not in r for r in rows())


def test_a_list_is_imported_in_order_exported_the_same_and_reimported_unchanged() -> None:
    document = rows()
    row(document, "cita")["failover"] = ["reserva", "venta"]
    report = agents_import(document)
    assert report.changed == {"cita": ["failover"]}
    assert failover_of("cita") == ["reserva", "venta"]
    exported = rows()
    assert row(exported, "cita")["failover"] == ["reserva", "venta"]
    assert exported == document
    again = agents_import(exported)
    assert again.changed == {} and len(again.unchanged) == 4


def test_a_list_may_name_an_agent_the_same_import_creates() -> None:
    document = rows()
    row(document, "cita")["failover"] = ["respaldo"]
    document.append({"key": "respaldo", "name": "Respaldo", "url": "http://127.0.0.1:9/x"})
    report = agents_import(document)
    assert report.created == ["respaldo"]
    assert failover_of("cita") == ["respaldo"]


def test_errors_are_listed_and_nothing_is_written() -> None:
    document = rows()
    row(document, "cita")["failover"] = ["venta", "nadie"]
    row(document, "venta")["failover"] = ["venta"]
    row(document, "reserva")["failover"] = ["cita", "cita"]
    row(document, "citas_ventas")["failover"] = "cita"
    row(document, "cita")["timeout_s"] = 9
    with pytest.raises(ImportRejected) as raised:
        agents_import(document)
    assert sorted(raised.value.errors) == [
        "row 1 (cita): failover: unknown agent(s) nadie",
        "row 2 (citas_ventas): failover: must be a list of agent keys",
        "row 3 (reserva): failover: names cita more than once",
        "row 4 (venta): failover: an agent cannot fail over to itself",
    ]
    assert not FailoverStep.objects.exists()
    assert Agent.objects.get(key="cita").timeout_s != 9


def test_a_list_naming_an_agent_the_import_prunes_is_an_error() -> None:
    document = [r for r in rows() if r["key"] != "venta"]
    row(document, "cita")["failover"] = ["venta"]
    with pytest.raises(ImportRejected) as raised:
        agents_import(document, prune=True)
    assert raised.value.errors == ["row 1 (cita): failover: unknown agent(s) venta"]


def test_the_agents_command_reports_the_errors(tmp_path: Path) -> None:
    document = rows()
    row(document, "cita")["failover"] = ["cita"]
    path = tmp_path / "agents.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    err = StringIO()
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_agents", str(path), stdout=StringIO(), stderr=err)
    assert "row 1 (cita): failover: an agent cannot fail over to itself" in err.getvalue()


def test_a_row_without_failover_leaves_the_list_unless_the_import_prunes(tmp_path: Path) -> None:
    document = rows()
    row(document, "cita")["failover"] = ["venta"]
    agents_import(document)
    plain = rows()
    del row(plain, "cita")["failover"]
    assert agents_import(plain).changed == {}
    assert failover_of("cita") == ["venta"]
    printed = import_config(tmp_path, {"agents": plain}, "--prune")
    assert 'changed agent cita: failover ["venta"] -> null' in printed
    assert failover_of("cita") == []


def test_the_versions_diff_shows_a_failover_change(tmp_path: Path) -> None:
    document = rows()
    row(document, "cita")["failover"] = ["venta", "reserva"]
    printed = import_config(tmp_path, {"agents": document})
    assert 'changed agent cita: failover null -> ["venta", "reserva"]' in printed
    row(document, "cita")["failover"] = ["reserva", "venta"]
    printed = import_config(tmp_path, {"agents": document})
    assert 'changed agent cita: failover ["venta", "reserva"] -> ["reserva", "venta"]' in printed
