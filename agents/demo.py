"""Demo agents: tiny HTTP services that speak the agent contract (development and README only).

POST any path -> 200 {"reply": "[<key>] Recibí: <message>", "url": null}; GET /health -> 200.
"""

import asyncio
from typing import Any

import orjson
import uvicorn

DEMO_AGENTS = {"venta": 8001, "cita": 8002, "reserva": 8003, "citas_ventas": 8004}


def demo_agent_app(key: str) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        payload: dict[str, str | None]
        if scope["method"] == "GET":
            status, payload = 200, {"status": "ok", "agent": key}
        else:
            try:
                data = orjson.loads(body)
                text = data.get("message", "") if isinstance(data, dict) else ""
                status, payload = 200, {"reply": f"[{key}] Recibí: {text}", "url": None}
            except orjson.JSONDecodeError:
                status, payload = 400, {"error": "invalid JSON"}
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": orjson.dumps(payload)})

    return app


async def serve_demo_agents(host: str, ports: dict[str, int]) -> None:
    servers = [
        uvicorn.Server(
            uvicorn.Config(
                demo_agent_app(key), host=host, port=port, log_level="warning", lifespan="off"
            )
        )
        for key, port in ports.items()
    ]
    await asyncio.gather(*(server.serve() for server in servers))
