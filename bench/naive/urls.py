"""POST /api/agent/chat: validate with django-ninja, forward with httpx (bench/naive_proxy.py)."""

import httpx
from django.urls import path
from ninja import NinjaAPI, Schema

from bench.naive_proxy import forward

api = NinjaAPI()
client = httpx.AsyncClient(timeout=30.0)


class ConfigIn(Schema):
    modalidad: str


class ChatIn(Schema):
    message: str
    session_id: int
    id_empresa: int | None = None
    config: ConfigIn


@api.post("/agent/chat")
async def chat(request, payload: ChatIn):
    status, body = await forward(client, payload.message, payload.session_id, payload.config.dict())
    return api.create_response(request, body, status=status)


urlpatterns = [path("api/", api.urls)]
