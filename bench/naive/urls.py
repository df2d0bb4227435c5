"""POST /api/agent/chat: validate with django-ninja, forward with httpx (bench/naive_proxy.py)."""

import httpx
from django.urls import path
from ninja import NinjaAPI

from bench.naive_proxy import ChatIn, forward

api = NinjaAPI()
client = httpx.AsyncClient(timeout=30.0)


@api.post("/agent/chat")
async def chat(request, payload: ChatIn):
    status, body = await forward(client, payload)
    return api.create_response(request, body, status=status)


urlpatterns = [path("api/", api.urls)]
