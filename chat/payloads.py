"""The JSON body sent to an agent, in its payload format (pure functions)."""

from typing import Any

import orjson

from chat.schemas import ChatIn


def agent_config(payload: ChatIn) -> dict[str, Any]:
    """The config as the agent sees it: fields as sent, flexible ones converted, absent left out."""
    config = payload.config.model_dump(exclude_none=True)
    config["id_empresa"] = payload.id_empresa
    return config


def agent_payload(payload: ChatIn, payload_format: str) -> bytes:
    config = agent_config(payload)
    if payload_format == "flat":
        body: dict[str, Any] = {
            "message": payload.message,
            "session_id": payload.session_id,
            "id_empresa": payload.id_empresa,
            "api_key": payload.api_key,
            "config": config,
        }
    else:
        body = {
            "message": payload.message,
            "session_id": payload.session_id,
            "context": {"config": config},
        }
    return orjson.dumps(body)
