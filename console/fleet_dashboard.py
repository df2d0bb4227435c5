"""The fleet dashboard: every agent's last hour as charts, with its breaker and calls in flight,
across the live serving workers; an admin page of its own (gateway_project/admin_site.py)."""

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from agents.models import Agent
from console.agent_charts import agent_charts
from console.charts import LARGE
from fleet.worker_state import fleet_series, fleet_status
from gateway_project.admin_site import AdminPage, GatewayAdminSite

TITLE = "Fleet dashboard"
REFRESH_S = 30


def fleet_dashboard_view(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    series, status = fleet_series(now), fleet_status(now)
    rows = []
    for agent in Agent.objects.order_by("key"):
        view = status.get(agent.key)
        rows.append({
            "agent": agent,
            "url": reverse("admin:agents_agent_change", args=[agent.pk]),
            "breaker": view.breaker_summary if view else "no worker",
            "inflight": f"{view.inflight} / {view.limit}" if view else "–",
            "charts": agent_charts(series.get(agent.key), LARGE),
        })  # fmt: skip
    context = {
        **admin.site.each_context(request),
        "title": TITLE,
        "rows": rows,
        "updated_at": now,
        "refresh_s": REFRESH_S,
    }
    return TemplateResponse(request, "admin/fleet_dashboard.html", context)


def register(site: GatewayAdminSite) -> None:
    site.register_page(
        AdminPage(
            route="fleet/",
            name="fleet_dashboard",
            title=TITLE,
            section="Fleet",
            permission="agents.view_agent",
            view=fleet_dashboard_view,
        )
    )
