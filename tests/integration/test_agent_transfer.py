"""import_agents / export_agents: round trip, idempotence, all-or-nothing validation, Go env."""

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from agents.models import Agent, AgentEndpoint, RoutingName

pytestmark = pytest.mark.django_db


def run(*args: Any, **options: Any) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def import_rows(tmp_path: Path, rows: Any, *flags: str) -> str:
    path = tmp_path / "agents.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return run("import_agents", str(path), *flags)


def rejected(tmp_path: Path, rows: Any) -> str:
    path = tmp_path / "agents.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    err = StringIO()
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_agents", str(path), stdout=StringIO(), stderr=err)
    return err.getvalue()


def snapshot() -> str:
    return run("export_agents")


def test_export_lists_every_agent_with_its_routing_names() -> None:
    exported = json.loads(snapshot())
    assert [row["key"] for row in exported] == ["cita", "citas_ventas", "reserva", "venta"]
    cita = exported[0]
    assert cita["url"] == "http://127.0.0.1:8002/api/chat"
    assert cita["modalidades"] == ["cita", "citas"]
    for field in ("enabled", "timeout_s", "max_concurrency", "breaker_fail_max",
                  "breaker_reset_s", "retries", "payload_format"):  # fmt: skip
        assert field in cita


def test_round_trip_is_idempotent(tmp_path: Path) -> None:
    before = snapshot()
    output = import_rows(tmp_path, json.loads(before))
    assert output.splitlines()[-1] == "0 created, 0 changed, 4 unchanged"
    assert snapshot() == before


def test_import_creates_and_changes_and_reports(tmp_path: Path) -> None:
    output = import_rows(
        tmp_path,
        [
            {
                "key": "soporte",
                "name": "Soporte",
                "url": "http://10.0.0.9:9000/chat",
                "modalidades": ["  Soporte ", "AYUDA"],
                "payload_format": "flat",
            },
            {"key": "cita", "timeout_s": 12, "modalidades": ["cita", "citas", "agenda"]},
        ],
    )
    assert output.splitlines() == [
        "created soporte",
        "changed cita: timeout_s, modalidades",
        "1 created, 1 changed, 0 unchanged",
    ]
    soporte = Agent.objects.get(key="soporte")
    assert soporte.payload_format == "flat"
    assert sorted(soporte.routing_names.values_list("name", flat=True)) == ["ayuda", "soporte"]
    assert Agent.objects.get(key="cita").timeout_s == 12
    assert RoutingName.objects.get(name="agenda").agent.key == "cita"
    again = import_rows(tmp_path, json.loads((tmp_path / "agents.json").read_text()))
    assert again.splitlines()[-1] == "0 created, 0 changed, 2 unchanged"


def test_a_routing_name_can_move_between_agents_in_one_import(tmp_path: Path) -> None:
    import_rows(
        tmp_path,
        [
            {"key": "cita", "modalidades": ["cita"]},
            {"key": "venta", "modalidades": ["venta", "ventas", "citas"]},
        ],
    )
    assert RoutingName.objects.get(name="citas").agent.key == "venta"


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ({"key": "x1", "name": "X", "url": "ftp://host/chat"}, "row 2 (x1): url: Enter an http://"),
        ({"key": "cita", "timeout_s": 500}, "row 2 (cita): timeout_s: Must be at most 120 s"),
        ({"key": "cita", "max_concurrency": 0}, "max_concurrency: Must be at least 1"),
        ({"key": "cita", "colour": "red"}, "row 2 (cita): unknown field(s) colour"),
        ({"key": "Bad Key!", "name": "B", "url": "http://h/c"}, "key: Enter a valid"),
        ({"key": "cita", "modalidades": ["ventas"]}, "'ventas' would belong to both"),
        ({"key": "cita", "modalidades": "cita"}, "'modalidades' must be a list of strings"),
        ({"key": "cita", "payload_format": "xml"}, "payload_format: Value 'xml' is not a valid"),
        ({"name": "no key"}, "row 2: 'key' is required"),
    ],
)
def test_one_bad_row_rejects_the_whole_import(tmp_path: Path, bad_row: Any, message: str) -> None:
    before = snapshot()
    good_row = {"key": "nuevo", "name": "Nuevo", "url": "http://10.0.0.1/chat"}
    errors = rejected(tmp_path, [good_row, bad_row])
    assert message in errors
    assert snapshot() == before
    assert not Agent.objects.filter(key="nuevo").exists()


