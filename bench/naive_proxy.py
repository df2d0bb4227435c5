"""What both naive reference proxies do once the framework has validated the body: look up the
agent, forward with a default httpx.AsyncClient, answer the chat contract (or its fallback)."""

from typing import Any

import httpx

from bench.routes import routes_from_env

FALLBACK = "No pude conectar con el agente. Intenta de nuevo en un momento."
ROUTES = routes_from_env()


async def forward(
    client: httpx.AsyncClient, message: str, session_id: int, config: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    key = str(config["modalidad"]).strip().lower()
    url = ROUTES.get(key)
    if url is None:
        return 400, {"detail": "Modalidad no reconocida"}
    body = {"message": message, "session_id": session_id, "context": {"config": config}}
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
