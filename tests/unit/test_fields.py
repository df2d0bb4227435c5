"""The contract's flexible fields: what n8n sends and what the agent gets (or the 400 text)."""

from typing import Any

import pytest
from pydantic import ValidationError

from chat import messages
from chat.body import contract_detail
from chat.fields import parse_bool, parse_int, parse_positive_int
from chat.schemas import ChatIn


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (15, 15),
        (0, 0),
        (-4, -4),
        (30.0, 30),
        ("15", 15),
        (" 30.0 ", 30),
        ("30.000", 30),
        ("+7", 7),
        ("-2", -2),
        ("\t42\n", 42),
        (2**63 - 1, 2**63 - 1),
    ],
)
def test_parse_int_accepts(raw: Any, expected: int) -> None:
    assert parse_int(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "  ",
        "abc",
        "1e3",
        "3.5",
        "30.01",
        "1,5",
        "0x10",
        "١٢",  # Arabic-Indic digits are not what n8n sends
        3.5,
        float("nan"),
        float("inf"),
        True,
        False,
        [],
        {},
        2**63,
        str(2**64),
    ],
)
def test_parse_int_rejects(raw: Any) -> None:
    with pytest.raises(ValueError):
        parse_int(raw)


@pytest.mark.parametrize("raw", [0, "0", -1, " -3 ", 0.0])
def test_parse_positive_int_rejects_zero_and_negatives(raw: Any) -> None:
    with pytest.raises(ValueError):
        parse_positive_int(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        (2, True),
        (0.0, False),
        ("1", True),
        ("true", True),
        ("TRUE", True),
        (" Yes ", True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("si", False),
        ("", False),
    ],
)
def test_parse_bool(raw: Any, expected: bool) -> None:
    assert parse_bool(raw) is expected


@pytest.mark.parametrize("raw", [[], {}, float("nan")])
def test_parse_bool_rejects(raw: Any) -> None:
    with pytest.raises(ValueError):
        parse_bool(raw)


def chat(**config: Any) -> dict[str, Any]:
    return {"message": "hola", "session_id": "3796", "id_empresa": 1, "config": config}


def detail_of(body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        ChatIn.model_validate(body)
    return contract_detail(caught.value.errors())


def test_schema_converts_every_flexible_field() -> None:
    parsed = ChatIn.model_validate(
        chat(
            modalidad=" Citas ",
            duracion_cita_minutos=" 30.0 ",
            slots="5",
            id_prospecto=3796,
            usuario_id="42",
            id_chatbot=None,
            agendar_usuario="yes",
            agendar_sucursal=0,
        )
    )
    assert parsed.session_id == 3796
    assert parsed.config.model_dump(exclude_none=True) == {
        "modalidad": " Citas ",
        "duracion_cita_minutos": 30,
        "slots": 5,
        "id_prospecto": 3796,
        "usuario_id": 42,
        "agendar_usuario": True,
        "agendar_sucursal": False,
    }


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("slots", "cinco", messages.not_integer("config.slots")),
        ("duracion_cita_minutos", [30], messages.not_integer("config.duracion_cita_minutos")),
        ("usuario_id", 4.5, messages.not_integer("config.usuario_id")),
        ("id_chatbot", True, messages.not_integer("config.id_chatbot")),
        ("agendar_usuario", {"x": 1}, messages.not_boolean("config.agendar_usuario")),
        ("agendar_sucursal", [], messages.not_boolean("config.agendar_sucursal")),
        ("nombre_bot", 5, messages.not_text("config.nombre_bot")),
    ],
)
def test_garbage_in_a_flexible_field_is_a_400_naming_it(name: str, raw: Any, message: str) -> None:
    assert name.split("_")[0] in message or name in message
    assert detail_of(chat(modalidad="cita", **{name: raw})) == message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"message": " ", "session_id": 1, "id_empresa": 1, "config": {"modalidad": "x"}},
         messages.EMPTY_MESSAGE),
        ({"message": "h", "session_id": "0", "id_empresa": 1, "config": {"modalidad": "x"}},
         messages.BAD_SESSION_ID),
        ({"message": "h", "session_id": "abc", "id_empresa": 1, "config": {"modalidad": "x"}},
         messages.BAD_SESSION_ID),
        ({"message": "h", "session_id": 1, "config": {"modalidad": "x"}}, messages.BAD_ID_EMPRESA),
        ({"message": "h", "session_id": 1, "id_empresa": 1, "config": {"modalidad": "  "}},
         messages.EMPTY_MODALIDAD),
        ({"message": "h", "session_id": 1, "id_empresa": 1, "config": {}},
         messages.EMPTY_MODALIDAD),
        ({"message": "h", "session_id": 1, "id_empresa": 1, "api_key": 7, "config": {"modalidad": "x"}},
         messages.not_text("api_key")),
        ({"message": "h", "session_id": 1, "id_empresa": 1, "config": {"modalidad": "x", "frase_des": False}},
         messages.not_text("config.frase_des")),
    ],
)  # fmt: skip
def test_required_fields_use_the_contract_words(body: dict[str, Any], message: str) -> None:
    assert detail_of(body) == message


