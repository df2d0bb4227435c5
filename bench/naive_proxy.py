"""What both naive reference proxies share: the request model their framework validates, and
what they do next: look up the agent, forward with a default httpx.AsyncClient, answer the chat
contract (or its fallback)."""

from typing import Any

import httpx
from pydantic import BaseModel

from bench.routes import routes_from_env

FALLBACK = "No pude conectar con el agente. Intenta de nuevo en un momento."
ROUTES = routes_from_env()


class ConfigIn(BaseModel):
    modalidad: str


class ChatIn(BaseModel):
    message: str
    session_id: int
    id_empresa: int | None = None
    config: ConfigIn


async def forward(client: httpx.AsyncClient, payload: ChatIn) -> tuple[int, dict[str, Any]]:
    session_id = payload.session_id
    key = payload.config.modalidad.strip().lower()
    url = ROUTES.get(key)
    if url is None:
        return 400, {"detail": "Modalidad no reconocida"}
    body = {
        "message": payload.message,
        "session_id": session_id,
        "context": {"config": payload.config.model_dump()},
    }
    try:
        response = await client.post(url, json=body)
        data = response.json()
        return 200, {
            "reply": data["reply"],
            "session_id": session_id,
            "agent_used": key,
            "url": data.get("url") or None,
        }
    except (httpx.HTTPError, ValueError, KeyError):
        return 200, {"reply": FALLBACK, "session_id": session_id, "agent_used": key, "url": None}
