"""What the reference proxies share: the request model their framework validates, and what they
do next: look up the agent, forward with a default httpx.AsyncClient (or aiohttp.ClientSession),
answer the chat contract (or its fallback)."""

from typing import Any

import aiohttp
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
    """Forward with httpx (the naive Django proxy and FastAPI+httpx)."""
    key, url = route(payload)
    if url is None:
        return 400, {"detail": "Modalidad no reconocida"}
    try:
        response = await client.post(url, json=agent_body(payload))
        return 200, answer(payload, key, response.json())
    except (httpx.HTTPError, ValueError, KeyError):
        return 200, fallback(payload, key)


async def forward_aiohttp(
    session: aiohttp.ClientSession, payload: ChatIn
) -> tuple[int, dict[str, Any]]:
    """Forward with aiohttp (FastAPI+aiohttp, the issue's best bare Python proxy)."""
    key, url = route(payload)
    if url is None:
        return 400, {"detail": "Modalidad no reconocida"}
    try:
        async with session.post(url, json=agent_body(payload)) as response:
            return 200, answer(payload, key, await response.json())
    except (aiohttp.ClientError, ValueError, KeyError):
        return 200, fallback(payload, key)


def route(payload: ChatIn) -> tuple[str, str | None]:
    key = payload.config.modalidad.strip().lower()
    return key, ROUTES.get(key)


def agent_body(payload: ChatIn) -> dict[str, Any]:
    return {
        "message": payload.message,
        "session_id": payload.session_id,
        "context": {"config": payload.config.model_dump()},
    }


def answer(payload: ChatIn, key: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "reply": data["reply"],
        "session_id": payload.session_id,
        "agent_used": key,
        "url": data.get("url") or None,
    }


def fallback(payload: ChatIn, key: str) -> dict[str, Any]:
    return {"reply": FALLBACK, "session_id": payload.session_id, "agent_used": key, "url": None}
