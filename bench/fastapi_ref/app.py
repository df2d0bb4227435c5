"""Reference point: FastAPI validating, a default httpx.AsyncClient forwarding
(bench/naive_proxy.py), the same work as the naive Django proxy."""

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from bench.naive_proxy import forward

app = FastAPI()
client = httpx.AsyncClient(timeout=30.0)


class ConfigIn(BaseModel):
    modalidad: str


class ChatIn(BaseModel):
    message: str
    session_id: int
    id_empresa: int | None = None
    config: ConfigIn


@app.post("/api/agent/chat")
async def chat(payload: ChatIn):
    status, body = await forward(
        client, payload.message, payload.session_id, payload.config.model_dump()
    )
    return JSONResponse(body, status_code=status)
