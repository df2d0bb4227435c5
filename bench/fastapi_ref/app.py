"""Reference point: FastAPI validating, a default httpx.AsyncClient forwarding
(bench/naive_proxy.py), the same work as the naive Django proxy."""

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from bench.naive_proxy import ChatIn, forward

app = FastAPI()
client = httpx.AsyncClient(timeout=30.0)


@app.post("/api/agent/chat")
async def chat(payload: ChatIn):
    status, body = await forward(client, payload)
    return JSONResponse(body, status_code=status)