def test_two_fallback_routes_are_rejected(tmp_path: Path) -> None:
    errors = rejected(
        tmp_path,
        [{"key": "cita", "is_fallback_route": True}, {"key": "venta", "is_fallback_route": True}],
    )
    assert "at most one agent can be the fallback route, not cita, venta" in errors


def test_not_a_list_and_not_json_are_clear_errors(tmp_path: Path) -> None:
    assert "must be a JSON list" in rejected(tmp_path, {"key": "cita"})
    path = tmp_path / "broken.json"
    path.write_text("[{", encoding="utf-8")
    with pytest.raises(CommandError, match="is not valid JSON"):
        run("import_agents", str(path))
    with pytest.raises(CommandError, match="cannot read"):
        run("import_agents", str(tmp_path / "missing.json"))


def test_dry_run_reports_and_writes_nothing(tmp_path: Path) -> None:
    before = snapshot()
    output = import_rows(tmp_path, [{"key": "cita", "enabled": False}], "--dry-run")
    assert output.splitlines() == [
        "changed cita: enabled",
        "0 created, 1 changed, 0 unchanged (dry run: nothing written)",
    ]
    assert snapshot() == before


def test_from_env_reads_the_go_gateway_variables(settings: Any) -> None:
    settings.AGENT_TIMEOUT = 12.0
    settings.GO_GATEWAY_AGENT_ENV = {
        "AGENT_CITAS_VENTAS_URL": "http://agents.internal:8004/api/chat",
        "AGENT_VENTA_ENABLED": "false",
        "AGENT_SOPORTE_URL": "http://agents.internal:8009/api/chat",
    }
    output = run("import_agents", "--from-env")
    assert output.splitlines() == [
        "created soporte",
        "changed citas_ventas: url, timeout_s",
        "changed venta: enabled",
        "1 created, 2 changed, 0 unchanged",
    ]
    citas_ventas = Agent.objects.get(key="citas_ventas")
    assert (citas_ventas.url, citas_ventas.timeout_s) == (
        "http://agents.internal:8004/api/chat",
        12,
    )
    assert sorted(citas_ventas.routing_names.values_list("name", flat=True)) == [
        "citas y ventas",
        "citas_ventas",
    ]
    assert Agent.objects.get(key="venta").enabled is False
    soporte = Agent.objects.get(key="soporte")
    assert soporte.enabled is True
    assert list(soporte.routing_names.values_list("name", flat=True)) == ["soporte"]
    assert run("import_agents", "--from-env").splitlines()[-1] == (
        "0 created, 0 changed, 3 unchanged"
    )


def test_from_env_rejects_a_bad_boolean_and_an_empty_environment(settings: Any) -> None:
    settings.GO_GATEWAY_AGENT_ENV = {"AGENT_VENTA_ENABLED": "maybe"}
    with pytest.raises(CommandError, match="nothing was imported"):
        run("import_agents", "--from-env")
    settings.GO_GATEWAY_AGENT_ENV = {}
    with pytest.raises(CommandError, match="no AGENT_<KEY>_URL"):
        run("import_agents", "--from-env")


# -- the connect timeout rule (contract §5 "Importing agents") and retry_on ---------------------


def effective_connect_timeout(key: str) -> float:
    from runtime.specs import AgentSpec

    return AgentSpec.from_agent(Agent.objects.get(key=key), []).connect_timeout_s


