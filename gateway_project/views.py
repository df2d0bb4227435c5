"""`/` (what this service is), the JSON 404 and 500 pages Django serves outside the hot paths, and
the redirect from the API keys' old admin pages."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect

import gateway_project
from chat import messages
from chat.responses import detail_response, json_response
from gateway_project.conf import gateway_settings


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


def api_keys_moved(request: HttpRequest) -> HttpResponse:
    """API keys moved from the agents app to access with their table (issue 15): a bookmark or
    link to an old admin page lands on the same page."""
    moved = request.get_full_path().replace("/agents/apikey/", "/access/apikey/", 1)
    return HttpResponsePermanentRedirect(moved)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """JSON instead of Django's HTML 404 page, for every path the front does not know."""
    return detail_response(404, messages.NOT_FOUND)


def server_error(request: HttpRequest) -> HttpResponse:
    """JSON instead of Django's HTML 500 page (the traceback goes to the logs only)."""
    return detail_response(500, messages.INTERNAL_ERROR)
