"""ChatIn / ChatOut: the contract's request and response, with its exact 400 messages.

Plain pydantic models (not ninja's Schema, which reads any object through attribute access and
would take a JSON list for an object with missing fields). Every field reads its raw JSON value in a `before` validator and raises a PydanticCustomError of
type "contract" carrying the contract's message, so the API's ValidationError handler can answer
with that text verbatim (chat/errors.py).
"""

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from chat import messages
from chat.fields import INT64_MAX, parse_bool, parse_int, parse_positive_int

CONTRACT_ERROR = "contract"


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError(CONTRACT_ERROR, message)


def _required_text(message_when_empty: str, field: str) -> Callable[[Any], str]:
    def validate(value: Any) -> str:
        if value is None:
            raise _fail(message_when_empty)
        if not isinstance(value, str):
            raise _fail(messages.not_text(field))
        if not value.strip():
            raise _fail(message_when_empty)
        return value

    return validate


def _parsed(value: Any, parse: Callable[[Any], Any], message: str, required: bool) -> Any:
    if value is None:
        if required:
            raise _fail(message)
        return None
    try:
        return parse(value)
    except ValueError:
        raise _fail(message) from None


# An int already in range (a bool for a boolean) is what parsing it would give, so it skips the
# parse and its calls: for the bench's body, 10 fewer Python calls and 25 fewer builtin calls
# (bench/README.md, "Issue 15: served, counted").
def _integer(message: str, *, positive: bool = False, required: bool = False) -> Any:
    smallest, parse = (1, parse_positive_int) if positive else (-INT64_MAX, parse_int)

    def validate(value: Any) -> Any:
        if type(value) is int and smallest <= value <= INT64_MAX:
            return value
        return _parsed(value, parse, message, required)

    return BeforeValidator(validate)


def _flexible_int(name: str) -> Any:
    return _integer(messages.not_integer(f"config.{name}"))


def _flexible_bool(name: str) -> Any:
    message = messages.not_boolean(f"config.{name}")

    def validate(value: Any) -> Any:
        if type(value) is bool:
            return value
        return _parsed(value, parse_bool, message, False)

    return BeforeValidator(validate)


_id_empresa = _integer(messages.BAD_ID_EMPRESA, positive=True)


# Optional text is checked by pydantic itself (strict: no number taken as text); its error,
# `string_type`, reads as messages.not_text (chat/body.py). A Python validator per field cost
# ~0.25 µs each, eight times per request.
_TEXT = Field(strict=True)


class ConfigIn(BaseModel):
    """The workflow's bot configuration; unknown keys are ignored."""

    model_config = ConfigDict(extra="ignore")

    modalidad: Annotated[
        str,
        BeforeValidator(_required_text(messages.EMPTY_MODALIDAD, "config.modalidad")),
        Field(description="Routing name; trimmed and case-insensitive.", examples=["Citas"]),
    ]
    nombre_bot: Annotated[str | None, _TEXT] = None
    id_empresa: Annotated[int | None, _id_empresa] = None
    frase_saludo: Annotated[str | None, _TEXT] = None
    archivo_saludo: Annotated[str | None, _TEXT] = None
    personalidad: Annotated[str | None, _TEXT] = None
    frase_des: Annotated[str | None, _TEXT] = None
    frase_no_sabe: Annotated[str | None, _TEXT] = None
    correo_usuario: Annotated[str | None, _TEXT] = None
    duracion_cita_minutos: Annotated[int | None, _flexible_int("duracion_cita_minutos")] = None
    slots: Annotated[int | None, _flexible_int("slots")] = None
    agendar_usuario: Annotated[bool | None, _flexible_bool("agendar_usuario")] = None
    agendar_sucursal: Annotated[bool | None, _flexible_bool("agendar_sucursal")] = None
    id_prospecto: Annotated[int | None, _flexible_int("id_prospecto")] = None
    usuario_id: Annotated[int | None, _flexible_int("usuario_id")] = None
    id_chatbot: Annotated[int | None, _flexible_int("id_chatbot")] = None


class ChatIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    message: Annotated[
        str,
        BeforeValidator(_required_text(messages.EMPTY_MESSAGE, "message")),
        Field(examples=["Quiero agendar una cita para mañana"]),
    ]
    session_id: Annotated[
        int,
        _integer(messages.BAD_SESSION_ID, positive=True, required=True),
        Field(description="Integer > 0; a numeric string is accepted.", examples=[3796]),
    ]
    id_empresa: Annotated[
        int | None,
        _id_empresa,
        Field(description="Integer > 0, here or in config (here wins)."),
    ] = None
    api_key: Annotated[
        str | None,
        Field(
            strict=True,
            description="Tenant key passed to 'flat' agents; never used for gateway auth.",
        ),
    ] = None
    config: ConfigIn

    @model_validator(mode="after")
    def _resolve_id_empresa(self) -> "ChatIn":
        if self.id_empresa is None:
            self.id_empresa = self.config.id_empresa
        if self.id_empresa is None:
            raise _fail(messages.BAD_ID_EMPRESA)
        return self


class ChatOut(BaseModel):
    reply: str
    session_id: int
    agent_used: str
    url: str | None


class ErrorOut(BaseModel):
    detail: str
