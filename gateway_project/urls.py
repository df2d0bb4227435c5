"""The URL map: `/`, the NinjaAPI under /api, health and metrics, the admin (and its moved pages)."""

import re

from django.conf import settings
from django.contrib import admin
from django.urls import path, re_path

from gateway_project.api import api
from gateway_project.views import api_keys_moved, service_info
from health.views import health_full, health_live, health_ready, metrics_view

urlpatterns = [
    path("", service_info, name="service-info"),
    path("api/", api.urls),
    path("health", health_full, name="health"),
    path("health/live", health_live, name="health-live"),
    path("health/ready", health_ready, name="health-ready"),
    path("metrics", metrics_view, name="metrics"),
    re_path(rf"^{re.escape(settings.ADMIN_URL_PATH)}agents/apikey/", api_keys_moved),
    path(settings.ADMIN_URL_PATH, admin.site.urls),
]

handler404 = "gateway_project.views.not_found"
handler500 = "gateway_project.views.server_error"
