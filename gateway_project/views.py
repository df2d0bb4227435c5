from django.conf import settings
from django.http import HttpRequest, HttpResponse

import gateway_project
from agents.conf import gateway_settings
from gateway_project.responses import json_response


async def service_info(request: HttpRequest) -> HttpResponse:
    return json_response(
        200,
        {
            "service": gateway_settings.name,
            "version": gateway_project.__version__,
            "status": "running",
            "endpoints": {
                "chat": "POST /api/agent/chat",
                "health": "GET /health",
                "live": "GET /health/live",
                "ready": "GET /health/ready",
                "metrics": "GET /metrics",
                "docs": "GET /api/docs",
                "admin": f"/{settings.ADMIN_URL_PATH}",
            },
        },
    )
