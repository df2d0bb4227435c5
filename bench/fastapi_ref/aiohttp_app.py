"""Reference point: FastAPI validating, a default aiohttp.ClientSession forwarding
(bench/naive_proxy.py). The issue's best bare Python proxy (0.88 of the 50 ms ceiling on its
machine, with no features): the one the gateway, every feature on, aims to pass."""

import aiohttp
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from bench.naive_proxy import ChatIn, forward_aiohttp

app = FastAPI()
_session: aiohttp.ClientSession | None = None


@app.post("/api/agent/chat")
async def chat(payload: ChatIn):
    global _session
    if _session is None:  # on the server's event loop
        _session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30.0))
    status, body = await forward_aiohttp(_session, payload)
    return JSONResponse(body, status_code=status)