def test_a_timeout_below_the_default_connect_timeout_imports_and_caps_it(tmp_path: Path) -> None:
    assert Agent.objects.get(key="cita").connect_timeout_s == 5  # stored, above 2 s
    output = import_rows(
        tmp_path,
        [
            {"key": "rapido", "name": "Rápido", "url": "http://10.0.0.7/chat", "timeout_s": 2},
            {"key": "cita", "timeout_s": 2},
        ],
    )
    assert output.splitlines() == [
        "created rapido",
        "changed cita: timeout_s, connect_timeout_s",
        "1 created, 1 changed, 0 unchanged",
    ]
    for key in ("rapido", "cita"):
        assert Agent.objects.get(key=key).connect_timeout_s == 2
        assert effective_connect_timeout(key) == 2
    # Raising the timeout again leaves the capped connect timeout where the cap put it.
    import_rows(tmp_path, [{"key": "cita", "timeout_s": 10}])
    assert Agent.objects.get(key="cita").connect_timeout_s == 2


@pytest.mark.parametrize("connect_timeout_s", [3, 5])  # 5: the value already stored
def test_an_explicit_connect_timeout_above_the_timeout_is_an_error(
    tmp_path: Path, connect_timeout_s: float
) -> None:
    before = snapshot()
    errors = rejected(
        tmp_path, [{"key": "cita", "timeout_s": 2, "connect_timeout_s": connect_timeout_s}]
    )
    assert "row 1 (cita): connect_timeout_s: Must not exceed the timeout" in errors
    assert snapshot() == before
    # Equal to the timeout is fine.
    import_rows(tmp_path, [{"key": "cita", "timeout_s": 2, "connect_timeout_s": 2}])
    assert effective_connect_timeout("cita") == 2


def test_export_writes_the_effective_connect_timeout_and_always_reimports(tmp_path: Path) -> None:
    # A row saved without validation (ORM, an older version) may hold a connect timeout above
    # its timeout: the call uses the timeout, and so does the export.
    Agent.objects.filter(key="venta").update(timeout_s=1, connect_timeout_s=5)
    assert effective_connect_timeout("venta") == 1
    import_rows(tmp_path, [{"key": "cita", "timeout_s": 2}])
    exported = snapshot()
    rows = {row["key"]: row for row in json.loads(exported)}
    assert (rows["venta"]["timeout_s"], rows["venta"]["connect_timeout_s"]) == (1, 1)
    assert (rows["cita"]["timeout_s"], rows["cita"]["connect_timeout_s"]) == (2, 2)
    output = import_rows(tmp_path, json.loads(exported))
    assert output.splitlines()[-1] == "0 created, 0 changed, 4 unchanged"
    assert snapshot() == exported


def test_retry_on_is_exported_and_imported(tmp_path: Path) -> None:
    assert {row["retry_on"] for row in json.loads(snapshot())} == {"connect_or_reset"}
    output = import_rows(tmp_path, [{"key": "cita", "retry_on": "connect"}])
    assert output.splitlines()[0] == "changed cita: retry_on"
    assert Agent.objects.get(key="cita").retry_on == "connect"
    assert json.loads(snapshot())[0]["retry_on"] == "connect"
    errors = rejected(tmp_path, [{"key": "cita", "retry_on": "always"}])
    assert "row 1 (cita): retry_on: Value 'always' is not a valid choice" in errors


def test_stream_limits_are_exported_and_imported(tmp_path: Path) -> None:
    exported = json.loads(snapshot())
    assert {(r["stream_idle_timeout_s"], r["stream_max_s"]) for r in exported} == {(30.0, 300.0)}
    output = import_rows(
        tmp_path, [{"key": "cita", "stream_idle_timeout_s": 5, "stream_max_s": 60}]
    )
    assert output.splitlines()[0] == "changed cita: stream_idle_timeout_s, stream_max_s"
    cita = json.loads(snapshot())[0]
    assert (cita["stream_idle_timeout_s"], cita["stream_max_s"]) == (5, 60)
    errors = rejected(tmp_path, [{"key": "cita", "stream_max_s": 0}])
    assert "row 1 (cita): stream_max_s: Must be at least 1 s" in errors


POOL = [
    {"url": "http://10.0.0.1:8000/chat", "weight": 3, "enabled": True},
    {"url": "http://10.0.0.2:8000/chat", "weight": 1, "enabled": False},
]


