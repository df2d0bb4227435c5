"""The diff between two configuration documents: objects matched by identity, fields compared
one by one, read as a person would."""

from versions.diff import config_diff, diff_lines, diff_summary

BEFORE = {
    "agents": [{"key": "cita", "timeout_s": 25.0, "modalidades": ["cita"]},
               {"key": "venta", "timeout_s": 25.0, "modalidades": ["venta"]}],
    "tenants": [{"id_empresa": 10, "name": "Diez"}, {"id_empresa": 9, "name": "Nueve"}],
    "api_keys": [{"name": "n8n", "digest": "d1", "enabled": True}],
}  # fmt: skip


def test_created_changed_and_deleted_objects_with_their_fields():
    after = {
        "agents": [{"key": "cita", "timeout_s": 9.0, "modalidades": ["cita", "agenda"]}],
        "tenants": [{"id_empresa": 9, "name": "Nueve"}, {"id_empresa": 10, "name": "Diez"},
                    {"id_empresa": 11, "name": "Once"}],
        "api_keys": [{"name": "n8n-prod", "digest": "d1", "enabled": True}],
    }  # fmt: skip
    changes = config_diff(BEFORE, after)
    assert [(c["op"], c["kind"], c["label"]) for c in changes] == [
        ("changed", "agent", "cita"),
        ("deleted", "agent", "venta"),
        ("created", "tenant", "Once"),  # 9 and 10 only moved in the list: no change
        ("changed", "api_key", "n8n-prod"),  # matched by digest: a rename, not a new key
    ]
    assert changes[0]["fields"] == [
        {"field": "timeout_s", "before": 25.0, "after": 9.0},
        {"field": "modalidades", "before": ["cita"], "after": ["cita", "agenda"]},
    ]
    assert changes[1]["fields"][0] == {"field": "key", "before": "venta", "after": None}
    assert diff_lines(changes)[0] == (
        'changed agent cita: timeout_s 25.0 -> 9.0; modalidades ["cita"] -> ["cita", "agenda"]'
    )
    assert diff_lines(changes)[3] == 'changed api_key n8n-prod: name "n8n" -> "n8n-prod"'


def test_identities_sort_numerically_and_the_summary_stays_short():
    after = {**BEFORE, "tenants": [{"id_empresa": n, "name": str(n)} for n in (100, 9, 20, 10)]}
    changes = config_diff(BEFORE, after)
    assert [c["ident"] for c in changes] == ["9", "10", "20", "100"]
    assert diff_summary(changes) == (
        "changed tenant 9 (name); changed tenant 10 (name); created tenant 20; 1 more"
    )
    assert config_diff(BEFORE, BEFORE) == [] and diff_summary([]) == "no change"


def test_secrets_show_as_marks_never_as_their_tokens():
    key, other = "encrypted:ab12cd34:gAAAA-key", "encrypted:ab12cd34:gAAAA-key-2"
    before = {
        "agents": [
            {
                "key": "cita",
                "tls_client_key": key,
                "headers": {"X-Api-Key": key, "Authorization": key},
            }
        ]
    }
    after = {
        "agents": [
            {
                "key": "cita",
                "tls_client_key": other,
                "headers": {"X-Api-Key": other, "Authorization": key, "X-New": other},
            }
        ]
    }
    created = {"agents": [{"key": "venta", "headers": {"X-Api-Key": key}}]}  # fmt: skip
    (change,) = config_diff(before, after)
    assert change["fields"] == [
        {"field": "tls_client_key", "before": "(secret)", "after": "(secret changed)"},
        {"field": "headers",
         "before": {"X-Api-Key": "(secret)", "Authorization": "(secret)"},
         "after": {"X-Api-Key": "(secret changed)", "Authorization": "(secret)",
                   "X-New": "(secret changed)"}},
    ]  # fmt: skip
    (new,) = config_diff({"agents": []}, created)
    assert new["fields"] == [
        {"field": "key", "before": None, "after": "venta"},
        {"field": "headers", "before": None, "after": {"X-Api-Key": "(secret)"}},
    ]
    assert "gAAAA" not in " ".join(diff_lines([change, new]))