def test_id_empresa_comes_from_config_when_absent_at_the_top_level() -> None:
    body = {"message": "h", "session_id": 1, "config": {"modalidad": "x", "id_empresa": " 7 "}}
    assert ChatIn.model_validate(body).id_empresa == 7
    body["id_empresa"] = "9"
    assert ChatIn.model_validate(body).id_empresa == 9


# Each flexible field through the schema, against its parse function: the schema skips the parse
# for an int already in range (a bool for a boolean), so the range's edges and the types next to
# them are here, at the top level and in config.
_FLEXIBLE = [  # (field, parse function, 400 message, whether None is a 400 in this body)
    ("session_id", parse_positive_int, messages.BAD_SESSION_ID, True),
    ("id_empresa", parse_positive_int, messages.BAD_ID_EMPRESA, True),  # none in config either
    ("config.id_empresa", parse_positive_int, messages.BAD_ID_EMPRESA, True),  # none at the top
    ("config.slots", parse_int, messages.not_integer("config.slots"), False),
    ("config.id_chatbot", parse_int, messages.not_integer("config.id_chatbot"), False),
    ("config.agendar_usuario", parse_bool, messages.not_boolean("config.agendar_usuario"), False),
]
_EDGES = [0, 1, -1, 2, 2**63 - 1, 2**63, -(2**63 - 1), -(2**63), 10**30, True, False,
          1.0, 0.0, -1.0, 2.5, "1", "0", " 7 ", "-3", "true", "x", None, [], {}]  # fmt: skip


@pytest.mark.parametrize(("field", "parse", "message", "required"), _FLEXIBLE)
@pytest.mark.parametrize("raw", _EDGES, ids=repr)
def test_the_schema_reads_each_flexible_field_as_its_parse_function(
    field: str, parse: Any, message: str, required: bool, raw: Any
) -> None:
    body: dict[str, Any] = {"message": "h", "session_id": 1, "id_empresa": 1, "config": {}}
    body["config"]["modalidad"] = "x"
    *parent, name = field.split(".")
    if parent:
        if name == "id_empresa":
            del body["id_empresa"]  # config's id_empresa is read only when the top one is absent
        body["config"][name] = raw
    else:
        body[name] = raw
    try:
        expected: Any = None if raw is None else parse(raw)
    except ValueError:
        expected = ValueError
    if expected is ValueError or (expected is None and required):
        assert detail_of(body) == message
        return
    parsed = ChatIn.model_validate(body)
    value = getattr(parsed.config if parent else parsed, name)
    if field == "config.id_empresa":
        value = parsed.id_empresa
    assert value == expected and type(value) is type(expected)