def test_a_pool_is_exported_with_its_endpoints_and_round_trips(tmp_path: Path) -> None:
    output = import_rows(
        tmp_path,
        [
            {
                "key": "cita",
                "url": "",
                "endpoints": POOL,
                "balance": "round_robin",
                "affinity": "session",
            }
        ],
    )
    assert output.splitlines()[0] == "changed cita: url, balance, affinity, endpoints"
    exported = {row["key"]: row for row in json.loads(snapshot())}
    cita = exported["cita"]
    assert cita["endpoints"] == POOL and "url" not in cita  # a pool gives endpoints instead
    assert (cita["balance"], cita["affinity"]) == ("round_robin", "session")
    assert "endpoints" not in exported["venta"]  # only a url: one endpoint, no list
    assert exported["venta"]["balance"] == "least_inflight"
    before = snapshot()
    output = import_rows(tmp_path, json.loads(before))
    assert output.splitlines()[-1] == "0 created, 0 changed, 4 unchanged"
    assert snapshot() == before


def test_a_row_with_only_url_or_only_endpoints_replaces_the_other(tmp_path: Path) -> None:
    """Contract §5: a pooled row gives `endpoints` instead of `url`; a row with only `url` is
    one endpoint. Moving an agent from one to the other leaves nothing of the former behind."""
    import_rows(tmp_path, [{"key": "cita", "endpoints": POOL}])
    row = next(r for r in json.loads(snapshot()) if r["key"] == "cita")
    assert "url" not in row and row["endpoints"] == POOL
    assert Agent.objects.get(key="cita").url == ""
    import_rows(tmp_path, [{"key": "cita", "url": "http://10.0.0.9:8000/chat"}])
    row = next(r for r in json.loads(snapshot()) if r["key"] == "cita")
    assert row["url"] == "http://10.0.0.9:8000/chat" and "endpoints" not in row
    assert not AgentEndpoint.objects.filter(agent__key="cita").exists()


def test_endpoint_defaults_and_a_new_pool_without_url(tmp_path: Path) -> None:
    import_rows(tmp_path, [{"key": "pool", "name": "Pool", "endpoints": [{"url": POOL[0]["url"]}]}])
    row = next(r for r in json.loads(snapshot()) if r["key"] == "pool")
    assert row["endpoints"] == [{"url": POOL[0]["url"], "weight": 1, "enabled": True}]


def test_every_endpoint_error_is_listed_and_nothing_is_written(tmp_path: Path) -> None:
    before = snapshot()
    errors = rejected(
        tmp_path,
        [
            {
                "key": "cita",
                "endpoints": [
                    {"url": "ftp://x", "weight": 1},
                    {"url": "http://a.test/chat", "weight": 0},
                    {"url": "http://a.test/chat", "weight": 101},
                    {"url": "http://b.test/chat", "weight": "2"},
                    {"url": "http://c.test/chat", "port": 1},
                    {"weight": 2},
                ],
            },
            {"key": "venta", "url": "", "endpoints": []},
            {"key": "nuevo", "name": "Nuevo"},
        ],
    )
    for line in (
        "row 1 (cita): endpoint 1: url:",
        "row 1 (cita): endpoint 2: weight: Must be at least 1",
        "row 1 (cita): endpoint 3: weight:",
        "row 1 (cita): endpoint 4: weight: must be an integer from 1 to 100",
        "row 1 (cita): endpoint 5: unknown field(s) port",
        "row 1 (cita): endpoint 6: url: is required",
        "row 2 (venta): give 'url' or at least one entry in 'endpoints'",
        "row 3 (nuevo): give 'url' or at least one entry in 'endpoints'",
    ):
        assert line in errors, errors
    assert snapshot() == before


def test_endpoint_urls_are_unique_per_agent(tmp_path: Path) -> None:
    twice = [{"url": "http://a.test/chat"}, {"url": "http://a.test/chat", "weight": 2}]
    errors = rejected(tmp_path, [{"key": "cita", "endpoints": twice}])
    assert "row 1 (cita): endpoint 2: url: http://a.test/chat appears more than once" in errors
